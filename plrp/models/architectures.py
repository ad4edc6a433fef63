"""The genome CNN architectures plrp knows by name.

Every architecture takes one-hot DNA of shape (N, 4, L) with channels in ACGT order and
``L == input_length``. Each model carries:

- ``input_length``: the window length in bp it was built for;
- ``output_names``: the names users pick with ``--target``;
- ``target_specs()``: name -> plain dict telling the engine how to seed relevance
  (``{"kind": "logit", "head": h, "index": i}`` or ``{"kind": "softmax_profile", "head": h}``);
- ``spec()``: ``{"name": ..., "hparams": {...}}``, enough to rebuild it (stored in checkpoints).

Outputs are logits: the sigmoid or softmax a model was trained with is not part of the
graph, because relevance is conventionally explained on the pre-activation score.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from plrp.errors import PlrpError


class GenomeCNN(nn.Module):
    """Base class: bookkeeping shared by all architectures."""

    arch_name = "base"
    # the layer that reads the one-hot input (N, 4, L): its weight's dim 1 is the alphabet
    input_layer = "conv1"
    # extra names --target accepts: alias -> a name of target_specs()
    target_aliases: dict[str, str] = {}
    # True when a global pooling makes the outputs independent of the window length, so the
    # model may be run on windows other than ``input_length`` (see checkpoint.check_input_length).
    accepts_any_length = False

    def __init__(self, hparams: dict):
        super().__init__()
        self.hparams = dict(hparams)

    def spec(self) -> dict:
        return {"name": self.arch_name, "hparams": dict(self.hparams)}

    @property
    def input_length(self) -> int:
        return int(self.hparams["input_length"])

    @property
    def output_names(self) -> list[str]:
        return list(self.target_specs())

    def target_specs(self) -> dict[str, dict]:
        names = self.hparams["output_names"]
        return {n: {"kind": "logit", "head": 0, "index": i} for i, n in enumerate(names)}


def _names(output_names, n_outputs: int) -> list[str]:
    if output_names is None:
        return [f"output_{i}" for i in range(n_outputs)]
    output_names = [str(n) for n in output_names]
    if len(output_names) != n_outputs or len(set(output_names)) != n_outputs:
        raise PlrpError(f"output_names must be {n_outputs} distinct names, got {output_names}")
    return output_names


def _flat_size(features: nn.Module, channels: int, length: int) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, channels, length)).numel())


class DefaultCNN(GenomeCNN):
    """plrp's small default classifier: two convolutions, global max-pool, two dense layers.

    Input 200 bp. One logit per task (multi-label, trained with a sigmoid).
    """

    arch_name = "plrp-default"
    accepts_any_length = True

    def __init__(self, input_length=200, n_filters=64, kernel_size=19, n_filters2=64,
                 kernel_size2=5, pool=4, n_hidden=32, dropout=0.1, n_outputs=3,
                 output_names=None):
        names = _names(output_names, n_outputs)
        super().__init__(dict(input_length=input_length, n_filters=n_filters,
                              kernel_size=kernel_size, n_filters2=n_filters2,
                              kernel_size2=kernel_size2, pool=pool, n_hidden=n_hidden,
                              dropout=dropout, n_outputs=n_outputs, output_names=names))
        self.conv1 = nn.Conv1d(4, n_filters, kernel_size, padding=kernel_size // 2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool1d(pool)
        self.conv2 = nn.Conv1d(n_filters, n_filters2, kernel_size2, padding=kernel_size2 // 2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AdaptiveMaxPool1d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(n_filters2, n_hidden)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(n_hidden, n_outputs)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.dropout(self.relu3(self.fc1(self.flatten(x))))
        return self.fc2(x)


class DeepSEA(GenomeCNN):
    """DeepSEA (Zhou & Troyanskaya 2015): 1000 bp, three conv blocks, nn.Flatten, two dense.

    919 chromatin-feature logits by default.
    """

    arch_name = "deepsea"
    input_layer = "features.0"

    def __init__(self, input_length=1000, channels=(320, 480, 960), kernel_size=8, pool=4,
                 n_hidden=925, n_outputs=919, dropout=(0.2, 0.2, 0.5), output_names=None):
        names = _names(output_names, n_outputs)
        channels, dropout = list(channels), list(dropout)
        super().__init__(dict(input_length=input_length, channels=channels,
                              kernel_size=kernel_size, pool=pool, n_hidden=n_hidden,
                              n_outputs=n_outputs, dropout=dropout, output_names=names))
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv1d(4, c1, kernel_size), nn.ReLU(), nn.MaxPool1d(pool, pool), nn.Dropout(dropout[0]),
            nn.Conv1d(c1, c2, kernel_size), nn.ReLU(), nn.MaxPool1d(pool, pool), nn.Dropout(dropout[1]),
            nn.Conv1d(c2, c3, kernel_size), nn.ReLU(), nn.Dropout(dropout[2]),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features, 4, input_length), n_hidden), nn.ReLU(),
            nn.Linear(n_hidden, n_outputs),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


class Basset(GenomeCNN):
    """Basset (Kelley et al. 2016): 600 bp, three unpadded conv blocks with BatchNorm, three
    dense layers; 600 bp give 200 x 10 = 2000 classifier inputs, as published (Torch7) and in
    kipoi's PyTorch conversion.

    164 DNase-accessibility logits by default.
    """

    arch_name = "basset"
    input_layer = "features.0"

    def __init__(self, input_length=600, channels=(300, 200, 200), kernel_sizes=(19, 11, 7),
                 pools=(3, 4, 4), n_hidden=1000, dropout=0.3, n_outputs=164, output_names=None):
        names = _names(output_names, n_outputs)
        channels, kernel_sizes, pools = list(channels), list(kernel_sizes), list(pools)
        super().__init__(dict(input_length=input_length, channels=channels,
                              kernel_sizes=kernel_sizes, pools=pools, n_hidden=n_hidden,
                              dropout=dropout, n_outputs=n_outputs, output_names=names))
        layers, c_in = [], 4
        for c, k, p in zip(channels, kernel_sizes, pools):
            layers += [nn.Conv1d(c_in, c, k), nn.BatchNorm1d(c), nn.ReLU(),
                       nn.MaxPool1d(p, p)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features.eval(), 4, input_length), n_hidden),
            nn.BatchNorm1d(n_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(n_hidden, n_hidden), nn.BatchNorm1d(n_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(n_hidden, n_outputs),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def bpnet_lite_trimming(n_layers: int) -> int:
    """bpnet-lite 1.1.0's default trimming (bp cut from each side of the window): half the
    receptive field, 10 (iconv) + sum_{i=1..n} 2^i (dilated convs) + 37 (fconv), i.e.
    47 + 2^(n+1) - 2: 557 for 8 layers (2114 -> 1000 bp), 173 for 6."""
    return 47 + sum(2 ** i for i in range(1, n_layers + 1))


class BPNet(GenomeCNN):
    """BPNet (Avsec et al. 2021) in bpnet-lite's layout, without control tracks.

    Input 2114 bp; a dilated residual tower joined by functional adds; a profile head of
    ``n_outputs`` strands over the central ``input_length - 2 * trimming`` bp and a count
    head (log total counts) from the mean of the cropped tower (+- profile_kernel // 2).
    Parameter names match bpnet-lite (iconv, rconvs.i, fconv, linear) so its state_dicts
    map directly. ``trimming`` defaults to bpnet-lite's (:func:`bpnet_lite_trimming`).

    Targets (bpnet-lite's and chrombpnet's attribution targets): ``profile`` is the
    mean-centred, softmax-weighted sum of the profile logits over both strands jointly
    (target kind ``bpnet_profile``, see plrp.engine.targets); ``counts`` (alias ``count``)
    is the log-count logit.
    """

    arch_name = "bpnet"
    input_layer = "iconv"
    target_aliases = {"count": "counts"}

    def __init__(self, input_length=2114, n_filters=64, n_layers=8, n_outputs=2,
                 trimming=None, profile_kernel=75):
        if trimming is None:
            trimming = bpnet_lite_trimming(n_layers)
        super().__init__(dict(input_length=input_length, n_filters=n_filters, n_layers=n_layers,
                              n_outputs=n_outputs, trimming=trimming,
                              profile_kernel=profile_kernel))
        if input_length - 2 * trimming <= 0 or trimming < profile_kernel // 2:
            raise PlrpError(f"bpnet: trimming {trimming} does not fit input_length {input_length}"
                            f" (needs profile_kernel // 2 <= trimming < input_length / 2)")
        self.trimming = trimming
        self.n_layers = n_layers
        self.profile_pad = profile_kernel // 2
        self.iconv = nn.Conv1d(4, n_filters, kernel_size=21, padding=10)
        self.irelu = nn.ReLU()
        self.rconvs = nn.ModuleList([
            nn.Conv1d(n_filters, n_filters, kernel_size=3, padding=2 ** i, dilation=2 ** i)
            for i in range(1, n_layers + 1)])
        self.rrelus = nn.ModuleList([nn.ReLU() for _ in range(n_layers)])
        self.fconv = nn.Conv1d(n_filters, n_outputs, kernel_size=profile_kernel,
                               padding=self.profile_pad)
        self.linear = nn.Linear(n_filters, 1)

    def target_specs(self) -> dict[str, dict]:
        return {"profile": {"kind": "bpnet_profile", "head": 0},
                "counts": {"kind": "logit", "head": 1, "index": 0}}

    def forward(self, x):
        start, end = self.trimming, self.input_length - self.trimming
        x = self.irelu(self.iconv(x))
        for i in range(self.n_layers):
            x = torch.add(x, self.rrelus[i](self.rconvs[i](x)))
        y_profile = self.fconv(x)[:, :, start:end]
        pooled = torch.mean(x[:, :, start - self.profile_pad:end + self.profile_pad], dim=2)
        y_counts = self.linear(pooled).reshape(-1, 1)
        return y_profile, y_counts


ARCHITECTURES: dict[str, type[GenomeCNN]] = {
    cls.arch_name: cls for cls in (DefaultCNN, DeepSEA, Basset, BPNet)
}


def hparam_names(name: str) -> list[str]:
    """The hyper-parameters architecture ``name`` accepts, in constructor order."""
    if name not in ARCHITECTURES:
        raise PlrpError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    params = inspect.signature(ARCHITECTURES[name].__init__).parameters
    return [p for p in params if p != "self"]


def build_model(name: str, **hparams) -> GenomeCNN:
    """Build architecture ``name`` (see ``ARCHITECTURES``) with hyper-parameter overrides.

    Returns the model in eval mode with freshly initialised weights.
    """
    known = hparam_names(name)
    unknown = [k for k in hparams if k not in known]
    if unknown:
        raise PlrpError(f"architecture {name!r} has no hyper-parameter {unknown[0]!r}; "
                        f"known: {', '.join(known)}")
    try:
        model = ARCHITECTURES[name](**hparams)
    except PlrpError:
        raise
    except (TypeError, ValueError, RuntimeError) as err:
        # bad values (a negative size, a window too short for the pooling) surface here
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PlrpError(f"architecture {name!r} cannot be built from its hyper-parameters "
                        f"({first_line})") from None
    return model.eval()
