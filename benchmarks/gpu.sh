#!/usr/bin/env bash
# GPU readiness in one run (one H100/H200, under 8 minutes):
#   1. CUDA results against the CPU (BatchExplainer relevance on the shipped model and a
#      DeepSEA-size model; radix selection against sort on CUDA) -- benchmarks/gpu_check.py
#   2. DeepSEA-size engine windows/s per precision (fp32, tf32, bf16) and 16 targets batched
#   3. end to end: `plrp explain` of a simulated genome (`plrp simulate --genome`) with a
#      DeepSEA-size model, windows/s, and the projection for 3.1 Gbp.
#
#   benchmarks/gpu.sh                 # needs CUDA; exits 1 at once without it
#   benchmarks/gpu.sh --cpu-dry-run   # every step on the CPU with tiny sizes (a smoke test)
#
# Environment: PYTHON (default .venv/bin/python), OUT_DIR (default bench-out/gpu),
# GENOME_MBP (default 20: 4 chromosomes of 5 Mbp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT_DIR:-bench-out/gpu}
mkdir -p "$OUT"

if [ "${1:-}" = "--cpu-dry-run" ]; then
    DEVICE=cpu; SMALL=--small; MBP=${GENOME_MBP:-0.2}
    ARCH_PARAMS='dict(input_length=200, channels=(16, 24, 32), n_hidden=32, n_outputs=8)'
else
    DEVICE=cuda; SMALL=; MBP=${GENOME_MBP:-20}; ARCH_PARAMS='dict()'
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "gpu.sh: FAILED: torch sees no CUDA GPU on this machine" \
             "(torch.cuda.is_available() is False); run it on a GPU machine," \
             "or use --cpu-dry-run" >&2
        exit 1
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
start=$(date +%s)

echo "== 1-2. device against CPU, engine speed ($DEVICE)"
"$PY" benchmarks/gpu_check.py --device "$DEVICE" $SMALL --json "$OUT/gpu_check.json"

echo "== 3. end to end: plrp explain of a simulated ${MBP} Mbp genome, DeepSEA-size model"
"$PY" - "$OUT/deepsea.safetensors" <<EOF
import sys, torch
from plrp.models.architectures import build_model
from plrp.models.checkpoint import save_checkpoint
torch.manual_seed(0)
save_checkpoint(sys.argv[1], build_model("deepsea", **$ARCH_PARAMS).eval())
EOF
CHROM_BP=$("$PY" -c "print(int(float('$MBP') * 1e6 / 4))")
"$PY" -m plrp simulate --genome -o "$OUT/sim" --length "$CHROM_BP" --n-chroms 4 --seed 1 >&2
t0=$("$PY" -c 'import time; print(time.time())')
"$PY" -m plrp explain --fasta "$OUT/sim.fa" --model "$OUT/deepsea.safetensors" \
    --out "$OUT/e2e" --target output_0 --device "$DEVICE" --batch-size 512 --quiet
t1=$("$PY" -c 'import time; print(time.time())')
"$PY" - "$OUT" "$t0" "$t1" "$CHROM_BP" <<'EOF'
import json, sys
from pathlib import Path
out, t0, t1, chrom_bp = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
check = json.loads((out / "gpu_check.json").read_text())
window = 200 if check["small"] else 1000
windows = 4 * (chrom_bp // window)
seconds = t1 - t0
e2e = windows / seconds
engine = check["engine_windows_per_s_fp32"]
genome = 3.1e9 / window
print(f"end to end: {windows} windows in {seconds:.1f} s = {e2e:.1f} windows/s "
      f"({e2e / engine:.2f}x the engine-only {engine:.1f} windows/s)")
print(f"projection for 3.1 Gbp (stride {window}, one target, fp32): engine "
      f"{genome / engine / 3600:.2f} h, end to end {genome / e2e / 3600:.2f} h")
result = dict(check, end_to_end_windows_per_s=e2e, end_to_end_seconds=seconds,
              end_to_end_windows=windows, projection_hours_end_to_end=genome / e2e / 3600)
(out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"wrote {out / 'gpu.json'}")
EOF
echo "gpu.sh: done in $(( $(date +%s) - start )) s"
