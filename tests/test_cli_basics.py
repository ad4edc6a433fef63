import pytest
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


def test_allocator_tuning_can_be_switched_off_and_trimming_is_safe(monkeypatch):
    from plrp.hostmemory import release_free_memory, tune_cpu_allocator

    monkeypatch.setenv("PLRP_MALLOC_TUNING", "0")
    assert tune_cpu_allocator() is False
    release_free_memory()  # must never raise, with or without glibc


def test_trimming_waits_for_the_bound_of_free_heap_memory():
    from plrp.hostmemory import _glibc, release_free_memory

    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    assert release_free_memory(above=1 << 62) is False  # never that much free
    assert release_free_memory(above=0) is True          # 0: always trim
