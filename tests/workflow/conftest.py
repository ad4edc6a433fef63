"""Fixtures of the workflow tests: a small simulated genome, a small model, and one Snakemake
run of workflow/Snakefile (3 shards) next to one unsharded ``plrp explain`` run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from workflow_support import (EXPLAIN_SETTINGS, METHODS, N_SHARDS, PLRP, SNAKEFILE, TARGETS,
                              quiet_env, require_tool, run)


@pytest.fixture(scope="session")
def genome(tmp_path_factory) -> dict:
    """A simulated genome: chr1 (2.5 kb), chr2 (3 kb with a 400 bp N stretch: windows skipped),
    chr10 (byte order differs from FASTA order) and chrM (shorter than one window)."""
    from plrp.simulate import simulate_genome

    root = tmp_path_factory.mktemp("genome")
    data = simulate_genome(3, 3000, seed=5, site_spacing=700)
    names = ["chr1", "chr2", "chr10"]
    seqs = list(data.sequences)
    # unequal lengths, so that shard blocks do not start at chromosome starts
    seqs[0] = seqs[0][:2500]
    seqs[1] = seqs[1][:1000] + "N" * 400 + seqs[1][1400:]
    names.append("chrM")
    seqs.append(seqs[0][:150])
    fasta = root / "genome.fa"
    with open(fasta, "w") as fh:
        for name, seq in zip(names, seqs):
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i:i + 60] + "\n")
    sizes = root / "genome.sizes"
    sizes.write_text("".join(f"{n}\t{len(s)}\n" for n, s in zip(names, seqs)))
    return {"fasta": fasta, "sizes": sizes, "chroms": dict(zip(names, map(len, seqs)))}


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """A small plrp-default network with fixed random weights (merging needs no training)."""
    import torch

    from plrp.models.architectures import build_model
    from plrp.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("plrp-default", n_filters=16, n_filters2=16, n_hidden=16)
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="session")
def unsharded(genome, small_model, tmp_path_factory) -> Path:
    """PREFIX of one `plrp explain` run without --shard (the reference)."""
    out = tmp_path_factory.mktemp("unsharded")
    run(PLRP + ["explain", "--fasta", str(genome["fasta"]), "--model", str(small_model),
                "--out", str(out / "run"), "--bigwig", "--quiet"] + EXPLAIN_SETTINGS,
        env=quiet_env())
    return out / "run"


@pytest.fixture(scope="session")
def snakemake_run(genome, small_model, tmp_path_factory) -> Path:
    """Working directory of one `snakemake --cores 2` run of workflow/Snakefile (3 shards)."""
    require_tool("snakemake")
    workdir = tmp_path_factory.mktemp("snakemake")
    # targets, methods and device come from the config's own keys (as EXPLAIN_SETTINGS)
    extra = "--stride 70 --quiet"
    config = [
        f"fasta={genome['fasta']}", f"model={small_model}", f"shards={N_SHARDS}",
        "name=run", "out_dir=results", "device=cpu", "gpus_per_shard=0",
        "threads_per_shard=1", "bigwig=True", f"plrp={sys.executable} -m plrp",
        "arrays=True", "keep_shards=True",
        f"explain_args={extra}", f"targets={list(TARGETS)}", f"methods={list(METHODS)}",
    ]
    run([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory",
         str(workdir), "--cores", "2", "--quiet", "--config", *config], env=quiet_env())
    return workdir
