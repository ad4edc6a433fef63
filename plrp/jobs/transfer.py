"""Batches to the device and results back: one copy in and one copy out per batch.

On CUDA the one-hot batch goes up as uint8 from a pinned host buffer, and everything a
batch gives back for all methods and targets (per-base tracks, scores, conservation
errors and, for the arrays tier, the (4, L) arrays) is packed into one device buffer and
copied with one non-blocking copy into a pinned host buffer; the writer waits on the copy's
event, so the next batch is already on its way. On the CPU the results are used in place.
"""

from __future__ import annotations

import numpy as np
import torch

from plrp.outputs.sink import BatchArrays


class DeviceBatches:
    """Move batches of ``batch_size`` windows of ``window`` bp to ``device`` and back.

    ``track_values(per_base)`` makes the per-base tracks sparse on the device (the sink's
    rule); ``arrays``: bring back the (M, T, n, 4, L) arrays too; ``slots``: host buffers
    in flight (the writer's queue + 2, so a buffer is never refilled while being written).
    Every batch is padded to ``batch_size`` windows: torch kernels round differently for
    other batch shapes, and one shape makes a sharded run equal an unsharded one exactly.
    """

    def __init__(self, device: torch.device, batch_size: int, window: int, track_values,
                 arrays: bool, slots: int = 6):
        self.device, self.batch_size, self.window = device, int(batch_size), int(window)
        self.track_values, self.arrays = track_values, bool(arrays)
        self.cuda = device.type == "cuda"
        if self.cuda:
            self._in = [torch.empty((self.batch_size, 4, self.window), dtype=torch.uint8,
                                    pin_memory=True) for _ in range(2)]
            self._in_done = [None, None]
            self._out: list = [None] * int(slots)
            self._n_in = self._n_out = 0

    def to_device(self, one_hot: np.ndarray) -> torch.Tensor:
        """(n, 4, L) uint8 one-hot -> (batch_size, 4, L) float32 on the device, zero-padded."""
        n = one_hot.shape[0]
        if not self.cuda:
            x = torch.from_numpy(one_hot).to(self.device, dtype=torch.float32)
            if n < self.batch_size:
                x = torch.cat([x, x.new_zeros((self.batch_size - n, 4, self.window))])
            return x
        k = self._n_in % 2
        self._n_in += 1
        if self._in_done[k] is not None:
            self._in_done[k].synchronize()  # the copy that last read this buffer is done
        buf = self._in[k]
        buf.numpy()[:n] = one_hot
        buf.numpy()[n:] = 0
        x = buf.to(self.device, non_blocking=True)
        self._in_done[k] = torch.cuda.Event()
        self._in_done[k].record()
        return x.to(torch.float32)

    def to_host(self, out, n: int) -> BatchArrays:
        """The first ``n`` windows of a BatchExplanation ``out`` as host arrays."""
        per_base = self.track_values(out.relevance[:, :, :n].sum(dim=3))
        parts = [per_base, out.score[:, :, :n], out.conservation_error[:, :, :n]]
        if self.arrays:
            parts += [out.relevance[:, :, :n], out.hypothetical[:, :, :n]]
        if not self.cuda:
            host = [p.detach().float().numpy() for p in parts]
            return BatchArrays(*host) if self.arrays else BatchArrays(*host[:3])
        flat = torch.cat([p.detach().float().reshape(-1) for p in parts])
        k = self._n_out % len(self._out)
        self._n_out += 1
        if self._out[k] is None or self._out[k].numel() < flat.numel():
            self._out[k] = torch.empty(flat.numel(), dtype=torch.float32, pin_memory=True)
        host = self._out[k][:flat.numel()]
        host.copy_(flat, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        views, at = [], 0
        buf = host.numpy()
        for p in parts:
            views.append(buf[at:at + p.numel()].reshape(p.shape))
            at += p.numel()
        return BatchArrays(*views[:3], *(views[3:] if self.arrays else (None, None)),
                           wait=done.synchronize)
