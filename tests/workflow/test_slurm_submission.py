"""The SLURM profile as the SLURM executor plugin submits it, against a fake cluster.

`snakemake -n` never calls sbatch, so the workflow really runs with
workflow/profiles/slurm, with fake `sbatch` (records its arguments, prints a job id) and
fake `sinfo`, `squeue`, `sacct`, `scontrol`, `sacctmgr`, `sshare`, `scancel` on the PATH;
Snakemake is stopped once the expected jobs are submitted. The profile's commented examples
(account, qos, constraint, gres) are switched on line by line, so the lines users copy are
the ones checked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow_support import REPO, SNAKEFILE, require_tool

PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
SLURM_TOOLS = ("sbatch", "sinfo", "squeue", "sacct", "scontrol", "sacctmgr", "sshare", "scancel")
# every call is logged; sbatch answers as `sbatch --parsable` does (the job id), the
# accounting tools know the account, status queries report no job yet (still pending)
FAKE_TOOL = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
log = os.environ["FAKE_SLURM_LOG"]
stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open(log, "a") as fh:
    fh.write(json.dumps({{"tool": name, "argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
if name == "sbatch":
    with open(log) as fh:
        print(4000 + sum(json.loads(line)["tool"] == "sbatch" for line in fh))
elif name in ("sacctmgr", "sshare"):
    print("my_account")
"""
# the profile's commented examples, switched on (each must be found exactly once)
EXAMPLES = {
    "account": [(r'# (slurm_account: "my_account")', r"\1")],
    "qos": [(r'#   (qos: "gpu") .*', r"\1")],
    "constraint": [(r'#   (constraint: "ib") .*', r"\1")],
    "gres": [(r"#   (gpu: 0)\n", r"\1\n"), (r'#   (gres: "gpu:1")\n', r"\1\n")],
}


def _profile(folder: Path, examples) -> Path:
    text = PROFILE.read_text()
    for name in examples:
        for pattern, replacement in EXAMPLES[name]:
            text, n = re.subn(pattern, replacement, text)
            assert n == 1, f"{PROFILE}: the {name} example ({pattern}) is not there once"
    folder.mkdir()
    (folder / "config.yaml").write_text(text)
    return folder


@pytest.fixture()
def fake_slurm(tmp_path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "fake_slurm_tool"
    tool.write_text(FAKE_TOOL.format(python=sys.executable))
    tool.chmod(0o755)
    for name in SLURM_TOOLS:
        (bin_dir / name).symlink_to(tool.name)
    return {"bin": bin_dir, "log": tmp_path / "slurm_calls.jsonl"}


def _submit(fake_slurm, workdir: Path, profile: Path, n_jobs: int, config=()) -> list[list]:
    """Run the workflow on the fake cluster until ``n_jobs`` sbatch calls are made; their
    argument lists, in submission order."""
    require_tool("snakemake")
    env = dict(os.environ, FAKE_SLURM_LOG=str(fake_slurm["log"]),
               PATH=os.pathsep.join([str(fake_slurm["bin"]), str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")]))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
           "--workflow-profile", str(profile), "--config", "shards=2", "targets=[CTCF]",
           *config]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    calls = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if fake_slurm["log"].exists():
                calls = [c["argv"] for c in map(json.loads, fake_slurm["log"].open())
                         if c["tool"] == "sbatch"]
                if len(calls) >= n_jobs:
                    break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0]
    assert len(calls) == n_jobs, f"{len(calls)} sbatch calls, expected {n_jobs}\n{output[-3000:]}"
    return calls


def _flags(argv: list[str]) -> dict:
    """sbatch's options as {flag: value}: `--mem 32000`, `--qos=gpu`, `-p gpu` alike."""
    flags, i = {}, 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and "=" in token:
            key, value = token.split("=", 1)
            flags[key] = value
        elif token.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            flags[token] = argv[i + 1]
            i += 1
        else:
            flags[token] = True
        i += 1
    return flags


def test_shard_jobs_get_the_gpu_partition_and_the_profile_resources(fake_slurm, tmp_path):
    profile = _profile(tmp_path / "profile", ["account", "qos", "constraint"])
    calls = _submit(fake_slurm, tmp_path / "work", profile, n_jobs=2)
    comments = sorted(_flags(argv)["--comment"] for argv in calls)
    assert comments == ["rule_explain_shard_wildcards_1", "rule_explain_shard_wildcards_2"]
    for argv in calls:
        flags = _flags(argv)
        assert flags["-p"] == "gpu" and flags["-A"] == "my_account"
        assert flags["-t"] == "240" and flags["--mem"] == "32000"
        assert flags["--cpus-per-task"] == "8" and flags["--gpus"] == "1"
        assert flags["--qos"] == "gpu" and flags["-C"] == "ib"
        assert "--gres" not in flags
        # the job runs `plrp explain --shard I/2` through Snakemake on the node
        assert "explain_shard" in flags["--wrap"]


def test_gres_instead_of_gpus(fake_slurm, tmp_path):
    profile = _profile(tmp_path / "profile", ["gres"])
    # the profile's `gpu: 0` overrides the rule's gpu resource (config gpus_per_shard)
    for argv in _submit(fake_slurm, tmp_path / "work", profile, n_jobs=2):
        flags = _flags(argv)
        assert flags["--gres"] == "gpu:1" and "--gpus" not in flags
        assert flags["-p"] == "gpu" and "-A" not in flags and "--qos" not in flags


def test_merge_job_gets_the_default_partition(fake_slurm, tmp_path):
    """Shards present: only the merge is submitted, a CPU job with the default resources
    and its own memory; the shard-only qos and constraint stay off it."""
    work = tmp_path / "work"
    shards = work / "results" / "shards"
    shards.mkdir(parents=True)
    for i in (1, 2):
        (shards / f"plrp.shard{i}of2.h5").write_bytes(b"")
    profile = _profile(tmp_path / "profile", ["account", "qos", "constraint"])
    (argv,) = _submit(fake_slurm, work, profile, n_jobs=1)
    flags = _flags(argv)
    assert flags["--comment"] == "rule_merge"
    assert flags["-p"] == "cpu" and flags["-A"] == "my_account"
    assert flags["-t"] == "60" and flags["--mem"] == "16000"
    assert flags["--cpus-per-task"] == "1" and flags["--ntasks"] == "1"
    assert not {"--gpus", "--gres", "--qos", "-C"} & flags.keys()
