"""Helpers and settings of the workflow tests (fixtures: conftest.py beside this file).

These tests run the real external tools (Snakemake, bedtools, bgzip/tabix, modisco-lite);
a missing tool is a failure, not a skip: .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
PLRP = [sys.executable, "-m", "plrp"]
# Settings every run of the shared data uses: overlapping windows (stride < window), both
# methods (so tracks are named PREFIX.<target>.<method>.bedGraph.gz), two of three targets,
# per-window arrays too (so the merge of every dataset is checked).
EXPLAIN_SETTINGS = ["--stride", "70", "--method", "plrp", "--method", "lrp",
                    "--target", "output_0", "--target", "output_2", "--device", "cpu",
                    "--arrays"]
TARGETS = ("output_0", "output_2")
METHODS = ("plrp", "lrp")
N_SHARDS = 3
# Root attributes allowed to differ between a merged file and an unsharded run.
RUN_SPECIFIC_ATTRS = {"command_line", "shard", "merged_from"}


def require_tool(name: str) -> str:
    """Path of an external program; fails (never skips) when it is missing."""
    path = shutil.which(name) or (
        str(Path(sys.executable).parent / name)
        if (Path(sys.executable).parent / name).exists() else None)
    assert path, (f"{name} is not installed; .ci/run installs it "
                  "(docs/pipelines.md lists the tools)")
    return path


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    """Run a command; on failure show its output in the assertion message."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def quiet_env() -> dict:
    """Environment for child processes: one torch thread each (2 cores, shared)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="2")
    return env


def assert_same_h5(merged: Path, reference: Path) -> None:
    """Every group, dataset (name, dtype, shape, values) and attribute equal, except the
    root attributes that name the run (``RUN_SPECIFIC_ATTRS``)."""
    seen = []
    with h5py.File(merged, "r") as a, h5py.File(reference, "r") as b:
        def attrs(obj, root):
            skip = RUN_SPECIFIC_ATTRS if root else set()
            return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                    for k, v in obj.attrs.items() if k not in skip}

        assert attrs(a, True) == attrs(b, True)
        names_a, names_b = [], []
        a.visit(names_a.append)
        b.visit(names_b.append)
        assert sorted(names_a) == sorted(names_b)
        for name in names_b:
            x, y = a[name], b[name]
            assert type(x) is type(y), name
            assert attrs(x, False) == attrs(y, False), name
            if isinstance(y, h5py.Dataset):
                assert x.dtype == y.dtype and x.shape == y.shape, name
                if h5py.check_string_dtype(y.dtype):
                    assert x.asstr()[()].tolist() == y.asstr()[()].tolist(), name
                else:
                    # bit-for-bit: the same float32 numbers, not merely close ones
                    assert np.array_equal(x[()], y[()], equal_nan=True), name
                    assert x[()].tobytes() == y[()].tobytes(), name
                seen.append(name)
    assert any(n.endswith("/relevance") for n in seen)
    assert any("/track/" in n for n in seen)
