"""Other packages' model layouts, written the way those packages define them: key names,
Conv2d layouts, kipoi's ``Sequential(Lambda, Linear)`` wrappers, kipoi DeepSEA's AGCT input
and ``nn.Threshold(0, 1e-6)`` activations, selene_sdk's ``conv_net``/``classifier``.

Used by the tests (small widths, random weights) and by benchmarks/models.py (real sizes),
with bpnet-lite's attribution wrappers as chrombpnet defines the profile target.
"""

import numpy as np
import torch
from torch import nn


class LambdaBase(nn.Sequential):  # kipoi's Torch7 -> PyTorch converter helpers
    def __init__(self, fn, *args):
        super().__init__(*args)
        self.lambda_func = fn

    def forward_prepare(self, x):
        output = [module(x) for module in self._modules.values()]
        return output if output else x


class Lambda(LambdaBase):
    def forward(self, x):
        return self.lambda_func(self.forward_prepare(x))


def _dense(n_in, n_out):
    return nn.Sequential(Lambda(lambda x: x.view(1, -1) if 1 == len(x.size()) else x),
                         nn.Linear(n_in, n_out))


def kipoi_deepsea(c=(8, 6, 5), hidden=7, outputs=4, act=lambda: nn.Threshold(0, 1e-06)):
    """kipoi DeepSEA's deepsea_cpu (reads (N, 4, 1, 1000) one-hot in AGCT order)."""
    return nn.Sequential(
        nn.Conv2d(4, c[0], (1, 8), (1, 1)), act(), nn.MaxPool2d((1, 4), (1, 4)), nn.Dropout(0.2),
        nn.Conv2d(c[0], c[1], (1, 8), (1, 1)), act(), nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(c[1], c[2], (1, 8), (1, 1)), act(), nn.Dropout(0.5),
        Lambda(lambda x: x.view(x.size(0), -1)),
        _dense(c[2] * 53, hidden), act(), _dense(hidden, outputs), nn.Sigmoid())


def kipoi_basset(c=(8, 6, 5), hidden=7, outputs=4):
    """kipoi's Basset (reads (N, 4, 600, 1) one-hot in ACGT order)."""
    return nn.Sequential(
        nn.Conv2d(4, c[0], (19, 1)), nn.BatchNorm2d(c[0]), nn.ReLU(),
        nn.MaxPool2d((3, 1), (3, 1), (0, 0), ceil_mode=True),
        nn.Conv2d(c[0], c[1], (11, 1)), nn.BatchNorm2d(c[1]), nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1), (0, 0), ceil_mode=True),
        nn.Conv2d(c[1], c[2], (7, 1)), nn.BatchNorm2d(c[2]), nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1), (0, 0), ceil_mode=True),
        Lambda(lambda x: x.view(x.size(0), -1)),
        _dense(c[2] * 10, hidden), nn.BatchNorm1d(hidden, 1e-05, 0.1, True), nn.ReLU(),
        nn.Dropout(0.3),
        _dense(hidden, hidden), nn.BatchNorm1d(hidden, 1e-05, 0.1, True), nn.ReLU(),
        nn.Dropout(0.3),
        _dense(hidden, outputs), nn.Sigmoid())


class SeleneDeepSEA(nn.Module):
    """selene_sdk.architectures.DeepSEA (hidden dense width = n_targets)."""

    def __init__(self, sequence_length, n_targets):
        super().__init__()
        self.conv_net = nn.Sequential(
            nn.Conv1d(4, 320, kernel_size=8), nn.ReLU(inplace=True),
            nn.MaxPool1d(kernel_size=4, stride=4), nn.Dropout(p=0.2),
            nn.Conv1d(320, 480, kernel_size=8), nn.ReLU(inplace=True),
            nn.MaxPool1d(kernel_size=4, stride=4), nn.Dropout(p=0.2),
            nn.Conv1d(480, 960, kernel_size=8), nn.ReLU(inplace=True), nn.Dropout(p=0.5))
        reduce_by, pool = 7, 4.0
        self.n_channels = int(np.floor((np.floor((sequence_length - reduce_by) / pool)
                                        - reduce_by) / pool) - reduce_by)
        self.classifier = nn.Sequential(nn.Linear(960 * self.n_channels, n_targets),
                                        nn.ReLU(inplace=True),
                                        nn.Linear(n_targets, n_targets), nn.Sigmoid())

    def forward(self, x):
        out = self.conv_net(x)
        return self.classifier(out.view(out.size(0), 960 * self.n_channels))


def randomise(model, seed):
    """Random weights, biases and BatchNorm statistics (running_var in [0.5, 1.5))."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.rand(t.shape, generator=gen, dtype=t.dtype)
                t.copy_(noise + 0.5 if "running_var" in name else (noise - 0.5) * 0.4)
    return model.eval()


def bpnet_lite_targets(model):
    """bpnet-lite's attribution targets for a BPNet: {"counts": CountWrapper, "profile":
    ProfileWrapper with chrombpnet's stop-gradient on the softmax, "profile_as_is":
    ProfileWrapper unchanged}, each over ControlWrapper (zero control tracks); (N, 1) each."""
    from bpnetlite.bpnet import ControlWrapper, CountWrapper, ProfileWrapper
    from bpnetlite.bpnet import _ProfileLogitScaling

    class StopGradientScaling(_ProfileLogitScaling):
        def forward(self, logits):
            return logits * self.softmax(logits).detach()

    control = ControlWrapper(model)
    detached = ProfileWrapper(control)
    detached.scaling = StopGradientScaling()
    return {"counts": CountWrapper(control), "profile": detached,
            "profile_as_is": ProfileWrapper(control)}
