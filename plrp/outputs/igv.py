"""IGV session file: one file a user opens to see the genome, every track and a good locus.

API::

    write_session(path, genome, tracks, locus)   # IGV desktop session XML (version 8)
    set_session_genome(session, genome, out)     # the same session with another genome
    top_window_locus(h5_path, method, target)    # "chrom:start-end" of the top-scoring window
    sequence_aliases(names)                      # {sequence name: [short names]} (gi|...|)
    write_aliases(path, names)                   # IGV / igv.js chromosome alias file
    write_run_session(prefix, fasta, names, tracks, h5_path, path_of)
                                                 # a run's PREFIX.igv.xml (+ PREFIX.alias.tab)

Track paths are written relative to the session file, so the output folder can be moved
or copied as a whole; the genome is the FASTA's absolute path (IGV indexes it beside
itself when the folder is writable, as `samtools faidx` would). Autoscale is on for every
track: IGV does not autoscale bigWigs by default and would clip the relevance. Positive
relevance is drawn blue, negative red, and the reference sequence is shown (bases are
readable at the window-sized initial locus).

The alias file is for NCBI ``gi|...|`` names. igv.js's default aliasing fails on them
("Cannot access 'alias' before initialization", igv.js 3.x); a reference with an
``aliasURL`` skips that code. IGV desktop maps them to their accession itself, not to the
gi number; its session format has no place for an alias file, a JSON genome has
(docs/pipelines.md, section 3).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

# file suffix -> IGV resource type (bgzip bedGraphs need their .tbi beside them)
RESOURCE_TYPES = {".bw": "bigwig", ".bedGraph.gz": "bedgraph", ".bedGraph": "bedgraph"}
# how every relevance track is drawn (IGV session Track attributes)
TRACK_STYLE = {"autoScale": "true", "renderer": "BAR_CHART", "windowFunction": "mean",
               "height": "70", "color": "0,0,178", "altColor": "178,0,0"}
# NCBI FASTA names: gi|<gi number>|<database>|<accession.version>|[...]
_NCBI_GI = re.compile(r"^gi\|(\d+)\|[a-z]+\|([^|]+)\|")


def _resource_type(path: Path) -> str:
    for suffix, kind in RESOURCE_TYPES.items():
        if path.name.endswith(suffix):
            return kind
    raise ValueError(f"{path}: not a track IGV reads from a plrp run")


def write_session(path, genome, tracks: dict, locus: str, *, session_dir=None) -> None:
    """Write an IGV session to ``path``.

    ``genome``: the FASTA; ``tracks``: {track name: final track path}, in display order;
    ``locus``: IGV locus text (``chr1:1001-2000``, 1-based inclusive); ``session_dir``: the
    folder the session will finally live in (default: ``path``'s), for relative paths.
    """
    base = Path(session_dir or Path(path).parent).resolve()
    session = ET.Element("Session", genome=str(Path(genome).resolve()), locus=locus,
                         hasGeneTrack="false", hasSequenceTrack="true", version="8")
    resources = ET.SubElement(session, "Resources")
    panel = ET.SubElement(session, "Panel", name="DataPanel")
    for name, track in tracks.items():
        track = Path(track)
        rel = os.path.relpath(track.resolve(), base)
        ET.SubElement(resources, "Resource", path=rel, type=_resource_type(track), name=name)
        ET.SubElement(panel, "Track", attributeKey=rel, id=rel, name=name, visible="true",
                      clazz="org.broad.igv.track.DataSourceTrack", **TRACK_STYLE)
    # a session that lists panels drops the sequence track unless one of them holds it
    features = ET.SubElement(session, "Panel", name="FeaturePanel")
    ET.SubElement(features, "Track", attributeKey="Reference sequence",
                  clazz="org.broad.igv.track.SequenceTrack", id="Reference sequence",
                  name="Reference sequence", visible="true")
    _write_xml(session, path)


def set_session_genome(session, genome, out) -> None:
    """Write ``session`` to ``out`` with its genome replaced by ``genome`` (a FASTA)."""
    root = ET.parse(session).getroot()
    root.set("genome", str(Path(genome).resolve()))
    _write_xml(root, out)


def _write_xml(root: ET.Element, path) -> None:
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n")


def top_window_locus(h5_path, method: str, target: str) -> str | None:
    """The 1-based locus of the window with the largest explained score (None: no window)."""
    from plrp.outputs.h5 import open_relevance

    with open_relevance(h5_path) as f:
        if f.n_windows == 0:
            return None
        score = f.attribution(method, target, "score")
        row = int(np.argmax(score))
        w = f.windows(rows=slice(row, row + 1), columns=("chrom", "start", "end"))
    return f"{w['chrom'][0]}:{int(w['start'][0]) + 1}-{int(w['end'][0])}"


def sequence_aliases(names) -> dict[str, list[str]]:
    """Short names for NCBI ``gi|<gi>|<db>|<accession.version>|`` sequence names.

    ``names``: the FASTA's sequence names. Returns {name: [accession.version, accession,
    gi number]} for the names of that form (others have none); a short name that is itself
    a sequence name, or that two sequences would share, is left out.
    """
    names = list(names)
    candidates = {}
    for name in names:
        match = _NCBI_GI.match(name)
        if match:
            gi, accession = match.groups()
            short = [accession, accession.rsplit(".", 1)[0], gi]
            candidates[name] = list(dict.fromkeys(short))
    counts: dict[str, int] = {}
    for short in candidates.values():
        for alias in short:
            counts[alias] = counts.get(alias, 0) + 1
    taken = set(names)
    aliases = {}
    for name, short in candidates.items():
        kept = [a for a in short if counts[a] == 1 and a not in taken]
        if kept:
            aliases[name] = kept
    return aliases


def write_aliases(path, names) -> bool:
    """Write IGV's chromosome alias format to ``path``: one line per sequence that has short
    names (``sequence_aliases``), tab-separated, the FASTA's name first. Writes nothing and
    returns False when no name has an alias."""
    aliases = sequence_aliases(names)
    if not aliases:
        return False
    Path(path).write_text("".join("\t".join([name, *short]) + "\n"
                                  for name, short in aliases.items()))
    return True


#: the file of a track a session loads, best first: any zoom level, then indexed, then text
SESSION_FORMATS = ("bigwig", "bgzip", "plain")


def write_run_session(prefix, fasta, names, tracks_by_format: dict, h5_path,
                      path_of=lambda p: p) -> Path | None:
    """``PREFIX.igv.xml`` for the tracks of a run (explain or merge), opened at the
    top-scoring window of the first track, and ``PREFIX.alias.tab`` when sequence ``names``
    have NCBI gi names. ``tracks_by_format``: {format: {(method, target): path}} in run
    order; the session loads the first of :data:`SESSION_FORMATS` written. ``h5_path``: the
    run's (finished) relevance file; ``path_of(final path)``: where to write it (a temporary
    name until the run commits). Returns the session's final path, None (nothing written)
    without tracks."""
    tracks = next((tracks_by_format[f] for f in SESSION_FORMATS if tracks_by_format.get(f)),
                  None)
    if not tracks:
        return None
    several = len({m for m, _ in tracks}) > 1
    named = {(f"{t}.{m}" if several else t): path for (m, t), path in tracks.items()}
    method, target = next(iter(tracks))
    session = Path(f"{prefix}.igv.xml")
    write_session(path_of(session), fasta, named, top_window_locus(h5_path, method, target)
                  or "All", session_dir=session.parent)
    if sequence_aliases(names):
        write_aliases(path_of(Path(f"{prefix}.alias.tab")), names)
    return session
