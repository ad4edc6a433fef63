"""Snakemake scatter/gather and `plrp merge`: the merged output is exactly one unsharded run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import gzip

import h5py
import numpy as np

from plrp.outputs.h5 import open_relevance

from workflow_support import (EXPLAIN_SETTINGS, METHODS, N_SHARDS, PLRP, SNAKEFILE, TARGETS,
                              assert_same_h5, quiet_env, run)


def _shards(snakemake_run):
    return [snakemake_run / "results" / "shards" / f"run.shard{i}of{N_SHARDS}.h5"
            for i in range(1, N_SHARDS + 1)]


def test_snakemake_output_equals_unsharded_run(snakemake_run, unsharded):
    merged = snakemake_run / "results" / "run"
    assert_same_h5(merged.with_suffix(".h5"), unsharded.with_suffix(".h5"))
    for t in TARGETS:
        for m in METHODS:
            for ext in ("bedGraph.gz", "bedGraph.gz.tbi"):
                got = (snakemake_run / "results" / f"run.{t}.{m}.{ext}").read_bytes()
                want = unsharded.parent.joinpath(f"run.{t}.{m}.{ext}").read_bytes()
                assert got == want, f"{t}.{m}.{ext} differs from the unsharded run"
            text = gzip.decompress((snakemake_run / "results" / f"run.{t}.{m}.bedGraph.gz")
                                   .read_bytes())
            assert text.count(b"\n") > 1000
    # shards write no tracks of their own: the merge rebuilds them
    assert not list((snakemake_run / "results" / "shards").glob("*.bedGraph*"))
    with h5py.File(merged.with_suffix(".h5"), "r") as h5:
        assert h5.attrs["shard"] == "1/1"
        assert h5.attrs["n_windows_skipped_n"] > 0      # the N stretch of chr2
        index = h5["windows/index"][()]
        total = int(h5.attrs["n_windows_total"])
    assert np.all(np.diff(index) > 0) and index[-1] < total and index.size < total


def test_shards_really_split_overlapping_windows(snakemake_run, unsharded):
    """The test above has teeth: each shard covers only a block of windows, and gluing the
    shards' own tracks together does not give the unsharded track (windows overlap across
    shard boundaries), so plrp merge must rebuild them."""
    shards = _shards(snakemake_run)
    counts = []
    for i, path in enumerate(shards, start=1):
        with h5py.File(path, "r") as h5:
            assert h5.attrs["shard"] == f"{i}/{N_SHARDS}"
            counts.append(h5["windows/start"].shape[0])
    assert min(counts) > 0 and len(set(counts)) >= 1

    def track(path):
        with open_relevance(path) as f:
            return {c: f.track("plrp", TARGETS[0], c) for c in f.track_chroms("plrp", TARGETS[0])}

    want = track(unsharded.with_suffix(".h5"))
    glued: dict = {}
    for path in shards:
        for chrom, (pos, val) in track(path).items():
            old = glued.get(chrom, (pos[:0], val[:0]))
            glued[chrom] = (np.concatenate([old[0], pos]), np.concatenate([old[1], val]))
    assert sorted(glued) == sorted(want)
    assert any(not (np.array_equal(glued[c][0], want[c][0])
                    and np.array_equal(glued[c][1], want[c][1])) for c in want)


def test_merge_cli_any_order_with_bigwig(snakemake_run, unsharded, tmp_path):
    import pyBigWig

    shards = _shards(snakemake_run)
    run(PLRP + ["merge", str(shards[2]), str(shards[0]), str(shards[1]),
                "--out", str(tmp_path / "run"), "--bigwig"])
    assert_same_h5(tmp_path / "run.h5", unsharded.with_suffix(".h5"))
    # outputs get the usual permissions (umask), like plrp explain's, not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {0o666 & ~umask}
    for t in TARGETS:
        for m in METHODS:
            stem = f"run.{t}.{m}"
            assert (tmp_path / f"{stem}.bedGraph.gz").read_bytes() == \
                unsharded.parent.joinpath(f"{stem}.bedGraph.gz").read_bytes()
            a = pyBigWig.open(str(tmp_path / f"{stem}.bw"))
            b = pyBigWig.open(str(unsharded.parent / f"{stem}.bw"))
            try:
                assert a.chroms() == b.chroms()
                for chrom in b.chroms():
                    assert a.intervals(chrom) == b.intervals(chrom)
            finally:
                a.close()
                b.close()


def _merge_fails(shards, out, *needles):
    proc = subprocess.run(PLRP + ["merge", *map(str, shards), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert not list(out.parent.glob(out.name + "*")), "merge left an output behind"
    return err


def test_merge_refuses_missing_shard(snakemake_run, tmp_path):
    shards = _shards(snakemake_run)
    _merge_fails([shards[0], shards[2]], tmp_path / "m", "missing shard 2/3")


def test_merge_refuses_repeated_shard(snakemake_run, tmp_path):
    shards = _shards(snakemake_run)
    _merge_fails([shards[0], shards[1], shards[1], shards[2]], tmp_path / "m",
                 "shard 2/3 given twice")
    copy = tmp_path / "copy.h5"
    shutil.copy(shards[0], copy)
    _merge_fails([shards[0], shards[1], shards[2], copy], tmp_path / "m",
                 "shard 1/3 given twice", str(shards[0]))


def test_merge_refuses_different_settings(snakemake_run, genome, small_model, tmp_path):
    shards = _shards(snakemake_run)
    # a real second run of shard 2 with another pruning proportion
    run(PLRP + ["explain", "--fasta", str(genome["fasta"]), "--model", str(small_model),
                "--out", str(tmp_path / "p3"), "--shard", f"2/{N_SHARDS}", "--p-pos", "0.3",
                "--quiet"] + EXPLAIN_SETTINGS, env=quiet_env())
    err = _merge_fails([shards[0], tmp_path / "p3.h5", shards[2]], tmp_path / "m", "p_pos")
    assert "p3.h5" in err
    # another model: same file with a different model_sha256
    other = tmp_path / "other_model.h5"
    shutil.copy(shards[1], other)
    with h5py.File(other, "r+") as h5:
        h5.attrs["model_sha256"] = "0" * 64
    _merge_fails([shards[0], other, shards[2]], tmp_path / "m", "model_sha256")
    # another split: shard 2 of a 4-way split
    four = tmp_path / "four.h5"
    shutil.copy(shards[1], four)
    with h5py.File(four, "r+") as h5:
        h5.attrs["shard"] = "2/4"
    _merge_fails([shards[0], four, shards[2]], tmp_path / "m", "4-way")


def test_merge_refuses_non_relevance_file(tmp_path):
    bogus = tmp_path / "x.h5"
    with h5py.File(bogus, "w") as h5:
        h5["a"] = np.zeros(3)
    _merge_fails([bogus], tmp_path / "m", "not a plrp relevance file")


def test_slurm_profile_dry_run(genome, small_model, tmp_path):
    """The SLURM profile parses, shard jobs ask for one GPU each (--gpus via `gpu`), and the
    full DAG (with TF-MoDISco) resolves. A dry run submits nothing: the flags sbatch gets
    are checked in test_slurm_submission.py."""
    proc = run([sys.executable, "-m", "snakemake", "-s",
                str(SNAKEFILE), "--workflow-profile",
                str(SNAKEFILE.parent / "profiles" / "slurm"), "-n", "--directory",
                str(tmp_path), "--config", f"fasta={genome['fasta']}",
                f"model={small_model}", "shards=4", "modisco={enabled: true, report: true}"])
    out = proc.stdout + proc.stderr
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs.get("explain_shard") == 4 and jobs.get("merge") == 1
    assert jobs.get("modisco_motifs") == 3 and jobs.get("modisco_report") == 3
    assert jobs.get("modisco_seqlets") == 3
    gpu_lines = [line for line in out.splitlines()
                 if "resources:" in line and "slurm_partition=gpu" in line]
    assert len(gpu_lines) == 4 and all("gpu=1" in line for line in gpu_lines)
