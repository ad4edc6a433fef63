import os

import pytest

from plrp import hostmemory
from plrp.hostmemory import WrittenPages


@pytest.fixture
def fadvise_calls(monkeypatch):
    calls = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        calls.append((fd, offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    return calls


def test_drops_once_each_time_the_file_grows_by_every(tmp_path, fadvise_calls):
    with open(tmp_path / "out", "wb", buffering=0) as fh:
        pages = WrittenPages(fh.fileno(), every=1000)
        dropped = []
        for _ in range(10):
            fh.write(b"x" * 300)
            dropped.append(pages.check())
        # sizes 300 ... 3000: 1200 is the first >= 1000 past 0, 2400 the first past 1200
        assert dropped == [False, False, False, True, False, False, False, True, False, False]
        assert fadvise_calls == [(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)] * 2
    assert (tmp_path / "out").read_bytes() == b"x" * 3000  # dropping never loses data


def test_a_pipe_is_left_alone(fadvise_calls):
    r, w = os.pipe()
    try:
        pages = WrittenPages(w, every=0)
        assert pages.check() is False  # ESPIPE is swallowed, and not asked again
        assert pages.check() is False
        assert len(fadvise_calls) == 1
    finally:
        os.close(r)
        os.close(w)


def test_default_every_is_read_when_made(monkeypatch):
    monkeypatch.setattr(hostmemory, "DEFAULT_EVERY", 7)
    assert WrittenPages(0).every == 7
