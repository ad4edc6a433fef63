"""An independent re-statement of bpnet-lite's BPNet (parameter names and forward pass,
control tracks included) used to build state_dicts the way bpnet-lite saves them.

Written from bpnet-lite's documented layout, not from plrp's BPNet, so that the mapping in
plrp.models.checkpoint is checked against a second implementation.
"""

import torch
from torch import nn


class LiteBPNet(nn.Module):
    """bpnet-lite BPNet: iconv, rconvs.N, fconv over filters + control tracks, linear over
    the mean tower + log(1 + control total)."""

    def __init__(self, n_filters, n_layers, n_outputs, n_control_tracks, trimming,
                 profile_output_bias=True, count_output_bias=True):
        super().__init__()
        self.n_layers, self.trimming = n_layers, trimming
        self.n_control_tracks = n_control_tracks
        self.iconv = nn.Conv1d(4, n_filters, 21, padding=10)
        self.rconvs = nn.ModuleList(
            nn.Conv1d(n_filters, n_filters, 3, padding=2 ** i, dilation=2 ** i)
            for i in range(1, n_layers + 1))
        self.fconv = nn.Conv1d(n_filters + n_control_tracks, n_outputs, 75, padding=37,
                               bias=profile_output_bias)
        self.linear = nn.Linear(n_filters + (1 if n_control_tracks else 0), 1,
                                bias=count_output_bias)

    def forward(self, x, x_ctl=None):
        start, end = self.trimming, x.shape[2] - self.trimming
        h = torch.relu(self.iconv(x))
        for conv in self.rconvs:
            h = h + torch.relu(conv(h))
        h_ctl = h if x_ctl is None else torch.cat([h, x_ctl], dim=1)
        profile = self.fconv(h_ctl)[:, :, start:end]
        pooled = h[:, :, start - 37:end + 37].mean(dim=2)
        if x_ctl is not None:
            total = x_ctl[:, :, start - 37:end + 37].sum(dim=(1, 2)).unsqueeze(-1)
            pooled = torch.cat([pooled, torch.log(total + 1)], dim=-1)
        return profile, self.linear(pooled).reshape(-1, 1)


class LiteChromBPNet(nn.Module):
    """bpnet-lite ChromBPNet: a frozen Tn5 bias BPNet plus an accessibility BPNet."""

    def __init__(self, bias, accessibility):
        super().__init__()
        self.bias = bias
        self.accessibility = accessibility
