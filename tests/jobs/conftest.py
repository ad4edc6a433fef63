"""A tiny model (2 outputs, 100 bp windows) and a small random genome for the job tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plrp.models.architectures import build_model
from plrp.models.checkpoint import save_checkpoint

L = 100
TARGETS = ["tA", "tB"]


def small_model(n_outputs: int = 2, names=None):
    torch.manual_seed(123)
    return build_model("plrp-default", input_length=L, n_filters=6, kernel_size=9,
                       n_filters2=6, kernel_size2=3, pool=2, n_hidden=5, n_outputs=n_outputs,
                       output_names=names or TARGETS[:n_outputs])


def fasta_text(records, width=60):
    return "".join(f">{n}\n" + "".join(s[i:i + width] + "\n" for i in range(0, len(s), width))
                   for n, s in records)


def random_records(seed, sizes):
    rng = np.random.default_rng(seed)
    return [(name, "".join(rng.choice(list("ACGT"), n))) for name, n in sizes]


@pytest.fixture(scope="package")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_checkpoint(path, small_model())
    return path


@pytest.fixture(scope="package")
def genome(tmp_path_factory):
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    path.write_text(fasta_text(random_records(3, [("chr2", 2300), ("chr1", 1700)])))
    return path


def listing(folder):
    """Every name in ``folder`` (hidden temporary files included); [] when it is missing."""
    import os

    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
