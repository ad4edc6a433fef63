"""`plrp plot`: logos from a tiny relevance file written here in the contracts-4 layout."""

import struct

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from plrp import plot
from plrp.cli import main
from plrp.errors import PlrpError

L = 50


def png_size(path):
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def h5file(tmp_path_factory):
    """chr1 (120 bp) tiled by windows 0-50, 40-90, 70-120 (a shard lacks 'chr2'), two methods."""
    path = tmp_path_factory.mktemp("h5") / "rel.h5"
    rng = np.random.default_rng(0)
    starts = np.array([0, 40, 70])
    seq = rng.integers(0, 4, 120)
    seq[10] = -1                                         # an N
    one_hot = np.zeros((3, 4, L), np.uint8)
    for i, s in enumerate(starts):
        for j in range(L):
            if seq[s + j] >= 0:
                one_hot[i, seq[s + j], j] = 1
    with h5py.File(path, "w") as h5:
        h5.attrs.update(format="plrp-relevance", format_version=1, window=L, stride=30,
                        targets='["CTCF"]', methods='["lrp", "plrp"]', alphabet="ACGT")
        sdt = h5py.string_dtype()
        h5["chroms/name"] = np.array(["chr1", "chr2"], dtype=object).astype(sdt)
        h5["chroms/length"] = np.array([120, 500], np.int64)
        h5.create_dataset("windows/chrom", data=np.array(["chr1"] * 3, dtype=object), dtype=sdt)
        h5["windows/start"] = starts
        h5["windows/end"] = starts + L
        h5["windows/index"] = np.arange(3)
        h5["windows/one_hot"] = one_hot
        for m, p in (("lrp", 0.0), ("plrp", 0.3)):
            rel = (one_hot * rng.normal(size=(3, 1, L))).astype(np.float32)
            g = h5.create_group(f"attributions/{m}/CTCF")
            g.attrs.update(variant="lambda", p_pos=p, p_neg=p / 2, composite="epsilon")
            g["relevance"] = rel
            g["hypothetical"] = rel
            g["score"] = np.ones(3, np.float32)
            g["conservation_error"] = np.zeros(3, np.float32)
    return path


def test_region_parsing():
    assert plot.parse_region("chr1:1,000-1,200") == plot.Region("chr1", 1000, 1200)
    for bad, msg in (("chr1-5", "expected CHROM:START-END"), ("chr1:9-5", "below end"),
                     ("chr1:5-5", "below end"), ("chr1:0-2001", "too long")):
        with pytest.raises(PlrpError, match=msg):
            plot.parse_region(bad)


def test_read_region_takes_the_nearest_centre_window(h5file):
    target, tracks = plot.read_region(h5file, plot.Region("chr1", 30, 90))
    assert target == "CTCF" and [t.label for t in tracks] == ["LRP", "PLRP-lambda p=0.3"]
    with h5py.File(h5file) as h5:
        rel = h5["attributions/lrp/CTCF/relevance"][()].sum(axis=1)
        oh = h5["windows/one_hot"][()]
    # window centres 25, 65, 95: base 44 (centre 44.5) -> window 0, 45 -> 1, 79 -> 1, 80 -> 2
    lrp = tracks[0]
    assert lrp.heights[40 - 30] == pytest.approx(rel[0, 40])
    assert lrp.heights[45 - 30] == pytest.approx(rel[1, 5])
    assert lrp.heights[44 - 30] == pytest.approx(rel[0, 44])
    assert lrp.heights[79 - 30] == pytest.approx(rel[1, 39])
    assert lrp.heights[80 - 30] == pytest.approx(rel[2, 10])
    assert lrp.bases[45 - 30] == oh[1, :, 5].argmax() and lrp.covered.all()
    _, tracks = plot.read_region(h5file, plot.Region("chr1", 5, 15))
    assert tracks[0].bases[5] == -1 and tracks[0].heights[5] == 0.0   # the N


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
    assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_plot_cli_unknown_target_and_missing_file(h5file, tmp_path):
    r = CliRunner().invoke(main, ["plot", "--h5", str(h5file), "--region", "chr1:0-10",
                                  "--target", "SPI1", "-o", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "--target SPI1" in r.output
    r = CliRunner().invoke(main, ["plot", "--h5", str(tmp_path / "none.h5"), "--region",
                                  "chr1:0-10", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "no such file" in r.output
