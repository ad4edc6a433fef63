"""Models as users hand them over: compiled, in train mode, half precision, untraceable."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from engine_nets import one_hot
from plrp.engine import BatchExplainer, Explainer
from plrp.errors import UnsupportedModelError
from reference import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(4, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Dropout(0.5), nn.MaxPool1d(2), nn.Flatten(),
                         nn.Linear(6 * 10, 3))


def _randomise_bn(model):
    with torch.no_grad():
        bn = model[1]
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_(1, 0.2)
        bn.bias.normal_(0, 0.1)
    return model


def test_compiled_module_is_explained_through_its_original():
    model = _randomise_bn(_net()).eval()
    compiled = torch.compile(model)
    x = one_hot(3, 20, seed=1)
    want = Explainer(model, p_pos=0.2).explain(x, 1)
    got = Explainer(compiled, p_pos=0.2).explain(x, 1)
    assert torch.equal(got.relevance, want.relevance)
    batch = BatchExplainer(compiled, [1], {"plrp": dict(p_pos=0.2)}).explain(x)
    assert torch.equal(batch.relevance[0, 0], want.relevance)


def test_train_mode_model_gets_a_warning_and_an_eval_mode_explanation_untouched():
    model = _randomise_bn(_net()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = one_hot(4, 20, seed=2)
    with pytest.warns(UserWarning, match="train mode.*eval mode"):
        got = Explainer(model, p_pos=0.3).explain(x, 0)
    with pytest.warns(UserWarning, match="train mode"):
        batch = BatchExplainer(model, [0], {"plrp": dict(p_pos=0.3)}).explain(x)
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)   # running stats too
    want = Explainer(copy.deepcopy(model).eval(), p_pos=0.3).explain(x, 0)
    assert torch.equal(got.relevance, want.relevance)
    assert torch.equal(batch.relevance[0, 0], want.relevance)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_is_explained_in_float32_with_a_note(dtype, caplog):
    model = _randomise_bn(_net()).eval().to(dtype)
    x = one_hot(3, 20, seed=3)
    with caplog.at_level(logging.WARNING, logger="plrp"):
        got = Explainer(model).explain(x, 2)
    assert f"{str(dtype)[6:]} parameters; explained in float32" in caplog.text
    assert all(p.dtype == dtype for p in model.parameters())       # the user's model
    assert got.relevance.dtype == torch.float32
    want = Explainer(copy.deepcopy(model).float()).explain(x, 2)
    assert torch.equal(got.relevance, want.relevance)


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:           # data-dependent control flow
            return x
        return -x


def test_untraceable_layer_is_named_with_its_type_and_place():
    model = nn.Sequential(nn.Conv1d(4, 4, 3), nn.Sequential(nn.ReLU(), Gate()), nn.Flatten(),
                          nn.Linear(4 * 8, 1))
    with pytest.raises(UnsupportedModelError) as info:
        Explainer(model.eval())
    msg = str(info.value)
    assert "in layer '1.1' (Gate) inside '1' (Sequential)" in msg
    assert "TraceError" in msg and "\n" not in msg
