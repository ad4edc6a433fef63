"""`plrp plot`: logos from tiny relevance files (with and without per-window arrays)."""

import struct

import numpy as np
import pytest
from click.testing import CliRunner

from plrp.cli import main
from plrp.errors import PlrpError
from plrp.jobs import plot
from plrp.outputs.h5 import RelevanceWriter
from plrp.outputs.tracks import TrackMerger

L = 50


def png_size(path):
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _write(path, arrays, fasta, seq, one_hot, rel):
    """chr1 (120 bp) tiled by windows 0-50, 40-90, 70-120 (chr2 has none), two methods."""
    starts = np.array([0, 40, 70])
    w = RelevanceWriter(path, chroms=[("chr1", 120), ("chr2", 500)], window=L,
                        methods=["lrp", "plrp"], targets=["CTCF"],
                        attrs={"targets": ["CTCF"], "methods": ["lrp", "plrp"], "stride": 30,
                               "fasta": str(fasta), "merge": "nearest-centre"},
                        method_attrs={"lrp": {"variant": "lambda", "p_pos": 0.0, "p_neg": 0.0},
                                      "plrp": {"variant": "lambda", "p_pos": 0.3,
                                               "p_neg": 0.15}},
                        arrays=arrays)
    with w:
        rows = w.append_windows(["chr1"] * 3, starts, starts + L, np.arange(3),
                                one_hot if arrays else None)
        for m in ("lrp", "plrp"):
            w.write_attributions(m, "CTCF", rows, score=np.ones(3), conservation_error=np.zeros(3),
                                 relevance=rel[m], hypothetical=rel[m])
            merger = TrackMerger(lambda c, p, v, m=m: w.append_track(m, "CTCF", c, p, v))
            merger.add_batch(["chr1"] * 3, starts, starts + L, rel[m].sum(axis=1))
            merger.finish()
        w.finish()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("h5")
    rng = np.random.default_rng(0)
    starts = np.array([0, 40, 70])
    seq = rng.integers(0, 4, 120)
    seq[10] = -1                                         # an N
    one_hot = np.zeros((3, 4, L), np.uint8)
    for i, s in enumerate(starts):
        for j in range(L):
            if seq[s + j] >= 0:
                one_hot[i, seq[s + j], j] = 1
    rel = {m: (one_hot * rng.normal(size=(3, 1, L))).astype(np.float32) for m in ("lrp", "plrp")}
    fasta = root / "g.fa"
    fasta.write_text(">chr1\n" + "".join("ACGTN"[b] for b in seq) + "\n>chr2\n" + "A" * 500 + "\n")
    _write(root / "rel.h5", True, root / "elsewhere.fa", seq, one_hot, rel)
    _write(root / "tracks.h5", False, fasta, seq, one_hot, rel)
    _write(root / "lost.h5", False, root / "gone.fa", seq, one_hot, rel)
    return {"arrays": root / "rel.h5", "tracks": root / "tracks.h5", "lost": root / "lost.h5",
            "fasta": fasta, "rel": rel, "one_hot": one_hot, "seq": seq}


@pytest.fixture(scope="module")
def h5file(files):
    return files["arrays"]


def test_region_parsing():
    assert plot.parse_region("chr1:1,000-1,200") == plot.Region("chr1", 1000, 1200)
    for bad, msg in (("chr1-5", "expected CHROM:START-END"), ("chr1:9-5", "below end"),
                     ("chr1:5-5", "below end"), ("chr1:0-2001", "too long")):
        with pytest.raises(PlrpError, match=msg):
            plot.parse_region(bad)


@pytest.mark.parametrize("tier", ["arrays", "tracks"])
def test_read_region_takes_the_nearest_centre_window(files, tier):
    target, tracks = plot.read_region(files[tier], plot.Region("chr1", 30, 90))
    assert target == "CTCF" and [t.label for t in tracks] == ["LRP", "PLRP-lambda p=0.3"]
    rel, oh, seq = files["rel"]["lrp"].sum(axis=1), files["one_hot"], files["seq"]
    # window centres 25, 65, 95: base 44 (centre 44.5) -> window 0, 45 -> 1, 79 -> 1, 80 -> 2
    lrp = tracks[0]
    assert lrp.heights[40 - 30] == pytest.approx(rel[0, 40])
    assert lrp.heights[45 - 30] == pytest.approx(rel[1, 5])
    assert lrp.heights[44 - 30] == pytest.approx(rel[0, 44])
    assert lrp.heights[79 - 30] == pytest.approx(rel[1, 39])
    assert lrp.heights[80 - 30] == pytest.approx(rel[2, 10])
    assert lrp.bases[45 - 30] == oh[1, :, 5].argmax() and lrp.covered.all()
    assert lrp.bases.tolist() == seq[30:90].tolist()
    _, tracks = plot.read_region(files[tier], plot.Region("chr1", 5, 15))
    assert tracks[0].bases[5] == -1 and tracks[0].heights[5] == 0.0   # the N


def test_a_file_without_arrays_needs_its_fasta(files, tmp_path):
    with pytest.raises(PlrpError, match="--fasta"):
        plot.read_region(files["lost"], plot.Region("chr1", 30, 90))
    _, tracks = plot.read_region(files["lost"], plot.Region("chr1", 30, 90),
                                 fasta=files["fasta"])
    assert tracks[0].bases.tolist() == files["seq"][30:90].tolist()
    out = tmp_path / "x.png"
    r = CliRunner().invoke(main, ["plot", "--h5", str(files["lost"]), "--region", "chr1:0-60",
                                  "-o", str(out)])
    assert r.exit_code == 2 and "--fasta" in r.output and not out.exists()
    r = CliRunner().invoke(main, ["plot", "--h5", str(files["lost"]), "--region", "chr1:0-60",
                                  "--fasta", str(files["fasta"]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert png_size(out) == plot.logo_figure_size(60, 2)


def test_plot_cli_writes_png_of_expected_size(h5file, tmp_path):
    bed = tmp_path / "t.bed"
    bed.write_text("chr1\t20\t35\tCTCF\t0\t+\nchr1\t100\t110\tTP53\t0\t-\n")
    out = tmp_path / "logo.png"
    r = CliRunner().invoke(main, ["plot", "--h5", str(h5file), "--region", "chr1:10-90",
                                  "--truth", str(bed), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert png_size(out) == plot.logo_figure_size(80, 2) == (1110, 490)


@pytest.mark.parametrize("region,msg", [
    ("chr1:10", "expected CHROM:START-END"),
    ("chrX:0-10", "chromosome 'chrX' is not in"),
    ("chr1:50-20", "below end"),
    ("chr1:100-130", "outside chr1"),
    ("chr2:0-100", "no window"),
    ("chr2:0-3000", "too long"),
])
def test_plot_cli_invalid_regions_fail_cleanly(h5file, tmp_path, region, msg):
    out = tmp_path / "x.png"
    r = CliRunner().invoke(main, ["plot", "--h5", str(h5file), "--region", region, "-o", str(out)])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_plot_cli_unknown_target_and_missing_file(h5file, tmp_path):
    r = CliRunner().invoke(main, ["plot", "--h5", str(h5file), "--region", "chr1:0-10",
                                  "--target", "SPI1", "-o", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "--target SPI1" in r.output
    r = CliRunner().invoke(main, ["plot", "--h5", str(tmp_path / "none.h5"), "--region",
                                  "chr1:0-10", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 3 and "no such file" in r.output
