"""Write outputs so that a failed or interrupted run leaves nothing behind.

Every temporary file or folder plrp makes carries its maker's tag, ``plrp-<host>-<pid>-``
(:func:`run_tag`), so leftovers of a run that was killed (SIGKILL, a crash, a power cut)
can be told from those of a run still going: :func:`is_stale` is true only for this host's
tags whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Iterator


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def run_tag() -> str:
    """``plrp-<host>-<pid>-``: the start of every temporary name this process makes."""
    return f"plrp-{_host()}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_stale(name: str) -> bool:
    """True when ``name`` holds a tag of this host (``plrp-<host>-<pid>-``) whose process is
    gone: a dead run's leftover, safe to remove. Other hosts' tags (a shared filesystem)
    and live processes' tags are never stale."""
    m = re.search(rf"plrp-{re.escape(_host())}-(\d+)-", name)
    return m is not None and not pid_alive(int(m.group(1)))


def _temp_beside(target: Path) -> Path:
    """An empty temporary file in target's folder, with the permissions a plain open() gives."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{run_tag()}", suffix=".tmp",
                               dir=target.parent)
    os.close(fd)
    # mkstemp makes 0600 files; outputs must be readable by the rest of the lab.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the target's folder so the final rename is atomic
    (same filesystem). On any exception, KeyboardInterrupt included, it is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AtomicGroup:
    """Several outputs that appear together or not at all.

    ``path(target)`` hands out a temporary path; ``commit()`` renames them all;
    leaving the ``with`` block without ``commit()`` (an error, Ctrl-C) removes them.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._committed = False

    def path(self, target: str | os.PathLike) -> Path:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(target)
        self._pending.append((tmp, target))
        return tmp

    def written(self, target: str | os.PathLike) -> Path:
        """The temporary path that stands for ``target`` until the commit."""
        target = Path(target)
        for tmp, final in self._pending:
            if final == target:
                return tmp
        raise KeyError(f"{target} is not an output of this group")

    def commit(self) -> None:
        for tmp, target in self._pending:
            os.replace(tmp, target)
        self._committed = True

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, *exc) -> None:
        if not self._committed:
            for tmp, _ in self._pending:
                tmp.unlink(missing_ok=True)
