from click.testing import CliRunner

from plrp import __version__
from plrp.cli import main


def test_version_and_help():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_unknown_verb_is_a_usage_error():
    r = CliRunner().invoke(main, ["no-such-verb"])
    assert r.exit_code == 2
