"""Small models and helpers shared by the engine tests (not collected by pytest)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot(n: int, length: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Random one-hot DNA (n, 4, length)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    return F.one_hot(idx, 4).permute(0, 2, 1).to(dtype).contiguous()


def grad_x_input(model, x, seed_fn) -> torch.Tensor:
    """Gradient x input of sum(seed_fn(model(x))) (autograd; independent of the engine)."""
    x = x.clone().requires_grad_(True)
    out = seed_fn(model(x))
    (g,) = torch.autograd.grad(out.sum(), x)
    return (g * x).detach()


def tiny_eps_composite(tmp_path, eps: float = 1e-30) -> str:
    """A composite file with LRP-epsilon and a negligible eps (for exact identities)."""
    path = tmp_path / "tiny.toml"
    path.write_text(f'op_epsilon = {eps!r}\n[default]\nrule = "epsilon"\nepsilon = {eps!r}\n')
    return str(path)


def seq_net(bias: bool = False, pool: bool = True) -> nn.Sequential:
    """Conv/ReLU/(MaxPool)/dilated strided conv/Flatten/Linear on 60 bp."""
    layers = [nn.Conv1d(4, 6, 5, padding=2, bias=bias), nn.ReLU()]
    length = 60
    if pool:
        layers.append(nn.MaxPool1d(2))
        length = 30
    layers += [nn.Conv1d(6, 5, 3, dilation=2, stride=2, padding=1, bias=bias), nn.ReLU(),
               nn.Flatten()]
    l2 = (length + 2 - 2 * 2 - 1) // 2 + 1
    layers += [nn.Linear(5 * l2, 8, bias=bias), nn.ReLU(), nn.Linear(8, 3, bias=bias)]
    return nn.Sequential(*layers).eval()


class FunctionalNet(nn.Module):
    """Functional style: F.relu, torch.cat, view, x.mean, torch.add, slicing, x.shape."""

    def __init__(self, bias: bool = True):
        super().__init__()
        self.conv_a = nn.Conv1d(4, 4, 7, padding=3, bias=bias)
        self.conv_b = nn.Conv1d(4, 4, 3, padding=1, bias=bias)
        self.conv_c = nn.Conv1d(8, 6, 5, bias=bias)
        self.fc = nn.Linear(6, 2, bias=bias)
        self.fc_pos = nn.Linear(6 * 20, 2, bias=bias)

    def forward(self, x):
        n = x.shape[0]
        a = F.relu(self.conv_a(x))
        b = torch.relu(self.conv_b(x))
        h = torch.cat([a, b], dim=1)
        h = self.conv_c(h).relu()
        h = h[:, :, 2:-2]                       # crop
        pooled = h.mean(dim=2)                  # (n, 6)
        dense = self.fc(pooled)
        flat = h[:, :, :20].reshape(n, -1)
        other = self.fc_pos(flat.view(x.size(0), -1))
        return torch.add(dense, other) + dense * 0.5


class BNNet(nn.Module):
    """Conv + BN and Linear + BN (folding test); ``folded()`` is the same net without BN."""

    def __init__(self, use_bn: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(4, 5, 5, padding=2)
        self.fc = nn.Linear(5 * 20, 6)
        self.out = nn.Linear(6, 2)
        self.use_bn = use_bn
        if use_bn:
            self.bn = nn.BatchNorm1d(5)
            self.bn2 = nn.BatchNorm1d(6)
            with torch.no_grad():
                for bn in (self.bn, self.bn2):
                    c = bn.num_features
                    bn.running_mean.copy_(torch.randn(c) * 0.3)
                    bn.running_var.copy_(torch.rand(c) + 0.5)
                    bn.weight.copy_(torch.randn(c))
                    bn.bias.copy_(torch.randn(c) * 0.2)
        self.eval()

    def forward(self, x):
        h = self.conv(x)
        if self.use_bn:
            h = self.bn(h)
        h = F.max_pool1d(F.relu(h), 2).flatten(1)
        h = self.fc(h)
        if self.use_bn:
            h = self.bn2(h)
        return self.out(F.relu(h))

    def folded(self) -> nn.Module:
        net = BNNet(use_bn=False).to(self.conv.weight.dtype)
        with torch.no_grad():
            for lin, bn, dst in ((self.conv, self.bn, net.conv), (self.fc, self.bn2, net.fc)):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shape = (-1,) + (1,) * (lin.weight.dim() - 1)
                dst.weight.copy_(lin.weight * scale.reshape(shape))
                dst.bias.copy_((lin.bias - bn.running_mean) * scale + bn.bias)
            net.out.load_state_dict(self.out.state_dict())
        return net.eval()


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini index of each row of a non-negative (N, M) tensor."""
    v, _ = torch.sort(values, dim=1)
    m = v.shape[1]
    i = torch.arange(1, m + 1, dtype=v.dtype)
    total = v.sum(1).clamp(min=1e-300)
    return 1 - 2 * ((v / total[:, None]) * ((m - i + 0.5) / m)).sum(1)


class KitchenSink(nn.Module):
    """Bias-free ReLU net using many routed/linear ops: equals gradient x input under LRP-0."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 6, 5, bias=False)
        self.c2 = nn.Conv1d(6, 6, 3, bias=False, padding="same")
        self.pool = nn.AvgPool1d(3, 2, padding=1)
        self.ap = nn.AdaptiveAvgPool1d(4)
        self.fc = nn.Linear(6 * 4 + 6, 3, bias=False)
        self.w = nn.Parameter(torch.randn(5, 6, 3))

    def forward(self, x):
        length = x.size(2)
        h = F.relu(self.c1(x[:, :, : length // 2 * 2]))
        h = F.pad(h, (1, 2))
        h = torch.flatten(torch.stack([h, h * 2.0], dim=1), 1, 2)[:, :6]
        h = F.relu(self.c2(h)) - 0.5 * h
        g = F.conv1d(h, self.w, None, 1, 1)
        a = self.ap(self.pool(h)).flatten(1)
        b = F.adaptive_max_pool1d(h, 1).squeeze(-1) + g.sum(dim=(1,)).mean(-1, keepdim=True) / 3
        return self.fc(torch.cat([a, b], 1)).unsqueeze(1).transpose(1, 2).squeeze(2)
