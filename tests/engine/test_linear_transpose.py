"""LinearOp.backward is the transpose of LinearOp.forward, checked against the layer written
out as an explicit float64 matrix, for both of its conv paths (conv_transpose1d, and the
one matmul + shifted adds it takes for layers onto few input channels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plrp.engine.rules import LinearOp


def _conv_matrix(w: np.ndarray, l_in: int, padding: int, dilation: int, stride: int):
    """(C_out * L_out, C_in * L_in) matrix of a zero-padded conv1d, entry by entry."""
    c_out, c_in, k = w.shape
    l_out = (l_in + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    m = np.zeros((c_out * l_out, c_in * l_in))
    for o in range(c_out):
        for t in range(l_out):
            for i in range(c_in):
                for j in range(k):
                    u = t * stride + j * dilation - padding
                    if 0 <= u < l_in:
                        m[o * l_out + t, i * l_in + u] += w[o, i, j]
    return m, l_out


@pytest.mark.parametrize("c_out,c_in,k,padding,dilation,stride", [
    (128, 4, 7, 3, 1, 1),       # matmul path, "same" padding
    (130, 4, 5, 0, 1, 1),       # matmul path, unpadded (DeepSEA-like)
    (128, 3, 4, 2, 2, 1),       # matmul path, dilated, padding > reach on one side
    (128, 4, 3, 5, 1, 1),       # matmul path, padding wider than the kernel
    (16, 4, 7, 3, 1, 1),        # conv_transpose1d path
    (128, 4, 5, 2, 1, 2),       # strided: conv_transpose1d path
])
def test_conv_backward_is_the_transpose(c_out, c_in, k, padding, dilation, stride):
    rng = np.random.default_rng(c_out + k + padding)
    w = rng.standard_normal((c_out, c_in, k))
    l_in = 23
    m, l_out = _conv_matrix(w, l_in, padding, dilation, stride)
    op = LinearOp("conv", torch.from_numpy(w), None, stride, padding, dilation)
    a = rng.standard_normal((3, c_in, l_in))
    z = op.forward(torch.from_numpy(a), op.weight).numpy()
    assert z.shape == (3, c_out, l_out)
    assert np.abs(z.reshape(3, -1) - a.reshape(3, -1) @ m.T).max() < 1e-10
    s = rng.standard_normal((3, c_out, l_out))
    got = op.backward(torch.from_numpy(s), op.weight, a.shape).numpy()
    want = s.reshape(3, -1) @ m
    assert got.shape == a.shape
    assert np.abs(got.reshape(3, -1) - want).max() < 1e-10


def test_matmul_transpose_in_float32_matches_conv_transpose():
    torch.manual_seed(0)
    w = torch.randn(320, 4, 8)
    op = LinearOp("conv", w, None, 1, 0, 1)
    s = torch.randn(5, 320, 93)
    got = op.backward(s, w, (5, 4, 100))
    want = torch.nn.functional.conv_transpose1d(s.double(), w.double())
    assert (got.double() - want).abs().max() <= 1e-5 * want.abs().max()
