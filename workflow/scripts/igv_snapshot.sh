#!/usr/bin/env bash
# Screenshot plrp tracks with IGV desktop itself, headless (batch mode under Xvfb).
#
#   workflow/scripts/igv_snapshot.sh OUT.png GENOME.fa LOCUS TRACK [TRACK...]
#   e.g. workflow/scripts/igv_snapshot.sh docs/igv-demo.png demo-out/example.fa \
#          chr2:3150-4050 demo-out/demo.CTCF_AND_TP53.bw demo-out/demo.CTCF.bw \
#          demo-out/example.motifs.bed
#
# Needs: igv (Debian package `igv`, or IGV's own igv.jar via IGV_JAR=...), xvfb-run (`xvfb`,
# `xauth`), Java 17+. IGV writes an .fai index beside the FASTA it loads, so the script
# hands it a copy in a temporary folder and the user's folder is left as it is. IGV runs
# with its own preferences folder (a temporary HOME) and no genome server (offline).
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2
  exit 2
fi
out=$(realpath -m "$1"); fasta=$(realpath "$2"); locus=$3; shift 3
igv_jar=${IGV_JAR:-/usr/share/java/igv.jar}
[ -f "$igv_jar" ] || { echo "igv_snapshot: no IGV jar at $igv_jar (apt-get install igv)" >&2; exit 1; }
command -v xvfb-run >/dev/null || { echo "igv_snapshot: xvfb-run missing (apt-get install xvfb xauth)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home/igv"
cp "$fasta" "$work/genome.fa"
cat > "$work/home/igv/prefs.properties" <<PREFS
DEFAULT_GENOME_KEY=$work/genome.fa
GENOMES_SERVER_URL=
SHOW_ATTRIBUTE_VIEWS_KEY=false
IGV.Bounds=0,0,${IGV_WIDTH:-1200},${IGV_HEIGHT:-620}
PREFS
{
  echo "genome $work/genome.fa"
  for track in "$@"; do echo "load $(realpath "$track")"; done
  echo "goto $locus"
  echo "setTrackHeight ${TRACK_HEIGHT:-70}"
  echo "maxPanelHeight 600"
  echo "snapshotDirectory $work"
  echo "snapshot snapshot.png"
  echo "exit"
} > "$work/batch.txt"
xvfb-run -a -s "-screen 0 1280x900x24" \
  java -Xmx2g -Duser.home="$work/home" -cp "$igv_jar" org.broad.igv.ui.Main \
  -g "$work/genome.fa" -b "$work/batch.txt" > "$work/igv.log" 2>&1 || true
if [ ! -s "$work/snapshot.png" ]; then
  echo "igv_snapshot: IGV wrote no snapshot; its log:" >&2
  grep -v '^\s*at ' "$work/igv.log" | tail -n 20 >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$work/snapshot.png" "$out"
echo "igv_snapshot: $out" >&2
