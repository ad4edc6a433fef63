"""The CLI follows the exit-code table of plrp.errors, and docs/explain.md shows the same table.

Signals (130, 143) are checked by the interrupt test of the explain job."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from plrp import errors
from plrp.cli import main

ROOT = Path(__file__).resolve().parents[1]
TABLE = {
    errors.EXIT_OK: "success",
    errors.EXIT_INTERNAL: "internal",
    errors.EXIT_USAGE: "usage",
    errors.EXIT_INPUT: "input",
    errors.EXIT_UNSUPPORTED: "unsupported",
    errors.EXIT_OUTPUT: "written",
    errors.EXIT_NO_SPACE: "space",
    errors.EXIT_SIGINT: "interrupt",
    errors.EXIT_SIGTERM: "terminat",
}


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("g") / "g.fa"
    path.write_text(">c1\n" + "".join(rng.choice(list("ACGT"), 2000)) + "\n")
    return path


def _explain(genome, out, *extra):
    return CliRunner().invoke(main, ["explain", "--fasta", str(genome), "--out", str(out),
                                     "--quiet", *extra])


def _one_line(result, code, *words):
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("plrp: error:"), result.output
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_docs_table_equals_the_codes():
    text = (ROOT / "docs" / "explain.md").read_text()
    rows = {int(m.group(1)): m.group(2).lower()
            for m in re.finditer(r"^\|\s*`?(\d+)`?\s*\|\s*([^|]+)\|", text, re.M)}
    for code, word in TABLE.items():
        assert code in rows and word in rows[code], (code, rows.get(code))


def test_usage_errors_exit_2(genome, tmp_path):
    assert _explain(genome, tmp_path / "x", "--no-such-flag").exit_code == errors.EXIT_USAGE
    _one_line(_explain(genome, tmp_path / "x", "--batch-size", "0"), errors.EXIT_USAGE,
              "--batch-size")


def test_input_errors_exit_3(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nAC*T\n")
    _one_line(_explain(bad, tmp_path / "x"), errors.EXIT_INPUT, str(bad), "'a'")


def test_output_part_that_is_a_file_exits_5(genome, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _one_line(_explain(genome, blocker / "sub" / "x"), errors.EXIT_OUTPUT, str(blocker))
    assert blocker.read_text() == "not a folder"
