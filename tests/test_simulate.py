"""plrp simulate: determinism, BED <-> FASTA ground truth, label grammar, genome mode, errors.

The checks re-read the written files with the test's own parsers and score motif instances
with an independent float64 log-odds computation from the shipped JASPAR files.
"""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from plrp.cli import main
from plrp.errors import InputError, PlrpError
from plrp import simulate as sim

DATA = Path(sim.__file__).parent / "data"
COMP = str.maketrans("ACGT", "TGCA")


def read_fasta(path):
    records, name = {}, None
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            records[name] = []
        else:
            records[name].append(line.strip())
    return {k: "".join(v) for k, v in records.items()}


def read_bed(path):
    rows = []
    for line in Path(path).read_text().splitlines():
        chrom, start, end, motif, score, strand = line.split("\t")
        rows.append((chrom, int(start), int(end), motif, int(score), strand))
    return rows


def read_pfm(name):
    """Independent JASPAR parser -> counts (4, W) float64."""
    lines = (DATA / "motifs" / f"{name}.jaspar").read_text().splitlines()
    return np.array([[float(v) for v in ln.split("[")[1].split("]")[0].split()]
                     for ln in lines[1:5]])


def log_odds_score(counts, seq):
    probs = (counts + 0.25) / (counts.sum(axis=0) + 1.0)
    lo = np.log2(probs / 0.25)
    return sum(lo["ACGT".index(b), i] for i, b in enumerate(seq)), lo


def oriented(fasta, chrom, start, end, strand):
    s = fasta[chrom][start:end]
    return s if strand == "+" else s.translate(COMP)[::-1]


def run_cli(args):
    return CliRunner().invoke(main, ["simulate", *args])


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "w"
    r = run_cli(["--out", str(out), "-n", "400", "--seed", "11", "--max-copies", "2"])
    assert r.exit_code == 0, r.output
    return out


def test_same_seed_gives_identical_files_and_other_seed_differs(windows, tmp_path):
    again = tmp_path / "w"
    assert run_cli(["--out", str(again), "-n", "400", "--seed", "11", "--max-copies", "2"]).exit_code == 0
    for suffix in (".fa", ".labels.tsv", ".motifs.bed", ".simulation.json"):
        assert Path(str(windows) + suffix).read_bytes() == Path(str(again) + suffix).read_bytes()
    other = tmp_path / "o"
    assert run_cli(["--out", str(other), "-n", "400", "--seed", "12", "--max-copies", "2"]).exit_code == 0
    assert Path(str(windows) + ".fa").read_bytes() != Path(str(other) + ".fa").read_bytes()


def test_bed_intervals_hold_the_sampled_motif_instances(windows):
    fasta = read_fasta(str(windows) + ".fa")
    bed = read_bed(str(windows) + ".motifs.bed")
    assert len(fasta) == 400 and all(len(s) == 200 and set(s) <= set("ACGT") for s in fasta.values())
    assert {r[3] for r in bed} == {"CTCF", "TP53", "SPI1"} and {r[5] for r in bed} == {"+", "-"}
    pfms = {m: read_pfm(m) for m in ("CTCF", "TP53", "SPI1")}
    rel = {m: [] for m in pfms}
    for chrom, start, end, motif, score, strand in bed:
        counts = pfms[motif]
        assert 0 <= start < end <= 200 and end - start == counts.shape[1]
        inst = oriented(fasta, chrom, start, end, strand)
        # sampled from frequencies without pseudocount: every base was seen in its column
        assert all(counts["ACGT".index(b), i] > 0 for i, b in enumerate(inst)), (chrom, start, motif)
        s, lo = log_odds_score(counts, inst)
        low, high = lo.min(axis=0).sum(), lo.max(axis=0).sum()
        assert score == round(1000 * (s - low) / (high - low))
        rel[motif].append(s / high)
    for motif, values in rel.items():
        # instances score far above random sequence (whose mean log-odds is negative)
        assert np.mean(values) > 0.5, motif
    # instances in one window never overlap
    by_window = {}
    for chrom, start, end, *_ in bed:
        by_window.setdefault(chrom, []).append((start, end))
    for spans in by_window.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_wrong_strand_would_not_match(windows):
    """Guards the orientation convention: reading '-' instances forward scores much lower."""
    fasta = read_fasta(str(windows) + ".fa")
    minus = [r for r in read_bed(str(windows) + ".motifs.bed") if r[5] == "-" and r[3] == "CTCF"]
    counts = read_pfm("CTCF")
    right = [log_odds_score(counts, oriented(fasta, c, s, e, "-"))[0] for c, s, e, *_ in minus]
    wrong = [log_odds_score(counts, fasta[c][s:e])[0] for c, s, e, *_ in minus]
    assert np.mean(right) > np.mean(wrong) + 10


def test_labels_follow_the_grammar(windows):
    lines = Path(str(windows) + ".labels.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["name", "CTCF", "TP53", "CTCF_AND_TP53"]
    present = {}
    for chrom, _, _, motif, _, _ in read_bed(str(windows) + ".motifs.bed"):
        present.setdefault(chrom, set()).add(motif)
    fasta_names = list(read_fasta(str(windows) + ".fa"))
    rows = [ln.split("\t") for ln in lines[1:]]
    assert [r[0] for r in rows] == fasta_names
    counts = {"decoy_ctcf": 0, "decoy_tp53": 0, "both": 0, "distractor_in_neg": 0}
    for name, a, b, c in rows:
        has = present.get(name, set())
        assert int(a) == ("CTCF" in has) and int(b) == ("TP53" in has)
        assert int(c) == ("CTCF" in has and "TP53" in has)
        counts["decoy_ctcf"] += has >= {"CTCF"} and "TP53" not in has
        counts["decoy_tp53"] += has >= {"TP53"} and "CTCF" not in has
        counts["both"] += int(c)
        counts["distractor_in_neg"] += "SPI1" in has and c == "0"
    # negatives of the AND task hold single motifs (decoys); the distractor is everywhere
    assert all(v > 40 for v in counts.values()), counts


def test_api_matches_files_and_gc_option():
    data = sim.simulate(300, 150, seed=5, gc=0.7, distractor_rate=0.0)
    assert data.labels.shape == (300, 3) and data.labels.dtype == np.uint8
    x = data.one_hot()
    assert x.shape == (300, 4, 150) and np.all(x.sum(axis=1) == 1)
    mask = np.ones((300, 150), dtype=bool)
    row = {n: i for i, n in enumerate(data.names)}
    for inst in data.instances:
        seq = data.sequences[row[inst.chrom]][inst.start:inst.end]
        assert seq == (inst.instance if inst.strand == "+" else sim.reverse_complement(inst.instance))
        mask[row[inst.chrom], inst.start:inst.end] = False
    background = x.transpose(0, 2, 1)[mask]  # (M, 4)
    gc = background[:, 1:3].sum() / len(background)
    assert abs(gc - 0.7) < 0.01
    assert "SPI1" not in {i.motif for i in data.instances}


def test_genome_mode(tmp_path):
    out = tmp_path / "g"
    r = run_cli(["--genome", "--n-chroms", "3", "--length", "6000", "--seed", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    fasta = read_fasta(str(out) + ".fa")
    assert list(fasta) == ["chr1", "chr2", "chr3"] and all(len(s) == 6000 for s in fasta.values())
    bed = read_bed(str(out) + ".motifs.bed")
    sites = [ln.split("\t") for ln in Path(str(out) + ".sites.tsv").read_text().splitlines()]
    assert sites[0] == ["chrom", "start", "end", "CTCF", "TP53", "CTCF_AND_TP53"]
    assert len(sites) - 1 >= 9 and len(bed) >= len(sites) - 1
    for chrom, start, end, motif, _, strand in bed:
        inside = [s for s in sites[1:] if s[0] == chrom and int(s[1]) <= start and end <= int(s[2])]
        assert len(inside) == 1
        counts = read_pfm(motif)
        inst = oriented(fasta, chrom, start, end, strand)
        assert all(counts["ACGT".index(b), i] > 0 for i, b in enumerate(inst))
    for chrom, start, end, a, b, c in sites[1:]:
        has = {r[3] for r in bed if r[0] == chrom and int(start) <= r[1] < int(end)}
        assert has, "every site holds a motif"
        assert (int(a), int(b), int(c)) == ("CTCF" in has, "TP53" in has, has >= {"CTCF", "TP53"})


def test_shipped_example_matches_its_bed():
    fasta = read_fasta(DATA / "example.fa")
    bed = read_bed(DATA / "example.motifs.bed")
    assert len(fasta) >= 2 and all(2000 <= len(s) <= 20000 for s in fasta.values())
    assert {r[3] for r in bed} >= {"CTCF", "TP53"}
    for chrom, start, end, motif, _, strand in bed:
        counts = read_pfm(motif)
        inst = oriented(fasta, chrom, start, end, strand)
        assert all(counts["ACGT".index(b), i] > 0 for i, b in enumerate(inst))
    for p in DATA.rglob("*"):
        assert p.stat().st_size < 2_000_000, p


def test_user_mistakes_are_one_line_errors_and_write_nothing(tmp_path):
    r = run_cli(["--out", str(tmp_path / "x"), "--gc", "1.5"])
    assert r.exit_code != 0 and "gc" in r.output and "Traceback" not in r.output
    r = run_cli(["--out", str(tmp_path / "x"), "--length", "20", "--max-copies", "3",
                 "--motif-rate", "1"])
    assert r.exit_code != 0 and "overlap" in r.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PlrpError, match="unknown motif"):
        sim.load_motifs(["NOPE"])
    bad = tmp_path / "bad.jaspar"
    bad.write_text(">X y\nA [ 1 2 ]\nC [ 1 x ]\nG [ 1 2 ]\nT [ 1 2 ]\n")
    with pytest.raises(InputError, match="line 3"):
        sim.read_jaspar(bad)
    with pytest.raises(PlrpError, match="task name"):
        sim.simulate(5, tasks={"bad name": ("CTCF",)})


def test_shipped_motifs_record_their_jaspar_ids():
    motifs = sim.load_motifs()
    assert {n: m.matrix_id for n, m in motifs.items()} == {
        "CTCF": "MA0139.2", "SPI1": "MA0080.7", "TP53": "MA0106.3"}
    readme = (DATA / "motifs" / "README.md").read_text()
    assert "CC BY 4.0" in readme and "JASPAR2026" in readme


def test_cli_defaults_equal_the_api_and_custom_grammar(windows, tmp_path):
    data = sim.simulate(400, 200, seed=11, max_copies=2)
    sim.write_outputs(tmp_path / "api", data)
    for suffix in (".fa", ".labels.tsv", ".motifs.bed", ".simulation.json"):
        assert (tmp_path / f"api{suffix}").read_bytes() == Path(f"{windows}{suffix}").read_bytes()
    out = tmp_path / "custom"
    r = run_cli(["--out", str(out), "-n", "200", "--task", "S=SPI1", "--task", "S_AND_C=SPI1+CTCF",
                 "--distractors", ""])
    assert r.exit_code == 0, r.output
    lines = Path(f"{out}.labels.tsv").read_text().splitlines()
    assert lines[0] == "name\tS\tS_AND_C"
    present = {}
    for chrom, _, _, motif, _, _ in read_bed(f"{out}.motifs.bed"):
        present.setdefault(chrom, set()).add(motif)
    assert set().union(*present.values()) == {"SPI1", "CTCF"}
    for row in lines[1:]:
        name, s, sc = row.split("\t")
        has = present.get(name, set())
        assert (int(s), int(sc)) == ("SPI1" in has, has >= {"SPI1", "CTCF"})


# ---------------------------------------------------------------------------------------
# the pair grammar: CTCF then TP53 on one strand within --max-gap bp; SPI1 a distractor

PAIR_ARGS = ["--grammar", "pair", "-n", "1200", "--seed", "21", "--max-gap", "15"]
PAIR_SUFFIXES = (".fa", ".labels.tsv", ".motifs.bed", ".ignored.bed", ".simulation.json")


@pytest.fixture(scope="module")
def pair_windows(tmp_path_factory):
    out = tmp_path_factory.mktemp("pair") / "p"
    r = run_cli(["--out", str(out), *PAIR_ARGS])
    assert r.exit_code == 0, r.output
    return out


def pair_rule(a, b, max_gap):
    """Independent statement of the rule on BED rows: TP53 (b) reads on CTCF's (a) strand,
    downstream of it, with at most max_gap bp between them."""
    if a[5] != b[5]:
        return False
    if a[5] == "+":
        return a[2] <= b[1] <= a[2] + max_gap
    return b[2] <= a[1] <= b[2] + max_gap


def test_pair_grammar_labels_follow_the_rule(pair_windows):
    fasta = read_fasta(f"{pair_windows}.fa")
    carrying = read_bed(f"{pair_windows}.motifs.bed")
    ignored = read_bed(f"{pair_windows}.ignored.bed")
    lines = Path(f"{pair_windows}.labels.tsv").read_text().splitlines()
    assert lines[0] == "name\tCTCF_TP53_PAIR"
    labels = {ln.split("\t")[0]: int(ln.split("\t")[1]) for ln in lines[1:]}
    assert list(labels) == list(fasta) and len(labels) == 1200
    assert {r[3] for r in carrying} == {"CTCF", "TP53"}
    assert {r[3] for r in ignored} == {"CTCF", "TP53", "SPI1"}
    by_window = {}
    for row in carrying + ignored:
        chrom, start, end, motif, _, strand = row
        counts = read_pfm(motif)
        inst = oriented(fasta, chrom, start, end, strand)
        assert end - start == counts.shape[1]
        assert all(counts["ACGT".index(b), i] > 0 for i, b in enumerate(inst)), row
        by_window.setdefault(chrom, []).append(row)
    both_in_negatives = 0
    for name, label in labels.items():
        rows = sorted(by_window.get(name, []), key=lambda r: r[1])
        assert all(x[2] <= y[1] for x, y in zip(rows, rows[1:])), "instances overlap"
        a_rows = [r for r in rows if r[3] == "CTCF"]
        b_rows = [r for r in rows if r[3] == "TP53"]
        pairs = [(a, b) for a in a_rows for b in b_rows if pair_rule(a, b, 15)]
        assert label == int(bool(pairs)), (name, rows)
        # the BED of label-carrying motifs holds exactly the members of rule-satisfying pairs
        members = {m for ab in pairs for m in ab}
        assert {r for r in carrying if r[0] == name} == members
        both_in_negatives += label == 0 and bool(a_rows) and bool(b_rows)
    positives = sum(labels.values())
    assert 0.45 < positives / 1200 < 0.55
    # decoys: many negatives hold both motifs (too far apart or in the wrong orientation)
    assert both_in_negatives > 0.3 * (1200 - positives)


def test_pair_grammar_distractor_is_as_frequent_in_both_classes(pair_windows):
    labels = dict(ln.split("\t") for ln in
                  Path(f"{pair_windows}.labels.tsv").read_text().splitlines()[1:])
    with_spi1 = {r[0] for r in read_bed(f"{pair_windows}.ignored.bed") if r[3] == "SPI1"}
    rate = {c: np.mean([n in with_spi1 for n, v in labels.items() if v == c]) for c in "01"}
    # default rate 0.3 in both classes; binomial s.d. of each ~0.019 here
    assert abs(rate["0"] - 0.3) < 0.06 and abs(rate["1"] - 0.3) < 0.06, rate
    assert abs(rate["0"] - rate["1"]) < 0.06, rate


def test_pair_grammar_is_deterministic_and_options_are_checked(pair_windows, tmp_path):
    again = tmp_path / "again"
    assert run_cli(["--out", str(again), *PAIR_ARGS]).exit_code == 0
    for suffix in PAIR_SUFFIXES:
        assert Path(f"{pair_windows}{suffix}").read_bytes() == Path(f"{again}{suffix}").read_bytes()
    other = tmp_path / "other"
    assert run_cli(["--out", str(other), *PAIR_ARGS[:-3], "22", *PAIR_ARGS[-2:]]).exit_code == 0
    assert Path(f"{pair_windows}.fa").read_bytes() != Path(f"{other}.fa").read_bytes()
    record = __import__("json").loads(Path(f"{pair_windows}.simulation.json").read_text())
    assert (record["grammar"], record["pair"], record["max_gap"]) == ("pair", ["CTCF", "TP53"], 15)
    # API == CLI
    data = sim.simulate_pair(1200, 200, seed=21, max_gap=15)
    sim.write_outputs(tmp_path / "api", data)
    for suffix in PAIR_SUFFIXES:
        assert Path(f"{pair_windows}{suffix}").read_bytes() == (tmp_path / f"api{suffix}").read_bytes()
    # options of the other grammar are refused, nothing is written
    bad = tmp_path / "bad"
    for args in (["--grammar", "pair", "--max-copies", "2"], ["--max-gap", "5"],
                 ["--grammar", "pair", "--genome"], ["--grammar", "pair", "--pair", "CTCF"],
                 ["--grammar", "pair", "--max-gap", "180"]):
        r = run_cli(["--out", str(bad), *args])
        assert r.exit_code == 2 and "Traceback" not in r.output, (args, r.output)
    assert not list(tmp_path.glob("bad*"))
