"""Genome-scale outputs of ``plrp explain`` with default flags: size, sparsity, targets.

On a random genome of ``--mbp`` megabases (at least 10 for the issue's figures), with the
shipped default model and default flags (sparse tracks, bgzip+tabix bedGraph, no arrays),
each in a fresh subprocess (benchmarks/explain.py's child):

- output bytes per Mbp per target (target <= 8 MB) and the share of bases with a stored
  value (target <= 30%), with every target;
- end-to-end cost of all three targets against one (target <= 1.6x), from the steady
  part of each run (after setup), and windows/s;
- the projection for a 3.1 Gbp genome: output size and time at the measured rates.

Prints a table and writes JSON:

    nice python benchmarks/genome_scale.py --mbp 10 --out bench-out/genome_scale.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain import run_child, write_random_fasta  # noqa: E402

HUMAN_MBP = 3100.0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mbp", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one-target", default="0", help="the target of the one-target run")
    ap.add_argument("--out", default="bench-out/genome_scale.json")
    ap.add_argument("--workdir", default=None, help="where the FASTA/outputs go (default tmp)")
    args = ap.parse_args(argv)

    runs = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        fa = Path(work) / f"sim_{args.mbp:g}mbp.fa"
        bases = write_random_fasta(fa, args.mbp)
        for label, targets in (("1 target", [args.one_target]), ("all targets", None)):
            out = Path(work) / label.replace(" ", "_")
            out.mkdir()
            runs[label] = run_child("end2end", fasta=fa, prefix=out / "run", targets=targets,
                                    method="plrp", device=args.device, batch_size=128)
    rows = []
    for label, r in runs.items():
        steady = r["seconds"] - r["setup_seconds"]
        mbp = r["bases"] / 1e6
        rows.append({
            "run": label, "tracks": r["tracks"], "windows": r["windows"], "mbp": mbp,
            "seconds": r["seconds"], "steady_seconds": steady,
            "windows_per_s": r["windows"] / steady,
            "engine_share": r["engine_seconds"] / steady,
            "output_bytes": r["output_bytes"],
            "mb_per_mbp_per_target": r["output_bytes"] / 1e6 / mbp / r["tracks"],
            "stored_share": r["stored"] / (r["bases"] * r["tracks"]),
            "human_output_gb": r["output_bytes"] / mbp * HUMAN_MBP / 1e9,
            "human_hours": steady / mbp * HUMAN_MBP / 3600,
            "peak_rss_mb": r["peak_rss_mb"]})
    ratio = rows[1]["steady_seconds"] / rows[0]["steady_seconds"]
    print(f"{'run':>12} {'tracks':>6} {'windows':>8} {'win/s':>7} {'MB/Mbp/target':>14} "
          f"{'stored':>7} {'3.1 Gbp: GB':>12} {'3.1 Gbp: h':>11} {'in engine':>10} "
          f"{'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['run']:>12} {r['tracks']:>6} {r['windows']:>8} {r['windows_per_s']:>7.0f} "
              f"{r['mb_per_mbp_per_target']:>14.2f} {100 * r['stored_share']:>6.1f}% "
              f"{r['human_output_gb']:>12.1f} {r['human_hours']:>11.1f} "
              f"{100 * r['engine_share']:>9.0f}% {r['peak_rss_mb']:>12.0f}")
    print(f"all targets ({rows[1]['tracks']}) vs 1 target, end to end (steady part): "
          f"{ratio:.2f}x (target <= 1.6x); {args.mbp:g} Mbp random genome, default flags, "
          f"device {args.device}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"mbp": args.mbp, "bases": bases, "device": args.device,
                               "ratio_all_vs_one": ratio, "rows": rows}, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
