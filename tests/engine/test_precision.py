"""precision="fp32" | "tf32" | "bf16": scoped switches, device-agnostic, results close."""

from __future__ import annotations

import pytest
import torch

from engine_nets import one_hot
from plrp.engine import BatchExplainer
from plrp.engine.batch import precision_scope
from plrp.errors import PlrpError
from plrp.models.architectures import build_model
from reference import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model():
    torch.manual_seed(0)
    return build_model("plrp-default", n_filters=8, n_filters2=8, n_hidden=8).eval()


def test_tf32_is_a_no_op_on_cpu_and_bf16_stays_close():
    model = _model()
    x = one_hot(6, model.input_length, seed=1)
    methods = {"lrp": {}, "plrp": dict(p_pos=0.1)}
    fp32 = BatchExplainer(model, [0, 1], methods).explain(x)
    tf32 = BatchExplainer(model, [0, 1], methods, precision="tf32").explain(x)
    assert torch.equal(fp32.relevance, tf32.relevance)
    bf16 = BatchExplainer(model, [0, 1], methods, precision="bf16").explain(x)
    assert bf16.relevance.dtype == torch.float32 and torch.isfinite(bf16.relevance).all()
    a, b = fp32.relevance[0].flatten(), bf16.relevance[0].flatten()
    assert torch.corrcoef(torch.stack((a, b)))[0, 1] > 0.99      # LRP: bf16 rounding only
    assert not torch.equal(a, b)                                  # bf16 really ran
    assert torch.allclose(fp32.score, bf16.score, rtol=0.05, atol=1e-3)


def test_precision_scope_sets_and_restores_the_cuda_switches():
    # the switches are plain flags: settable and checkable without a GPU
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
        with precision_scope("tf32", torch.device("cuda")):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == \
            (False, True)
        with precision_scope("fp32", torch.device("cuda")):
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_unknown_precision_is_refused():
    with pytest.raises(PlrpError, match="precision 'fp16'"):
        BatchExplainer(_model(), [0], precision="fp16")
