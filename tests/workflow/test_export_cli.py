"""`plrp export modisco` choices and errors, on the workflow's merged file (2 methods x 2
targets)."""

from __future__ import annotations

import subprocess

import h5py
import numpy as np

from workflow_support import PLRP, TARGETS, run


def _merged(snakemake_run):
    return snakemake_run / "results" / "run.h5"


def test_export_needs_a_target_when_there_are_several(snakemake_run, tmp_path):
    proc = subprocess.run(PLRP + ["export", "modisco", str(_merged(snakemake_run)), "--out",
                                  str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "--target" in err and "output_0" in err, err
    assert not (tmp_path / "x" / "ohe.npz").exists()


def test_export_unknown_method_or_target(snakemake_run, tmp_path):
    for flags, needle in ((["--target", "nope"], "'nope'"),
                          (["--target", TARGETS[0], "--method", "gradient"], "'gradient'")):
        proc = subprocess.run(PLRP + ["export", "modisco", str(_merged(snakemake_run)),
                                      "--out", str(tmp_path / "x"), *flags],
                              capture_output=True, text=True)
        assert proc.returncode != 0 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_export_chosen_method_and_target(snakemake_run, tmp_path):
    out = tmp_path / "lrp"
    run(PLRP + ["export", "modisco", str(_merged(snakemake_run)), "--target", TARGETS[1],
                "--method", "lrp", "--out", str(out)])
    with h5py.File(_merged(snakemake_run), "r") as h5:
        hyp = h5[f"attributions/lrp/{TARGETS[1]}/hypothetical"][()]
        one_hot = h5["windows/one_hot"][()]
        chrom = h5["windows/chrom"].asstr()[()]
        start, index = h5["windows/start"][()], h5["windows/index"][()]
    with np.load(out / "attr.npz") as f:
        assert np.array_equal(f["arr_0"], hyp)
    with np.load(out / "ohe.npz") as f:
        assert np.array_equal(f["arr_0"], one_hot.astype(np.float32))
    bed = [line.split("\t") for line in (out / "windows.bed").read_text().splitlines()]
    assert [(c, int(s), int(i)) for c, s, _, i in bed] == \
        list(zip(chrom.tolist(), start.tolist(), index.tolist()))
    assert "-w 200" in (out / "README.txt").read_text()


def test_export_top_windows_by_score(snakemake_run, tmp_path):
    out = tmp_path / "top"
    run(PLRP + ["export", "modisco", str(_merged(snakemake_run)), "--target", TARGETS[0],
                "--top", "7", "--out", str(out)])
    with h5py.File(_merged(snakemake_run), "r") as h5:
        score = h5[f"attributions/plrp/{TARGETS[0]}/score"][()]
        hyp = h5[f"attributions/plrp/{TARGETS[0]}/hypothetical"][()]
        index = h5["windows/index"][()]
    # independent choice: the 7 largest scores, kept in genome order
    chosen = sorted(sorted(range(score.size), key=lambda i: (-float(score[i]), i))[:7])
    with np.load(out / "attr.npz") as f:
        assert np.array_equal(f["arr_0"], hyp[chosen])
    bed = [line.split("\t") for line in (out / "windows.bed").read_text().splitlines()]
    assert [int(b[3]) for b in bed] == index[chosen].tolist()
    proc = subprocess.run(PLRP + ["export", "modisco", str(_merged(snakemake_run)), "--target",
                                  TARGETS[0], "--top", "0", "--out", str(tmp_path / "z")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "--top 0" in proc.stderr
