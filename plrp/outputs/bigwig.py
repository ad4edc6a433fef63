"""bigWig track writer, streamed as the run goes, with pyBigWig isolated in a child process.

API (contracts 5)::

    w = BigWigWriter(path, chrom_sizes)   # chrom_sizes [(name, length)]: the header, every
                                          # sequence of the FASTA (any order)
    w.add(chrom, positions, values)       # byte order, positions increasing, zeros absent
    w.close() -> number of intervals      # raises NoSpaceError / OutputError, one line
    w.abort()                             # stops the child, removes the file

Why a child process: libBigWig does not check its writes. On a full disk pyBigWig went on
and then crashed the process (heap corruption, SIGABRT; a SIGSEGV on a 64 KB tmpfs here),
taking the run and its clean-up with it. Here the child (``python -m plrp.outputs.bigwig``)
owns the pyBigWig handle; the parent sends it equal-value runs through a pipe, so the bigWig
is written while the run goes, from the same bases as the bedGraph (no second pass over the
HDF5 file). Before each call into libBigWig the child checks that an upper bound of what the
call writes fits under the file-size limit and in the free space, and else stops itself
(exit 11 / 10). At close the bound counts the index and zoom records uncompressed: 3-8x
what they take, so a nearly full disk is refused there rather than risked.
After closing, the child reopens the file and checks it. Any failure -- a crash,
a failed check, a broken pipe -- becomes NoSpaceError when the disk or the file-size limit
is full, else OutputError, and the file is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from plrp.errors import NoSpaceError, OutputError
from plrp.outputs.space import human
from plrp.outputs.tracks import RunBatcher
from plrp.outputs.writer import TrackWriter

_FRAME = struct.Struct("<cII")  # kind, sequence row, number of runs
_RUNS_PER_FRAME = 1 << 16
_LOW_SPACE = 1 << 20            # bytes free under which a failure is taken for a full disk
EXIT_NO_SPACE, EXIT_TOO_BIG, EXIT_BAD_FILE = 10, 11, 12


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class BigWigWriter(TrackWriter):
    """Stream a bigWig through a child process (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, chrom_sizes, *, track_line: str | None = None,
                 companion_paths=None):
        self.path = Path(path)
        self.n_intervals = 0
        # the header goes in byte order: the order entries must be added in
        header = sorted(((str(c), int(n)) for c, n in chrom_sizes),
                        key=lambda cn: cn[0].encode("utf-8"))
        self._row = {c: i for i, (c, _) in enumerate(header)}
        self._runs = RunBatcher(f"bigWig {self.path}")
        self._closed = False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_package_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        # the child's messages go to a file: a pipe it filled while we write to it would
        # leave both processes waiting for each other
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "plrp.outputs.bigwig", str(self.path)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)
        self._send(json.dumps(header).encode("utf-8") + b"\n")

    def add(self, chrom: str, positions: np.ndarray, values: np.ndarray) -> None:
        """Take the next stored bases of ``chrom``: (M,) positions increasing, (M,) values."""
        if chrom not in self._row:
            raise ValueError(f"bigWig {self.path}: sequence {chrom} is not in the header")
        self._runs.add(chrom, positions, values)
        if self._runs.n_bases >= _RUNS_PER_FRAME:
            self._send_runs(self._runs.take(final=False))

    def _send_runs(self, runs) -> None:
        if runs is None:
            return
        names, counts, s, e, v = runs
        a = 0
        for name, n in zip(names, counts.tolist()):
            row = self._row[name]
            for lo in range(a, a + n, _RUNS_PER_FRAME):
                hi = min(lo + _RUNS_PER_FRAME, a + n)
                self._send(_FRAME.pack(b"E", row, hi - lo)
                           + s[lo:hi].astype("<i8").tobytes() + e[lo:hi].astype("<i8").tobytes()
                           + v[lo:hi].astype("<f4").tobytes())
            a += n
        self.n_intervals += s.size

    def _send(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            self._fail()

    def close(self) -> int:
        """Finish the file; returns the number of intervals. A failure removes the file and
        raises NoSpaceError (full disk, quota or file-size limit) or OutputError."""
        if self._closed:
            return self.n_intervals
        self._send_runs(self._runs.take(final=True))
        self._send(_FRAME.pack(b"Z", 0, 0))
        self._closed = True
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        if self._proc.returncode != 0:
            self._fail()
        self._stderr.close()
        return self.n_intervals

    def _fail(self) -> None:
        """The child died or refused the file: clean up and raise the reason in one line."""
        self._closed = True
        proc = self._proc
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:  # a child that broke its pipe is leaving; one wedged in a corrupt heap is not
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr.seek(0)
        said = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        self._stderr.close()
        size = self.path.stat().st_size if self.path.exists() else 0
        self.path.unlink(missing_ok=True)
        raise _reason(self.path, proc.returncode, said[-1] if said else "", size)

    def abort(self) -> None:
        """Stop the child and remove the file (the run failed)."""
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
        for stream in (self._proc.stdin, self._stderr):
            try:
                stream.close()
            except OSError:
                pass
        self._proc.wait()
        self.path.unlink(missing_ok=True)



def _size_limit() -> int | None:
    """The soft file-size limit in bytes (ulimit -f), None when there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _reason(path: Path, code: int, said: str, size: int) -> OutputError:
    """The error of a failed child: exit code, its last stderr line, the disk's state."""
    soft = _size_limit()
    if code == EXIT_TOO_BIG or (soft is not None and size >= soft):
        return NoSpaceError(f"{path}: the file-size limit (ulimit -f, {soft} bytes) was "
                            "reached while writing the bigWig" + (f" ({said})" if said else ""))
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if code == EXIT_NO_SPACE or (free is not None and free < _LOW_SPACE):
        return NoSpaceError(f"{path}: no space left on the device while writing the bigWig ("
                            + (said or f"{free if free is not None else '?'} bytes free") + ")")
    how = f"exit {code}" if code >= 0 else f"killed by signal {-code}"
    return OutputError(f"{path}: the bigWig writer failed ({how}"
                       + (f": {said}" if said else "") + ")")


# ----------------------------------------------------------------------------- the child

# libBigWig ignores a failed write inside addEntries and then writes past its block buffer
# (heap corruption: an abort, a segfault, or on one CI machine a hang). So the child never lets
# it write what the disk or the file-size limit cannot take: before each call it checks an
# upper bound of the bytes that call can write (bwWrite.c: 32 KiB blocks of 12-byte entries,
# each zlib-compressed, at most compressBound(32768) bytes; at close the index and the zoom
# levels, 32-byte records in blocks of 1023, whose first level is max(10, 4 x mean entry
# width) bp and each next one 4 x wider).
_BUF = 32768
_BLOCK_OUT = _BUF + (_BUF >> 12) + (_BUF >> 14) + (_BUF >> 25) + 13
_SLACK = 1 << 16      # stdio's unflushed buffer, headers, the trailing magic


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


class _Budget:
    """What the file may still grow by, and an upper bound of what each libBigWig call writes."""

    def __init__(self, path: str, header) -> None:
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.names = [c for c, _ in header]
        self.lengths = [n for _, n in header]
        self.entries = self.wide = self.extra = self.covered = self.calls = 0
        self.extent: dict[int, tuple[int, int]] = {}  # sequence row -> (first start, last end)

    def header_bytes(self) -> int:
        """addHeader: fixed header, 10 zoom headers, the chromosome tree, the summary."""
        names = self.names
        key = max(len(c.encode("utf-8")) for c in names) + 8
        n, leaves = len(names), (len(names) >> 16) + 1
        return _SLACK + 24 * 10 + 4 * leaves + n * key + (0xFFFF * key if leaves > 1 else 0)

    def add_bytes(self, n: int) -> int:
        return (n * 12 // (_BUF - 24) + 2) * _BLOCK_OUT

    def count(self, row: int, starts: np.ndarray, ends: np.ndarray) -> None:
        """Note one call's entries (on sequence ``row``) for :meth:`close_bytes`."""
        widths = ends - starts
        self.entries += widths.size
        self.calls += 1
        self.covered += int(widths.sum())
        wide = widths > 1
        self.wide += int(wide.sum())
        self.extra += int((widths[wide] - 1).sum())
        if widths.size:
            lo, hi = self.extent.get(row, (int(starts[0]), 0))
            self.extent[row] = (min(lo, int(starts[0])), max(hi, int(ends[-1])))

    def close_bytes(self) -> int:
        """The last block, the data index, and every zoom level with its index."""
        blocks = self.entries * 12 // (_BUF - 24) + 2 * self.calls + len(self.lengths) + 1
        need = _BLOCK_OUT + 64 * blocks + _SLACK
        if not self.entries:
            return need
        zoom = max(10, 4 * (self.covered // self.entries))
        for _ in range(10):
            # a zoom record is a bin with data: no more than the entries' bins, nor the bins
            # of the stretch each sequence's data spans
            bins = sum((hi - lo) // zoom + 2 for lo, hi in self.extent.values())
            records = min(self.entries + self.wide + self.extra // zoom + 1, bins)
            need += (records // 1023 + 1) * (_BLOCK_OUT + 64) + 4096
            if zoom > 0xFFFFFFFF // 4:
                break
            zoom *= 4
        return need

    def refuse(self, need: int) -> int | None:
        """EXIT_TOO_BIG / EXIT_NO_SPACE (and a line on stderr) when ``need`` bytes may not fit."""
        size = os.path.getsize(self.path)
        soft = _size_limit()
        if soft is not None and size + need > soft:
            print(f"it needs up to {human(need)} more, {human(max(soft - size, 0))} are left under "
                  "the limit", file=sys.stderr)
            return EXIT_TOO_BIG
        free = shutil.disk_usage(self.folder).free
        if free < need + _LOW_SPACE:
            print(f"it needs up to {human(need)} more, {human(free)} are free", file=sys.stderr)
            return EXIT_NO_SPACE
        return None


#: pyBigWig's destructor finishes (writes) the file: a handle we return early from stays here
#: until os._exit, so that nothing is written after a refusal
_GIVEN_UP: list = []


def _child(path: str) -> int:
    """Read the header and frames from stdin, write the bigWig, check it; exit status."""
    import signal

    import pyBigWig

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it aborts us
    stdin = sys.stdin.buffer
    header = [tuple(x) for x in json.loads(stdin.readline())]
    bw = pyBigWig.open(path, "w")
    if bw is None:
        print(f"{path}: pyBigWig could not open the file for writing", file=sys.stderr)
        return EXIT_BAD_FILE
    _GIVEN_UP.append(bw)  # see _GIVEN_UP
    budget = _Budget(path, header)
    if (code := budget.refuse(budget.header_bytes())) is not None:
        return code
    bw.addHeader(header, maxZooms=10)
    last = None
    while True:
        kind, row, n = _FRAME.unpack(_read_exact(stdin, _FRAME.size))
        if kind == b"Z":
            break
        body = _read_exact(stdin, n * 20)
        starts = np.frombuffer(body, "<i8", n)
        ends = np.frombuffer(body, "<i8", n, 8 * n)
        values = np.frombuffer(body, "<f4", n, 16 * n).astype(np.float64)
        if (code := budget.refuse(budget.add_bytes(n))) is not None:
            return code
        bw.addEntries([header[row][0]] * n, starts, ends=ends, values=values)
        budget.count(row, starts, ends)
        if n:
            last = (header[row][0], int(starts[-1]), int(ends[-1]), float(values[-1]))
    if (code := budget.refuse(budget.close_bytes())) is not None:
        return code
    bw.close()
    _GIVEN_UP.clear()
    return _check(path, header, last)


def _check(path: str, header, last) -> int:
    """Is the closed file whole? libBigWig's writes are unchecked."""
    import pyBigWig

    soft = _size_limit()
    if soft is not None and os.path.getsize(path) >= soft:
        return EXIT_TOO_BIG
    if shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < _LOW_SPACE:
        return EXIT_NO_SPACE
    bw = pyBigWig.open(path)
    ok = bw is not None and bw.chroms() == dict(header)
    if ok and last is not None:  # the last data block and the index are written last
        got = bw.intervals(last[0], last[1], last[2]) or []
        ok = [tuple(x) for x in got] == [last[1:]]
    if bw is not None:
        bw.close()
    if not ok:
        print(f"{path}: the written bigWig does not read back", file=sys.stderr)
        return EXIT_BAD_FILE
    return 0


def _main(path: str) -> int:
    try:
        return _child(path)
    except EOFError:  # the parent went away (abort): leave, the parent removes the file
        return EXIT_BAD_FILE
    except Exception as err:  # noqa: BLE001 - the parent turns it into one line
        print(f"{path}: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_BAD_FILE


if __name__ == "__main__":
    code = _main(sys.argv[1])
    sys.stderr.flush()
    # not sys.exit: pyBigWig's destructor would finish (write) a file we have given up on
    os._exit(code)
