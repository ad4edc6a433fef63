#!/usr/bin/env bash
# Screenshot a plrp run with IGV desktop itself, headless (batch mode under Xvfb): IGV opens
# the session file that `plrp explain` / `plrp demo` wrote (PREFIX.igv.xml: genome, tracks,
# autoscale, the top-scoring window), as a user does with File > Open Session.
#
#   workflow/scripts/igv_snapshot.sh OUT.png SESSION.igv.xml [TRACK...]
#   e.g. workflow/scripts/igv_snapshot.sh docs/igv-demo.png demo-out/demo.igv.xml \
#          demo-out/example.motifs.bed
#
# TRACKs (a BED of known sites, ...) are loaded after the session. Environment: LOCUS (go
# there instead of the session's locus), IGV_JAR, IGV_WIDTH / IGV_HEIGHT (window size),
# IGV_TIMEOUT (seconds, default 300: IGV hangs behind an error dialog nobody sees).
# Needs: igv (Debian package `igv`, or IGV's own igv.jar via IGV_JAR=...), xvfb-run (`xvfb`,
# `xauth`), Java 17+, python3. IGV runs with its own preferences (a temporary HOME): no default
# genome (else it fetches hg19 first), no genome server, no data registry, no batch port.
# IGV indexes a FASTA beside itself; when the session's FASTA has no .fai yet, IGV gets a
# copy of the session (beside it, so its relative track paths hold) whose genome is a link
# in a temporary folder, and the FASTA's folder is left as it is.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2
  exit 2
fi
out=$(realpath -m "$1"); session=$(realpath "$2"); shift 2
igv_jar=${IGV_JAR:-/usr/share/java/igv.jar}
[ -f "$igv_jar" ] || { echo "igv_snapshot: no IGV jar at $igv_jar (apt-get install igv)" >&2; exit 1; }
command -v xvfb-run >/dev/null || { echo "igv_snapshot: xvfb-run missing (apt-get install xvfb xauth)" >&2; exit 1; }

work=$(mktemp -d)
copy=
trap 'rm -rf "$work"; [ -z "$copy" ] || rm -f "$copy"' EXIT
fasta=$(python3 -c 'import sys, xml.etree.ElementTree as ET
print(ET.parse(sys.argv[1]).getroot().get("genome"))' "$session")
case "$fasta" in *.json|*.genome) fasta_needs_index=no ;; *) fasta_needs_index=yes ;; esac
if [ "$fasta_needs_index" = yes ] && [ ! -e "$fasta.fai" ] && copy=$(mktemp -p "$(dirname "$session")" .igv_snapshot.XXXXXX.xml 2>/dev/null); then
  mkdir "$work/genome"
  ln -s "$fasta" "$work/genome/$(basename "$fasta")"
  python3 -c 'import sys, xml.etree.ElementTree as ET
tree = ET.parse(sys.argv[1]); tree.getroot().set("genome", sys.argv[2]); tree.write(sys.argv[3])
' "$session" "$work/genome/$(basename "$fasta")" "$copy"
  session=$copy
fi
mkdir -p "$work/home/igv"
: > "$work/genomes.tsv"   # an empty genome list instead of IGV's server
cat > "$work/home/igv/prefs.properties" <<PREFS
DEFAULT_GENOME_KEY=
IGV.genome.sequence.dir=$work/genomes.tsv
MASTER_RESOURCE_FILE_KEY=
AUTO_UPDATE_GENOMES=false
SHOW_GENOME_SERVER_WARNING=false
PORT_ENABLED=false
SHOW_ATTRIBUTE_VIEWS_KEY=false
IGV.Bounds=0,0,${IGV_WIDTH:-1200},${IGV_HEIGHT:-560}
PREFS
{
  echo "load $session"
  for track in "$@"; do echo "load $(realpath "$track")"; done
  if [ -n "${LOCUS:-}" ]; then echo "goto $LOCUS"; fi
  echo "snapshotDirectory $work"
  echo "snapshot snapshot.png"
  echo "exit"
} > "$work/batch.txt"
# IGV waits forever behind an error dialog nobody sees: bound its time (IGV_TIMEOUT seconds)
timeout -k 10 "${IGV_TIMEOUT:-300}" xvfb-run -a -s "-screen 0 1280x900x24" \
  java -Xmx2g -Duser.home="$work/home" -cp "$igv_jar" org.broad.igv.ui.Main \
  -b "$work/batch.txt" > "$work/igv.log" 2>&1 || true
# IGV goes on after a session or track it cannot load (and snapshots an empty view)
if [ ! -s "$work/snapshot.png" ] || grep -q 'SEVERE.*Error loading' "$work/igv.log"; then
  echo "igv_snapshot: IGV wrote no snapshot or could not load everything; its log:" >&2
  grep -v '^\s*at ' "$work/igv.log" | tail -n 20 >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$work/snapshot.png" "$out"
echo "igv_snapshot: $out" >&2
