"""Merging shards of one or two windows each, over BED regions: still exactly one run.

Shards this small put 1-2 windows in a batch, where the unsharded run batches them all
together; the numbers must not depend on how windows were batched.
"""

from __future__ import annotations

from plrp.merge import merge_shards
from plrp.run import explain_fasta

from workflow_support import assert_same_h5


def test_merge_of_tiny_shards_over_regions(genome, small_model, tmp_path):
    regions = tmp_path / "regions.bed"
    # two regions of chr2 (one reaching into its N stretch) and one of chr10
    regions.write_text("chr2\t100\t600\nchr2\t900\t1300\nchr10\t2000\t2450\n")
    settings = dict(model=str(small_model), regions=regions, stride=90, methods=("plrp",),
                    targets=["output_1"], device="cpu", progress=False)
    full = explain_fasta(genome["fasta"], tmp_path / "full" / "run", **settings)
    n = full.n_windows_total
    assert 8 <= n <= 16
    shards = [explain_fasta(genome["fasta"], tmp_path / "shards" / f"s{i}", shard=f"{i}/{n}",
                            **settings).h5 for i in range(1, n + 1)]
    merged = merge_shards(shards[::-1], tmp_path / "merged" / "run")
    assert merged.n_windows == full.n_windows
    assert_same_h5(merged.h5, full.h5)
    assert (tmp_path / "merged" / "run.output_1.bedGraph").read_bytes() == \
        (tmp_path / "full" / "run.output_1.bedGraph").read_bytes()
