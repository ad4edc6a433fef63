"""FASTA validation, indexed reading, one-hot, tiling, regions, batching."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from Bio import bgzf

from plrp.errors import InputError
from plrp.genome import fasta as gf
from plrp.genome import windows as gw


def write_fasta(path, records, width=60, newline="\n"):
    with open(path, "w", newline="") as fh:
        for name, seq in records:
            fh.write(f">{name}{newline}")
            for i in range(0, len(seq), width):
                fh.write(seq[i:i + width] + newline)
    return path


def write_bgzip(path, text: str):
    with bgzf.BgzfWriter(str(path), "wb") as fh:
        fh.write(text.encode())
    return path


def random_seq(rng, n, letters="ACGT"):
    return "".join(rng.choice(list(letters), n))


def files_in(folder):
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------- validation errors

BAD_INPUTS = {
    "inconsistent": (">a\nACGTACGT\nACG\nACGTACGT\n", "inconsistent line lengths"),
    "longer_line": (">a\nACGT\nACGTAC\n", "inconsistent line lengths"),
    "cr_only": (">a\rACGT\rACGT\r", "carriage-return"),
    "duplicate": (">a\nACGT\n>b\nAC\n>a\nGG\n", "duplicate sequence name 'a'"),
    "non_dna": (">a\nACGT\nACXT\n", "'X' is not a DNA letter"),
    "text_before_header": ("ACGT\n>a\nACGT\n", "before the first '>'"),
    "blank_inside": (">a\nACGT\n\nACGT\n", "after a blank line"),
    "no_name": (">\nACGT\n", "header without a sequence name"),
    "no_records": ("\n\n", "no FASTA records"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_fasta_gives_one_line_input_error(tmp_path, case):
    text, expected = BAD_INPUTS[case]
    path = tmp_path / "bad.fa"
    path.write_bytes(text.encode())
    with pytest.raises(InputError) as info:
        gf.FastaReader(path)
    msg = str(info.value)
    assert expected in msg and str(path) in msg and "\n" not in msg
    assert files_in(tmp_path) == ["bad.fa"]  # no index written anywhere near the input


def test_error_names_record_line_and_base_position(tmp_path):
    path = tmp_path / "x.fa"
    path.write_text(">first\nACGT\n>second desc\nACGT\nAC-T\n")
    with pytest.raises(InputError, match=r"record 'second', line 5, column 3 \(base 7\)"):
        gf.validate_fasta(path)


def test_empty_file_and_plain_gzip_are_errors(tmp_path):
    (tmp_path / "e.fa").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        gf.FastaReader(tmp_path / "e.fa")
    with gzip.open(tmp_path / "g.fa.gz", "wb") as fh:
        fh.write(b">a\nACGT\n")
    with pytest.raises(InputError, match="not bgzip"):
        gf.FastaReader(tmp_path / "g.fa.gz")


def test_crlf_lowercase_and_iupac_are_accepted(tmp_path):
    path = write_fasta(tmp_path / "a.fa", [("a", "acgtNRYacgt"), ("b", "GGCC")], width=4,
                       newline="\r\n")
    with gf.FastaReader(path) as reader:
        assert reader.chroms == [("a", 11), ("b", 4)]
        assert reader.fetch("a", 2, 9) == b"gtNRYac"
        assert reader.fetch("b", 0, 4) == b"GGCC"


# ---------------------------------------------------------------- reading

def test_bgzip_reads_like_plain_and_read_only_folder_stays_untouched(tmp_path):
    rng = np.random.default_rng(1)
    records = [("chr1", random_seq(rng, 5000, "ACGTNacgt")), ("chr2", random_seq(rng, 777))]
    plain_dir = tmp_path / "ro"
    plain_dir.mkdir()
    plain = write_fasta(plain_dir / "g.fa", records)
    text = plain.read_text()
    gz = write_bgzip(plain_dir / "g.fa.gz", text)
    before = files_in(plain_dir)
    os.chmod(plain_dir, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with gf.FastaReader(plain) as a, gf.FastaReader(gz) as b:
            assert a.chroms == b.chroms == [("chr1", 5000), ("chr2", 777)]
            for start, end in [(0, 5000), (59, 61), (4000, 4999), (1234, 3456)]:
                assert a.fetch("chr1", start, end) == b.fetch("chr1", start, end) \
                    == records[0][1][start:end].encode()
    finally:
        os.chmod(plain_dir, stat.S_IRWXU)
    assert files_in(plain_dir) == before  # root ignores permissions: check nothing appeared


def test_one_hot_matches_per_base_reference():
    rng = np.random.default_rng(2)
    seq = random_seq(rng, 500, "ACGTacgtNnRYKMSWBDHVU")
    got = gf.one_hot(seq)
    ref = np.zeros((4, len(seq)), dtype=np.uint8)
    for i, ch in enumerate(seq.upper()):
        ch = "T" if ch == "U" else ch
        if ch in "ACGT":
            ref[("ACGT").index(ch), i] = 1
    assert got.dtype == np.uint8 and got.shape == (4, 500)
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------- windows

@pytest.mark.parametrize("length,window,stride", [(1000, 200, 200), (1001, 200, 200),
                                                   (1000, 200, 70), (200, 200, 50),
                                                   (350, 100, 300), (199, 200, 10)])
def test_tiling_covers_every_base_and_ends_at_the_end(length, window, stride):
    starts = gw.tile_starts(length, window, stride)
    if length < window:
        assert starts.size == 0
        return
    covered = np.zeros(length, dtype=int)
    for s in starts:
        covered[s:s + window] += 1
    if stride <= window:  # a larger stride leaves gaps on purpose
        assert covered.min() >= 1
    assert starts[0] == 0 and starts[-1] == length - window
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts)[:-1] == stride)


def test_short_sequences_skipped_or_padded(tmp_path):
    path = write_fasta(tmp_path / "a.fa", [("long", "ACGT" * 30), ("short", "ACGTA")])
    with gf.FastaReader(path) as reader:
        spans = [gw.Span(c, 0, n) for c, n in reader.chroms]
        plan = gw.plan_windows(spans, 50, 50)
        assert [s.chrom for s in plan.short_spans] == ["short"]
        assert plan.n_windows == 3 and plan.start.tolist() == [0, 50, 70]
        padded = gw.plan_windows(spans, 50, 50, pad_short=True)
        assert padded.n_windows == 4 and not padded.short_spans
        batches = list(gw.iter_window_batches(reader, padded, 50, 10))
    last = batches[-1]
    assert last.chrom[-1] == "short" and last.end[-1] - last.start[-1] == 5
    np.testing.assert_array_equal(last.one_hot[-1][:, :5], gf.one_hot("ACGTA"))
    assert last.one_hot[-1][:, 5:].sum() == 0


def test_n_windows_are_skipped_and_counted(tmp_path):
    seq = "ACGT" * 25 + "N" * 100 + "ACGT" * 25
    path = write_fasta(tmp_path / "a.fa", [("c", seq)])
    with gf.FastaReader(path) as reader:
        plan = gw.plan_windows([gw.Span("c", 0, 300)], 50, 25)
        skipped = {}
        batches = list(gw.iter_window_batches(reader, plan, 50, 4, max_n_fraction=0.5,
                                              skipped=skipped))
    kept = np.concatenate([b.start for b in batches])
    # windows start at 0,25,...,250; N covers 100..200: starts 100, 125, 150 are all N;
    # 75 and 175 are exactly 50% N (kept: the threshold is "more than")
    assert kept.tolist() == [0, 25, 50, 75, 175, 200, 225, 250]
    assert skipped["max_n"] == 3
    assert [b.index.size for b in batches] == [4, 4]


def test_shards_cover_every_window_exactly_once():
    for total in (0, 1, 7, 100, 101):
        for n in (1, 2, 3, 8):
            ranges = [gw.shard_range(total, (i, n)) for i in range(1, n + 1)]
            idx = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
            np.testing.assert_array_equal(idx, np.arange(total))


def test_regions_bed_sorted_merged_and_checked(tmp_path):
    sizes = {"chrB": 1000, "chrA": 500}
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchrA\t10\t100\tpeak\nchrB\t300\t400\nchrB\t350\t450\n"
                   "chrB\t0\t50\n")
    spans = gw.read_regions_bed(bed, sizes)
    assert spans == [gw.Span("chrB", 0, 50), gw.Span("chrB", 300, 450), gw.Span("chrA", 10, 100)]
    for text, msg in [("chrC\t1\t2\n", "not in the FASTA"), ("chrA\t1\n", "3 columns"),
                      ("chrA\t400\t600\n", "outside"), ("chrA\tx\t5\n", "not integers")]:
        bed.write_text(text)
        with pytest.raises(InputError, match=msg):
            gw.read_regions_bed(bed, sizes)


def test_window_plan_ranges_match_tiling_of_each_span():
    rng = np.random.default_rng(5)
    spans = [gw.Span(f"c{k}", int(a), int(a + n)) for k, (a, n) in
             enumerate(zip(rng.integers(0, 1000, 12), rng.integers(1, 900, 12)))]
    for window, stride, pad in [(100, 100, False), (100, 37, True), (64, 200, False)]:
        plan = gw.plan_windows(spans, window, stride, pad_short=pad)
        ref = []
        for sp in spans:
            st = gw.tile_starts(sp.end - sp.start, window, stride)
            if st.size:
                ref += [(sp.chrom, sp.start + s, sp.start + s + window) for s in st.tolist()]
            elif pad:
                ref.append((sp.chrom, sp.start, sp.end))
        assert plan.n_windows == len(ref)
        for lo, hi in [(0, len(ref)), (3, 17), (len(ref) // 2, len(ref)), (5, 5)]:
            ids, s, e = plan.window_range(lo, hi)
            got = [(plan.spans[i].chrom, a, b) for i, a, b in zip(ids, s.tolist(), e.tolist())]
            assert got == ref[lo:hi]


def _random_fasta_text(rng) -> str:
    """A FASTA with the layouts a valid file may have, or one small mistake in it."""
    lines = []
    for r in range(int(rng.integers(1, 6))):
        name = f"rec{r}" if rng.random() < 0.9 else "rec0"  # now and then a duplicate
        lines.append(f">{name}" + (" some description" if rng.random() < 0.5 else ""))
        n, width = int(rng.integers(0, 300)), int(rng.integers(1, 70))
        seq = random_seq(rng, n, "ACGTNacgtnRYkmU")
        lines += [seq[i:i + width] for i in range(0, n, width)]
        lines += [""] * int(rng.integers(0, 3) if rng.random() < 0.3 else 0)  # blank tail
    text = "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")
    if rng.random() < 0.5:  # one mistake somewhere: a letter, a line, a name, a CR
        i = int(rng.integers(0, max(len(text), 1)))
        text = text[:i] + str(rng.choice(["X", "\n", "\nACG\n", " ", "\r", ">rec0\n", "\n\n"])) + text[i:]
    return text


def test_block_checks_agree_with_the_line_by_line_checks(tmp_path, monkeypatch):
    rng = np.random.default_rng(21)
    monkeypatch.setattr(gf, "_LINES_PER_HEADER", 0)  # small test files: always try blocks
    accepted = 0
    for block in (7, 64, 1 << 24):  # small blocks cut lines and records anywhere
        monkeypatch.setattr(gf, "_BLOCK", block)
        for k in range(300):
            path = tmp_path / f"f{block}_{k}.fa"
            path.write_bytes(_random_fasta_text(rng).encode())
            try:
                expected = gf._validate_by_line(path)
            except InputError:
                expected = None
            fast = gf._validate_by_block(path)
            if fast is not None:
                fast = [(name, length) for name, length, *_ in fast[0]]
            # the block pass may give up on a valid file, never accept an invalid one
            assert fast is None or fast == expected, path.read_bytes()[:300]
            if fast is not None:
                accepted += 1
            if expected is not None:
                assert gf.validate_fasta(path) == expected
            else:
                with pytest.raises(InputError):
                    gf.validate_fasta(path)
    assert accepted > 300  # and it does take the plain valid files


def test_our_fai_is_the_one_pyfaidx_builds(tmp_path, monkeypatch):
    import pyfaidx

    rng = np.random.default_rng(22)
    monkeypatch.setattr(gf, "_LINES_PER_HEADER", 0)
    written = 0
    for k in range(500):
        path = tmp_path / f"f{k}.fa"
        path.write_bytes(_random_fasta_text(rng).encode())
        try:
            records, fai = gf._check_fasta(path)
        except InputError:
            continue
        if fai is None:
            continue
        written += 1
        pyfaidx.Faidx(str(path), indexname=str(tmp_path / "ref.fai"), rebuild=True).close()
        assert fai == (tmp_path / "ref.fai").read_text(), path.read_text()[:300]
        (tmp_path / "ref.fai").unlink()
    assert written > 50
    # and the reader takes ours: the same bases as a reader that indexed the file itself
    path = write_fasta(tmp_path / "g.fa", [("a", random_seq(rng, 1000)),
                                           ("b", random_seq(rng, 333))], width=70)
    with gf.FastaReader(path) as ours:
        assert (Path(ours._tmpdir.name) / "g.fa.fai").read_text() == gf._check_fasta(path)[1]
        monkeypatch.setattr(gf, "_validate_by_block", lambda p: None)  # no .fai of ours
        with gf.FastaReader(path) as theirs:
            for name, n in (("a", 1000), ("b", 333)):
                for a, b in ((0, n), (69, 141), (n - 5, n)):
                    assert ours.fetch(name, a, b) == theirs.fetch(name, a, b)
