"""The merged bedGraph as genome tools see it: bedtools, sort, pyBigWig, bgzip + tabix."""

from __future__ import annotations

import gzip
import os
import subprocess

import numpy as np
import pytest

from workflow_support import METHODS, PLRP, TARGETS, require_tool, run


@pytest.fixture(scope="module")
def bedgraph(snakemake_run, tmp_path_factory):
    """(path of the plain merged bedGraph, its data lines without the track line): the
    workflow's shards merged again with ``--bedgraph plain``, the file IGV users load."""
    shards = sorted((snakemake_run / "results" / "shards").glob("run.shard*.h5"))
    out = tmp_path_factory.mktemp("plain") / "run"
    run(PLRP + ["merge", *map(str, shards), "--out", str(out), "--bedgraph", "plain"])
    path = out.parent / f"run.{TARGETS[0]}.{METHODS[0]}.bedGraph"
    gz = snakemake_run / "results" / f"run.{TARGETS[0]}.{METHODS[0]}.bedGraph.gz"
    lines = path.read_text().splitlines()
    # the workflow's bgzip track holds the same lines, without the track line
    assert gzip.decompress(gz.read_bytes()).decode().splitlines() == lines[1:]
    assert lines[0].startswith("track type=bedGraph ")
    data = tmp_path_factory.mktemp("tracks") / "data.bedGraph"
    data.write_text("".join(line + "\n" for line in lines[1:]))
    return path, data, lines[1:]


def _tool(cmd, stdin=None) -> str:
    env = dict(os.environ, LC_ALL="C")
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def test_bedgraph_sorted_as_sort_and_bedtools_sort_it(bedgraph, genome):
    path, data, lines = bedgraph
    assert _tool(["sort", "-k1,1", "-k2,2n", str(data)]).splitlines() == lines
    bedtools = require_tool("bedtools")
    assert _tool([bedtools, "sort", "-i", str(data)]).splitlines() == lines
    # byte order of names: chr10 between chr1 and chr2 (FASTA order is chr1, chr2, chr10)
    order = list(dict.fromkeys(line.split("\t")[0] for line in lines))
    assert order == ["chr1", "chr10", "chr2"]


def test_bedgraph_has_no_overlaps(bedgraph):
    path, data, lines = bedgraph
    bedtools = require_tool("bedtools")
    # each interval intersects only itself (bedtools intervals are half-open)
    counts = _tool([bedtools, "intersect", "-a", str(data), "-b", str(data), "-c"])
    assert [line.split("\t")[4] for line in counts.splitlines()] == ["1"] * len(lines)
    # merging only overlapping (not book-ended) intervals changes nothing
    merged = _tool([bedtools, "merge", "-d", "-1", "-i", str(data)]).splitlines()
    assert merged == ["\t".join(line.split("\t")[:3]) for line in lines]
    # and bedtools reads the file with its track line (as IGV gets it)
    assert len(_tool([bedtools, "merge", "-d", "-1", "-i", str(path)]).splitlines()) == len(lines)


def test_bedgraph_within_chromosome_sizes(bedgraph, genome):
    path, data, lines = bedgraph
    bedtools = require_tool("bedtools")
    # slop by 0 clips every interval to the genome file's sizes: nothing may change
    clipped = _tool([bedtools, "slop", "-b", "0", "-i", str(data), "-g", str(genome["sizes"])])
    assert clipped.splitlines() == lines
    for line in lines:
        chrom, start, end, _ = line.split("\t")
        assert 0 <= int(start) < int(end) <= genome["chroms"][chrom]
    # N bases (chr2:1000-1400) are all-zero input columns: no relevance, no track line
    assert not any(line.split("\t")[0] == "chr2" and int(line.split("\t")[2]) > 1000
                   and int(line.split("\t")[1]) < 1400 for line in lines)
    assert not any(line.startswith("chrM\t") for line in lines)  # shorter than a window


def test_pybigwig_conversion(bedgraph, genome, snakemake_run, tmp_path):
    import pyBigWig

    path, data, lines = bedgraph
    bw_path = tmp_path / "track.bw"
    chroms = sorted(genome["chroms"].items(), key=lambda kv: kv[0].encode())
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader(chroms)
    parsed = [line.split("\t") for line in lines]
    for chrom in [c for c, _ in chroms]:
        rows = [p for p in parsed if p[0] == chrom]
        if rows:
            bw.addEntries([chrom] * len(rows), [int(r[1]) for r in rows],
                          ends=[int(r[2]) for r in rows], values=[float(r[3]) for r in rows])
    bw.close()
    bw = pyBigWig.open(str(bw_path))
    try:
        got = [(c, s, e, v) for c, _ in chroms for s, e, v in (bw.intervals(c) or [])]
    finally:
        bw.close()
    want = [(c, int(s), int(e), float(np.float32(v))) for c, s, e, v in parsed]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    assert np.array_equal(np.array([g[3] for g in got], np.float32),
                          np.array([w[3] for w in want], np.float32))
    # plrp merge --bigwig (written by the workflow) holds the same intervals
    ours = pyBigWig.open(str(snakemake_run / "results" / path.with_suffix(".bw").name))
    try:
        assert [(c, s, e) for c, _ in chroms for s, e, v in (ours.intervals(c) or [])] == \
            [g[:3] for g in got]
    finally:
        ours.close()


def test_bgzip_tabix_region_query(bedgraph, snakemake_run, tmp_path):
    """plrp merge --bedgraph bgzip writes the same lines, bgzip-compressed and indexed."""
    path, data, lines = bedgraph
    tabix = require_tool("tabix")
    shards = sorted((snakemake_run / "results" / "shards").glob("*.h5"))
    run(PLRP + ["merge", *map(str, shards), "--out", str(tmp_path / "run"), "--bedgraph",
                "bgzip"])
    gz = tmp_path / f"run.{TARGETS[0]}.{METHODS[0]}.bedGraph.gz"
    assert (tmp_path / f"{gz.name}.tbi").stat().st_size > 0
    assert not (tmp_path / f"run.{TARGETS[0]}.{METHODS[0]}.bedGraph").exists()
    assert gzip.decompress(gz.read_bytes()).decode().splitlines() == lines   # no track line
    # tabix regions are 1-based, inclusive: chr2:1501-1600 is 0-based [1500, 1600)
    got = _tool([tabix, str(gz), "chr2:1501-1600"]).splitlines()
    want = [line for line in lines if line.split("\t")[0] == "chr2"
            and int(line.split("\t")[1]) < 1600 and int(line.split("\t")[2]) > 1500]
    assert got == want and len(want) >= 20
    assert _tool([tabix, str(gz), "chrM"]).strip() == ""
