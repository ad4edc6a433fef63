"""`plrp export modisco` choices and errors, on files with 2 methods x 2 targets, with and
without per-window arrays (written here the way plrp explain writes them)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from plrp.cli import main
from plrp.outputs.h5 import RelevanceWriter
from workflow_support import require_tool, run

TARGETS = ("output_0", "output_2")
L = 30
N = 20


def _write(path, arrays, dtype="float32"):
    rng = np.random.default_rng(1)
    one_hot = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (N, L))].transpose(0, 2, 1).copy()
    data = {}
    with RelevanceWriter(path, chroms=[("chr1", 400), ("chr2", 300)], window=L,
                         methods=["plrp", "lrp"], targets=list(TARGETS),
                         attrs={"targets": list(TARGETS), "methods": ["plrp", "lrp"]},
                         method_attrs={}, arrays=arrays, array_dtype=dtype) as w:
        chrom = ["chr1"] * 12 + ["chr2"] * 8
        start = np.r_[np.arange(12) * L, np.arange(8) * L]
        rows = w.append_windows(chrom, start, start + L, np.arange(N) * 2,
                                one_hot if arrays else None)
        for m in ("plrp", "lrp"):
            for t in TARGETS:
                hyp = rng.normal(size=(N, 4, L)).astype(np.float32)
                score = rng.permutation(N).astype(np.float32)
                data[m, t] = (hyp, score)
                w.write_attributions(m, t, rows, score=score, conservation_error=np.zeros(N),
                                     relevance=one_hot * hyp, hypothetical=hyp)
        w.finish()
    return {"path": path, "data": data, "one_hot": one_hot, "chrom": chrom, "start": start}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {"arrays": _write(root / "a.h5", True),
            "float16": _write(root / "h.h5", True, "float16"),
            "tracks": _write(root / "t.h5", False)}


def _export(path, out, *flags):
    return CliRunner().invoke(main, ["export", "modisco", str(path), "--out", str(out), *flags])


def test_export_needs_a_target_when_there_are_several(files, tmp_path):
    r = _export(files["arrays"]["path"], tmp_path / "x")
    err = r.output.strip()
    assert r.exit_code == 2 and len(err.splitlines()) == 1
    assert "--target" in err and "output_0" in err, err
    assert not (tmp_path / "x" / "ohe.npz").exists()


def test_export_unknown_method_or_target(files, tmp_path):
    for flags, needle in ((["--target", "nope"], "'nope'"),
                          (["--target", TARGETS[0], "--method", "gradient"], "'gradient'")):
        r = _export(files["arrays"]["path"], tmp_path / "x", *flags)
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_export_without_arrays_says_how_to_get_them(files, tmp_path):
    r = _export(files["tracks"]["path"], tmp_path / "x", "--target", TARGETS[0])
    err = r.output.strip()
    assert r.exit_code == 2 and len(err.splitlines()) == 1, err
    assert "per-window arrays" in err and "--arrays" in err and "--regions" in err
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())
    r = _export(files["tracks"]["path"].with_name("none.h5"), tmp_path / "x")
    assert r.exit_code == 3 and "no such file" in r.output


@pytest.mark.parametrize("tier", ["arrays", "float16"])
def test_export_chosen_method_and_target(files, tmp_path, tier):
    f = files[tier]
    out = tmp_path / "lrp"
    r = _export(f["path"], out, "--target", TARGETS[1], "--method", "lrp")
    assert r.exit_code == 0, r.output
    hyp = f["data"]["lrp", TARGETS[1]][0]
    if tier == "float16":
        hyp = hyp.astype(np.float16).astype(np.float32)
    with np.load(out / "attr.npz") as z:
        assert z["arr_0"].dtype == np.float32 and np.array_equal(z["arr_0"], hyp)
    with np.load(out / "ohe.npz") as z:
        assert np.array_equal(z["arr_0"], f["one_hot"].astype(np.float32))
    bed = [line.split("\t") for line in (out / "windows.bed").read_text().splitlines()]
    assert [(c, int(s), int(e), int(i)) for c, s, e, i, _ in bed] == \
        list(zip(f["chrom"], f["start"].tolist(), (f["start"] + L).tolist(),
                 (np.arange(N) * 2).tolist()))
    score = f["data"]["lrp", TARGETS[1]][1]
    assert [float(b[4]) for b in bed] == pytest.approx(score.tolist(), rel=1e-6)
    assert f"-w {L}" in (out / "README.txt").read_text()


def test_export_top_windows_by_score(files, tmp_path):
    f = files["arrays"]
    out = tmp_path / "top"
    r = _export(f["path"], out, "--target", TARGETS[0], "--top", "7")
    assert r.exit_code == 0, r.output
    hyp, score = f["data"]["plrp", TARGETS[0]]
    # independent choice: the 7 largest scores, kept in genome order
    chosen = sorted(sorted(range(N), key=lambda i: (-float(score[i]), i))[:7])
    with np.load(out / "attr.npz") as z:
        assert np.array_equal(z["arr_0"], hyp[chosen])
    bed = [line.split("\t") for line in (out / "windows.bed").read_text().splitlines()]
    assert [int(b[3]) for b in bed] == [2 * i for i in chosen]
    r = _export(f["path"], tmp_path / "z", "--target", TARGETS[0], "--top", "0")
    assert r.exit_code != 0 and "--top 0" in r.output


def test_modisco_seqlet_bed_maps_seqlets_to_the_genome(files, tmp_path):
    """windows.bed is the peaks file of the real `modisco seqlet-bed`: a seqlet at offsets
    [a, b) of the -w window centred in window i lands at window i's genome position."""
    import h5py

    modisco = require_tool("modisco")
    f = files["arrays"]
    out = tmp_path / "m"
    assert _export(f["path"], out, "--target", TARGETS[0]).exit_code == 0
    w = 20                                    # modisco motifs -w, centred in the L = 30 window
    # seqlets as modisco motifs stores them: offsets into the centred -w window
    seqlets = {"example_idx": [3, 14, 19], "start": [0, 5, 12], "end": [8, 13, 20],
               "is_revcomp": [False, True, False]}
    with h5py.File(tmp_path / "modisco_results.h5", "w") as h5:
        h5.attrs["window_size"] = w
        group = h5.create_group("pos_patterns/pattern_0/seqlets")
        for key, values in seqlets.items():
            group[key] = np.array(values)
    run([modisco, "seqlet-bed", "-i", str(tmp_path / "modisco_results.h5"),
         "-p", str(out / "windows.bed"), "-c", "*", "-o", str(tmp_path / "seqlets.bed"), "-q"])
    rows = [line.split("\t") for line in (tmp_path / "seqlets.bed").read_text().splitlines()
            if line and not line.startswith("track")]
    expected = []
    for i, a, b, rc in zip(*seqlets.values()):
        first = int(f["start"][i]) + (L - w) // 2          # the -w window's first base
        # modisco-lite (3.0) writes start + 1 (a 1-based start), the end as is
        expected.append([f["chrom"][i], str(first + a + 1), str(first + b),
                         "-" if rc else "+"])
    assert [[r[0], r[1], r[2], r[5]] for r in rows] == expected
