"""benchmarks/gpu.sh and its Python part: a CPU dry run here, the real run on a GPU machine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reference import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert _gpu_check().main(["--device", "cpu", "--small", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    checks = result["checks"]
    assert [c["check"] for c in checks] == ["agreement"] * 4 + ["selection"] * 2
    assert all(c["ok"] for c in checks)
    assert {(c["model"], c["method"]) for c in checks if c["check"] == "agreement"} == \
        {(m, k) for m in ("shipped", "deepsea") for k in ("lrp", "plrp")}
    assert result["engine_windows_per_s_fp32"] > 0 and result["projection_hours_3_1_gbp"] > 0
    printed = capsys.readouterr().out
    assert "projection: 3.1 Gbp" in printed and "targets, batch" in printed


def test_gpu_sh_fails_loudly_without_cuda(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable,
               OUT_DIR=str(tmp_path))
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "FAILED: torch sees no CUDA GPU" in run.stderr
    assert not (tmp_path / "gpu.json").exists()
