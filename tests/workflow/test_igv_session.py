"""The IGV session file and the chromosome alias file (plrp.outputs.igv).

IGV itself is not in CI: workflow/scripts/igv_snapshot.sh opens these sessions in IGV 2.16
by hand (docs/pipelines.md). Here: what IGV reads from them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from plrp.outputs.igv import sequence_aliases, set_session_genome, write_aliases, write_session


@pytest.fixture()
def session(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    tracks = {}
    for name, file in (("CTCF", "run.CTCF.bw"), ("TP53", "run.TP53.bedGraph.gz"),
                       ("SPI1", "run.SPI1.bedGraph")):
        (out / file).write_bytes(b"")
        tracks[name] = out / file
    genome = tmp_path / "genome" / "g.fa"
    genome.parent.mkdir()
    genome.write_text(">chr1\nACGT\n")
    # written under a temporary name, as the explain job does, relative to the final folder
    path = out / ".tmp-session"
    write_session(path, genome, tracks, "chr1:1-4", session_dir=out)
    return {"path": path, "root": ET.parse(path).getroot(), "genome": genome, "out": out}


def test_session_tracks_relative_autoscaled_in_order(session):
    root, out = session["root"], session["out"]
    assert root.tag == "Session" and root.get("version") == "8"
    assert root.get("genome") == str(session["genome"].resolve())
    assert root.get("locus") == "chr1:1-4"
    resources = root.findall("Resources/Resource")
    assert [(r.get("name"), r.get("path"), r.get("type")) for r in resources] == [
        ("CTCF", "run.CTCF.bw", "bigwig"), ("TP53", "run.TP53.bedGraph.gz", "bedgraph"),
        ("SPI1", "run.SPI1.bedGraph", "bedgraph")]
    data = root.findall("Panel[@name='DataPanel']/Track")
    # each data track is bound to its resource by path; IGV resolves it from the session's folder
    assert [t.get("id") for t in data] == [r.get("path") for r in resources]
    assert all((out / t.get("id")).is_file() for t in data)
    for track in data:
        assert track.get("autoScale") == "true"          # IGV does not autoscale bigWigs
        assert track.get("clazz") == "org.broad.igv.track.DataSourceTrack"
        assert track.get("color") != track.get("altColor")  # positive and negative differ


def test_session_keeps_the_sequence_track(session):
    """A session that lists panels drops IGV's sequence track unless a panel holds it."""
    seq = session["root"].findall("Panel[@name='FeaturePanel']/Track")
    assert [t.get("clazz") for t in seq] == ["org.broad.igv.track.SequenceTrack"]


def test_session_refuses_a_file_igv_would_not_read(tmp_path):
    with pytest.raises(ValueError, match="not a track"):
        write_session(tmp_path / "s.xml", tmp_path / "g.fa", {"x": tmp_path / "x.h5"}, "All")


def test_set_session_genome_changes_only_the_genome(session, tmp_path):
    other = tmp_path / "copy.fa"
    set_session_genome(session["path"], other, tmp_path / "s2.xml")
    text = (tmp_path / "s2.xml").read_text()
    assert text.startswith("<?xml") and text.endswith("</Session>\n")
    root = ET.parse(tmp_path / "s2.xml").getroot()
    assert root.get("genome") == str(other.resolve())
    before, after = session["root"], root
    before.attrib.pop("genome")
    after.attrib.pop("genome")
    assert ET.tostring(before) == ET.tostring(after)


def test_aliases_of_ncbi_gi_names():
    names = ["gi|9626243|ref|NC_001416.1|", "gi|12345|gb|AB000001.2|", "chr1",
             "gi|777|emb|X00001|"]
    assert sequence_aliases(names) == {
        "gi|9626243|ref|NC_001416.1|": ["NC_001416.1", "NC_001416", "9626243"],
        "gi|12345|gb|AB000001.2|": ["AB000001.2", "AB000001", "12345"],
        "gi|777|emb|X00001|": ["X00001", "777"],
    }


def test_aliases_never_shadow_or_share_a_name():
    """A short name that is a sequence's own name, or that two sequences would share, would
    send `goto` to the wrong sequence: it is left out."""
    names = ["gi|1|ref|NC_1.1|", "gi|2|ref|NC_1.2|", "NC_1.2", "gi|3|ref|XY.1|extra"]
    assert sequence_aliases(names) == {
        "gi|1|ref|NC_1.1|": ["NC_1.1", "1"],
        "gi|2|ref|NC_1.2|": ["2"],
        "gi|3|ref|XY.1|extra": ["XY.1", "XY", "3"],
    }


def test_alias_file_is_igvs_tab_separated_format(tmp_path):
    path = tmp_path / "run.alias.tab"
    assert write_aliases(path, ["chr1", "gi|9626243|ref|NC_001416.1|"])
    assert path.read_text() == "gi|9626243|ref|NC_001416.1|\tNC_001416.1\tNC_001416\t9626243\n"
    # nothing to alias: no file
    assert not write_aliases(tmp_path / "none.tab", ["chr1", "chr2", "scaffold|1"])
    assert not (tmp_path / "none.tab").exists()
