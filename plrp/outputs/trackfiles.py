"""Track file formats and names: the table the explain sink and ``plrp merge`` open writers from.

API::

    TRACK_FORMATS            {"plain": TrackFormat, "bgzip": ..., "bigwig": ...}
    track_stems(prefix, methods, targets) -> {(method, target): "PREFIX.<target>[.<method>]"}
    track_line(prefix, method, target, several, merge) -> IGV track line (plain bedGraph)
    open_track_writers(formats, stem, chrom_sizes, line, temp=lambda p: p)
        -> {format name: writer}; writer.final_paths: the paths it stands for (index too)

A writer class has ``companion_suffixes(chrom_sizes)`` (files written beside it, such as the
tabix index) and the constructor ``(path, chrom_sizes, *, track_line=None,
companion_paths=None)``. ``temp(final) -> path`` lets a job write under temporary names and
rename at the end (``plrp.atomic.AtomicGroup.path``). A new format is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plrp.outputs.bedgraph import BedGraphWriter, BgzipBedGraphWriter
from plrp.outputs.bigwig import BigWigWriter


@dataclass(frozen=True)
class TrackFormat:
    """A track file format: its name on the command line, file suffix and writer class."""

    name: str
    suffix: str
    writer: type
    description: str


TRACK_FORMATS: dict[str, TrackFormat] = {
    f.name: f for f in (
        TrackFormat("plain", ".bedGraph", BedGraphWriter,
                    "plain text with an IGV track line"),
        TrackFormat("bgzip", ".bedGraph.gz", BgzipBedGraphWriter,
                    "bgzip-compressed, tabix index beside it (.tbi), no track line"),
        TrackFormat("bigwig", ".bw", BigWigWriter, "bigWig (fast at any zoom)"),
    )
}


def track_stems(prefix, methods: list[str], targets: list[str]) -> dict:
    """{(method, target): path stem} of the track files: ``PREFIX.<target>[.<method>]``
    (the method is named only when several ran)."""
    several = len(methods) > 1
    return {(m, t): f"{prefix}.{t}" + (f".{m}" if several else "")
            for m in methods for t in targets}


def track_line(prefix, method: str, target: str, several: bool, merge: str) -> str:
    """The bedGraph track line: IGV's name and description of the track."""
    return (f'track type=bedGraph name="{Path(prefix).name}.{target}'
            f'{"." + method if several else ""}" description="plrp {method} relevance of '
            f'{target} ({merge} merge)" visibility=full autoScale=on')


def open_track_writers(formats, stem: str, chrom_sizes, line: str | None = None,
                       temp=lambda p: p) -> dict:
    """One writer per format name for the track ``stem``; ``temp(final path) -> path`` to
    write to. Each writer gets ``final_paths`` [(written path, final path)]. On an error
    opening one, those already open are aborted."""
    from plrp.errors import PlrpError

    out = {}
    try:
        for name in formats:
            fmt = TRACK_FORMATS.get(name)
            if fmt is None:
                raise PlrpError(f"track format {name!r}: expected one of "
                                f"{', '.join(TRACK_FORMATS)}")
            final = Path(f"{stem}{fmt.suffix}")
            path = Path(temp(final))
            comp = {s: Path(temp(Path(f"{final}{s}")))
                    for s in fmt.writer.companion_suffixes(chrom_sizes)}
            writer = fmt.writer(path, chrom_sizes, track_line=line, companion_paths=comp)
            writer.final_paths = [(path, final)] + [(p, Path(f"{final}{s}"))
                                                    for s, p in comp.items()]
            out[name] = writer
    except BaseException:
        for writer in out.values():
            writer.abort()
        raise
    return out
