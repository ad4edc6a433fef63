"""Merging shards of one or two windows each, over BED regions: still exactly one run.

Shards this small put 1-2 windows in a batch, where the unsharded run batches them all
together; the numbers must not depend on how windows were batched. Tracks are sparse (the
default) and windows overlap, so every shard boundary is joined from the edge windows.
"""

from __future__ import annotations

from plrp.jobs.explain import explain_fasta
from plrp.jobs.merge import merge_shards

from workflow_support import assert_same_h5


def test_merge_of_tiny_shards_over_regions(genome, small_model, tmp_path):
    regions = tmp_path / "regions.bed"
    # two regions of chr2 (one reaching into its N stretch) and one of chr10
    regions.write_text("chr2\t100\t600\nchr2\t900\t1300\nchr10\t2000\t2450\n")
    settings = dict(model=str(small_model), regions=regions, stride=90, methods=("plrp",),
                    targets=["output_1"], device="cpu", progress=False, bedgraph="bgzip")
    full = explain_fasta(genome["fasta"], tmp_path / "full" / "run", **settings)
    n = full.n_windows_total
    assert 8 <= n <= 16
    shards = [explain_fasta(genome["fasta"], tmp_path / "shards" / f"s{i}", shard=f"{i}/{n}",
                            **settings).h5 for i in range(1, n + 1)]
    merged = merge_shards(shards[::-1], tmp_path / "merged" / "run", formats=["bgzip"])
    assert merged.n_windows == full.n_windows
    assert_same_h5(merged.h5, full.h5)
    for suffix in (".bedGraph.gz", ".bedGraph.gz.tbi"):
        assert (tmp_path / "merged" / f"run.output_1{suffix}").read_bytes() == \
            (tmp_path / "full" / f"run.output_1{suffix}").read_bytes()
    # the merged run opens in IGV as the unsharded one does: the same session
    assert merged.session == tmp_path / "merged" / "run.igv.xml"
    assert merged.session.read_text() == full.session.read_text()
