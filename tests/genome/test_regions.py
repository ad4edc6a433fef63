"""--regions (BED, bgzip BED, narrowPeak, loci), --chroms, --exclude, clipping, --threads."""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from plrp.errors import EXIT_INPUT, InputError
from plrp.genome import windows as gw
from plrp.models.architectures import build_model
from plrp.models.checkpoint import save_checkpoint

SIZES = {"chrB": 1000, "chrA": 500, "chr10": 800}
BED = "track name=x\nchrA\t10\t100\tpeak\nchrB\t300\t400\nchrB\t350\t450\nchrB\t0\t50\n"


def windows_of(spans, window=50, stride=50):
    plan = gw.plan_windows(gw.byte_ordered(spans), window, stride)
    _, start, end = plan.window_range(0, plan.n_windows)
    chroms = [plan.spans[k].chrom for k in plan.window_range(0, plan.n_windows)[0]]
    return list(zip(chroms, start.tolist(), end.tolist()))


def test_plain_bgzip_and_gzip_bed_give_identical_windows(tmp_path):
    plain = tmp_path / "r.bed"
    plain.write_text(BED)
    gz = tmp_path / "r.gz.bed"  # told by the magic bytes, not the name
    gz.write_bytes(gzip.compress(BED.encode()))
    sources = [plain, gz]
    if shutil.which("bgzip"):
        bgz = tmp_path / "r.bed.gz"
        bgz.write_bytes(subprocess.run(["bgzip", "-c", str(plain)], check=True,
                                       capture_output=True).stdout)
        sources.append(bgz)
    expected = [gw.Span("chrA", 10, 100), gw.Span("chrB", 0, 50), gw.Span("chrB", 300, 450)]
    for path in sources:
        spans = gw.read_regions(path, SIZES, window=50)
        assert spans == expected, path
        assert windows_of(spans) == windows_of(expected)


def test_narrowpeak_one_window_centred_on_each_summit(tmp_path):
    rows = [  # chrom start end name score strand signal p q summit
        ("chrB", 100, 800, 350),   # centre 450 -> [400, 500)
        ("chrB", 120, 300, 10),    # centre 130 -> [80, 180), overlaps none
        ("chrB", 400, 600, -1),    # no summit: middle 500 -> [450, 550), overlaps the first
        ("chrA", 0, 40, 5),        # centre 5 -> [-45, 55): clipped to [0, 55)
        ("chr10", 10, 20, 0),      # centre 10 -> [-40, 60): clipped
    ]
    text = "".join(f"{c}\t{s}\t{e}\tp{i}\t0\t.\t1.0\t2.0\t3.0\t{m}\n"
                   for i, (c, s, e, m) in enumerate(rows))
    for name in ("p.narrowPeak", "p.narrowPeak.gz", "p.txt"):  # suffix or 10 integer cols
        path = tmp_path / name
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz")
                         else text.encode())
        spans = gw.read_regions(path, SIZES, window=100)
        # byte order of names (chr10 < chrA < chrB), then start; no merging
        assert [(s.chrom, s.start, s.end) for s in spans] == [
            ("chr10", 0, 60), ("chrA", 0, 55),
            ("chrB", 80, 180), ("chrB", 400, 500), ("chrB", 450, 550)], name
        assert all(s.centred for s in spans)
    plan = gw.plan_windows(spans, 100, 100, pad_short=False)
    assert plan.start.tolist() == [80, 400, 450]  # the clipped ones are short: skipped
    bad = tmp_path / "bad.narrowPeak"
    bad.write_text("chrB\t100\t200\tp\t0\t.\t1\t2\t3\t150\n")
    with pytest.raises(InputError, match=r"bad.narrowPeak: line 1, column 10: summit"):
        gw.read_regions(bad, SIZES, window=100)
    bad.write_text("chrB\t100\t200\tp\t0\t.\t1\t2\t3\n")
    with pytest.raises(InputError, match=r"line 1, column 10: summit .* not an integer"):
        gw.read_regions(bad, SIZES, window=100)


def test_loci_are_one_based_inclusive_with_commas(tmp_path):
    assert gw.parse_locus("chrB:1,000-2,000") == ("chrB", 999, 2000)
    assert gw.parse_locus("gi|123|ref|X:5-5") == ("gi|123|ref|X", 4, 5)
    assert gw.parse_locus("peaks.bed") is None
    spans = gw.read_regions(["chrB:101-200", "chrA:1-50", "chrB:151-300"], SIZES, window=50)
    assert spans == [gw.Span("chrA", 0, 50), gw.Span("chrB", 100, 300)]
    for locus, msg in [("chrB:0-10", "1-based"), ("chrB:20-10", "start <= end"),
                       ("chrZ:1-10", "'chrZ' is not in the FASTA"),
                       ("nofile.bed", "no such file, and not a chr:start-end locus")]:
        with pytest.raises(InputError, match=msg):
            gw.read_regions([locus], SIZES, window=50)


def test_bed_errors_name_file_line_and_column(tmp_path):
    bed = tmp_path / "r.bed"
    for text, msg in [("chrA\t1\t5\nchrC\t1\t2\n", r"line 2, column 1: chromosome 'chrC'"),
                      ("chrA\t1\n", r"line 1, column 3: expected at least 3 columns"),
                      ("chrA\tx\t5\n", r"line 1, column 2: start is not an integer"),
                      ("chrA\t5\t5\n", r"line 1, column 3: end 5 is not after"),
                      ("#only a comment\n", "no regions")]:
        bed.write_text(text)
        with pytest.raises(InputError, match=msg) as err:
            gw.read_regions(bed, SIZES, window=50)
        assert str(bed) in str(err.value) and "\n" not in str(err.value)


def test_regions_past_the_end_are_clipped_with_one_warning(tmp_path, caplog):
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t400\t600\nchrA\t450\t700\nchrA\t600\t900\nchrB\t0\t10\n")
    with caplog.at_level(logging.WARNING, logger="plrp"):
        spans = gw.read_regions(bed, SIZES, window=50)
    assert spans == [gw.Span("chrA", 400, 500), gw.Span("chrB", 0, 10)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("3 region(s)") and "1 lay wholly outside" in warnings[0]


def test_chroms_keeps_only_the_named_sequences():
    spans = gw.genome_spans(list(SIZES.items()))
    assert [s.chrom for s in gw.select_spans(spans, SIZES, chroms="chrA,chr10")] == [
        "chrA", "chr10"]
    assert [s.chrom for s in gw.select_spans(spans, SIZES, chroms=("chrB", "chrA"))] == [
        "chrB", "chrA"]
    with pytest.raises(InputError, match="--chroms: 'chr9' not in the FASTA"):
        gw.select_spans(spans, SIZES, chroms="chrA,chr9")


def test_exclude_cuts_tiled_spans_and_drops_centred_windows(tmp_path):
    black = tmp_path / "blacklist.bed.gz"
    black.write_bytes(gzip.compress(b"chrB\t100\t150\nchrB\t140\t200\nchrB\t900\t950\n"
                                    b"chrUn_x\t0\t10\n"))  # unknown chroms are ignored
    ivs = gw.read_intervals(black, SIZES)
    assert ivs["chrB"].tolist() == [[100, 200], [900, 950]] and "chrUn_x" not in ivs
    spans = [gw.Span("chrB", 0, 1000), gw.Span("chrA", 0, 500),
             gw.Span("chrB", 120, 220, centred=True), gw.Span("chrB", 300, 400, centred=True)]
    out = gw.select_spans(spans, SIZES, exclude=ivs)
    assert out == [gw.Span("chrB", 0, 100), gw.Span("chrB", 200, 900),
                   gw.Span("chrB", 950, 1000), gw.Span("chrA", 0, 500),
                   gw.Span("chrB", 300, 400, centred=True)]
    # no window of the run overlaps an excluded base
    for chrom, s, e in windows_of(out, 50, 25):
        if chrom == "chrB":
            assert all(e <= a or s >= b for a, b in ivs["chrB"].tolist())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("regions_run")
    torch.manual_seed(123)
    net = build_model("plrp-default", input_length=100, n_filters=6, kernel_size=9,
                      n_filters2=6, kernel_size2=3, pool=2, n_hidden=5, n_outputs=2,
                      output_names=["tA", "tB"])
    save_checkpoint(folder / "m.safetensors", net)
    rng = np.random.default_rng(7)
    fasta = folder / "g.fa"
    fasta.write_text("".join(f">{n}\n" + "".join(rng.choice(list("ACGT"), k)) + "\n"
                             for n, k in [("chr2", 900), ("chr1", 700)]))
    return folder, fasta, folder / "m.safetensors"


def test_cli_explain_narrowpeak_chroms_exclude_threads(tiny, caplog):
    import h5py

    from plrp.cli import main

    folder, fasta, model = tiny
    peaks = folder / "p.narrowPeak"
    peaks.write_text("chr2\t100\t400\tp1\t0\t.\t1\t2\t3\t150\n"   # [200, 300)
                     "chr2\t500\t950\tp2\t0\t.\t1\t2\t3\t-1\n"   # clipped end: [675, 775)
                     "chr1\t0\t300\tp3\t0\t.\t1\t2\t3\t200\n"    # [150, 250)
                     "chr1\t300\t600\tp4\t0\t.\t1\t2\t3\t100\n")  # [350, 450): blacklisted
    black = folder / "black.bed"
    black.write_text("chr1\t400\t410\n")
    threads = torch.get_num_threads()
    seen = []
    set_threads = torch.set_num_threads
    try:
        torch.set_num_threads = lambda n: (seen.append(n), set_threads(n))[1]
        res = CliRunner().invoke(main, [
            "explain", "--fasta", str(fasta), "--model", str(model), "--out",
            str(folder / "out"), "--regions", str(peaks), "--regions", "chr1:601-700",
            "--chroms", "chr1,chr2", "--exclude", str(black), "--threads", "1",
            "--bedgraph", "none", "--quiet"])
        assert res.exit_code == 0, res.output
        # --threads 1 for the run, the caller's count back afterwards
        assert seen[:1] == [1] and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads = set_threads
        set_threads(threads)
    with h5py.File(folder / "out.h5") as h5:
        names = [n.decode() if isinstance(n, bytes) else n for n in h5["chroms/name"][()]]
        chrom = [names[i] for i in h5["windows/chrom_id"][()]]
        got = list(zip(chrom, h5["windows/start"][()].tolist(), h5["windows/end"][()].tolist()))
    assert got == [("chr1", 150, 250), ("chr1", 600, 700), ("chr2", 200, 300),
                   ("chr2", 675, 775)]
    # --chroms keeps one sequence only
    res = CliRunner().invoke(main, [
        "explain", "--fasta", str(fasta), "--model", str(model), "--out", str(folder / "o2"),
        "--regions", str(peaks), "--chroms", "chr2", "--bedgraph", "none", "--quiet"])
    assert res.exit_code == 0, res.output
    with h5py.File(folder / "o2.h5") as h5:
        assert h5["windows/start"][()].tolist() == [200, 675]
    res = CliRunner().invoke(main, [
        "explain", "--fasta", str(fasta), "--model", str(model), "--out", str(folder / "o3"),
        "--regions", "chr9:1-100", "--quiet"])
    assert res.exit_code == EXIT_INPUT and "chr9" in res.output, res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output
