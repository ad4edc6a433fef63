"""IGV session file: one file a user opens to see the genome, every track and a good locus.

API::

    write_session(path, genome, tracks, locus)   # IGV desktop session XML (version 8)
    set_session_genome(session, genome, out)     # the same session with another genome
    top_window_locus(h5_path, method, target)    # "chrom:start-end" of the top-scoring window

Track paths are written relative to the session file, so the output folder can be moved
or copied as a whole; the genome is the FASTA's absolute path (IGV indexes it beside
itself when the folder is writable, as `samtools faidx` would). Autoscale is on for every
track: IGV does not autoscale bigWigs by default and would clip the relevance.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

# file suffix -> IGV resource type (bgzip bedGraphs need their .tbi beside them)
RESOURCE_TYPES = {".bw": "bigwig", ".bedGraph.gz": "bedgraph", ".bedGraph": "bedgraph"}


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
        ET.SubElement(panel, "Track", attributeKey=rel, autoScale="true",
                      clazz="org.broad.igv.track.DataSourceTrack", id=rel, name=name,
                      renderer="BAR_CHART", visible="true", windowFunction="mean")
    ET.indent(session)
    Path(path).write_bytes(ET.tostring(session, encoding="UTF-8", xml_declaration=True)
                           + b"\n")


def set_session_genome(session, genome, out) -> None:
    """Write ``session`` to ``out`` with its genome replaced by ``genome`` (a FASTA)."""
    tree = ET.parse(session)
    tree.getroot().set("genome", str(Path(genome).resolve()))
    tree.write(out, encoding="UTF-8", xml_declaration=True)


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
