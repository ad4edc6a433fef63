"""Full and unwritable disks: one line, the documented exit code, nothing left behind; the
up-front size check; dead runs' temporary files removed, live ones' kept."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from plrp import atomic
from plrp.cli import main
from plrp.errors import EXIT_NO_SPACE, EXIT_OUTPUT, NoSpaceError, OutputError
from plrp.jobs.explain import explain_fasta
from plrp.outputs import sink as sink_module
from plrp.outputs import space

from .conftest import fasta_text, listing, random_records


def fai_folders(pid: int) -> list[str]:
    """FASTA index folders a process ``pid`` of this host made in the temporary folder."""
    tag = f"plrp-fai-plrp-{atomic._host()}-{pid}-"
    return [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(tag)]


@pytest.fixture(scope="module")
def big_genome(tmp_path_factory):
    """200 kbp: its dense plain bedGraph alone is several MB."""
    path = tmp_path_factory.mktemp("big") / "big.fa"
    path.write_text(fasta_text(random_records(9, [("c1", 120_000), ("c2", 80_000)])))
    return path


def test_file_size_limit_gives_exit_6_one_line_and_leaves_nothing(big_genome, model_path,
                                                                   tmp_path):
    out = tmp_path / "out"
    limit = 256 << 10

    def limit_file_size():  # in the child only: RLIMIT_FSIZE -> EFBIG (SIGXFSZ is ignored)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen([sys.executable, "-m", "plrp", "explain", "--fasta",
                             str(big_genome), "--model", str(model_path), "--out",
                             str(out / "x"), "--quiet", "--sparsity", "0", "--bedgraph",
                             "plain", "--bigwig"],
                            preexec_fn=limit_file_size, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    proc.stdout, proc.stderr = stdout, stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == EXIT_NO_SPACE, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("plrp: error:"), proc.stderr[-2000:]
    assert "file-size limit" in lines[0]
    assert listing(out) == [] and proc.stdout == ""
    assert fai_folders(proc.pid) == []


@contextlib.contextmanager
def mounted(kind: str, folder, size: str = "256k"):
    """A small tmpfs (kind "full") or a read-only bind mount (kind "ro") at ``folder``;
    yields False where this machine does not let us mount (not root, no CAP_SYS_ADMIN)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "full":
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    else:
        src = folder.parent / "ro-source"
        src.mkdir(exist_ok=True)
        cmd = ["mount", "--bind", "-o", "ro", str(src), str(folder)]
    try:
        ok = subprocess.run(cmd, capture_output=True).returncode == 0
    except FileNotFoundError:
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def inject(monkeypatch, code: int):
    """Where mounting is not allowed: the HDF5 writer fails as the disk would."""
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(sink_module.RelevanceWriter, "append_windows", fail)


@pytest.mark.parametrize("background", [False, True])
def test_full_disk_mid_run_raises_no_space_and_leaves_nothing(big_genome, model_path,
                                                              tmp_path, monkeypatch,
                                                              background):
    small = tmp_path / "small"
    with mounted("full", small) as real:
        if not real:
            inject(monkeypatch, errno.ENOSPC)
        with pytest.raises(NoSpaceError, match="no space left on device"):
            # check_space=False: get past the up-front estimate to the disk filling up
            explain_fasta(big_genome, small / "x", model=model_path, sparsity=0.0,
                          bedgraph="plain", check_space=False, progress=False,
                          background_writes=background)
        assert listing(small) == []
    assert fai_folders(os.getpid()) == []


def test_read_only_folder_exits_5_and_leaves_nothing(genome, model_path, tmp_path,
                                                     monkeypatch):
    ro = tmp_path / "ro"
    with mounted("ro", ro) as real:
        if not real:
            inject(monkeypatch, errno.EROFS)
        with pytest.raises(OutputError, match="read-only file system") as err:
            explain_fasta(genome, ro / "x", model=model_path, progress=False)
        assert not isinstance(err.value, NoSpaceError)
        res = CliRunner().invoke(main, ["explain", "--fasta", str(genome), "--model",
                                        str(model_path), "--out", str(ro / "x"), "--quiet"])
        assert res.exit_code == EXIT_OUTPUT and res.output.count("\n") == 1, res.output
        assert listing(ro) == []


def test_estimate_above_free_space_is_refused_up_front_naming_both(genome, model_path,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setattr(space, "free_bytes", lambda folder: 12_345)
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["explain", "--fasta", str(genome), "--model",
                                    str(model_path), "--out", str(out / "x"), "--quiet"])
    assert res.exit_code == EXIT_NO_SPACE, res.output
    line, = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "12.3 kB is free" in line and "the outputs need about" in line, line
    need = float(line.split("need about ")[1].split()[0])
    assert need > 0
    assert listing(out) == []


def test_estimate_tracks_the_written_size(big_genome, model_path, tmp_path):
    """The estimate is within a factor 3 of what a run writes (it sizes, never times)."""
    res = explain_fasta(big_genome, tmp_path / "e", model=model_path, bedgraph="plain",
                        bigwig=True, progress=False)
    written = sum(p.stat().st_size for p in tmp_path.iterdir())
    estimated = sum(res.estimate.values())
    assert written / 3 < estimated < written * 3, (written, res.estimate)


def test_dead_runs_temporaries_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = atomic._host()
    tmp = tempfile.gettempdir()
    names = {
        "dead_file": tmp_path / f".x.h5.plrp-{host}-{dead.pid}-ab12cd34.tmp",
        "live_file": tmp_path / f".x.h5.plrp-{host}-{os.getpid()}-ab12cd34.tmp",
        "other_host": tmp_path / f".x.h5.plrp-{host}x-{dead.pid}-ab12cd34.tmp",
        "user_file": tmp_path / "keep.tmp",
    }
    for p in names.values():
        p.write_text("")
    dead_dir = os.path.join(tmp, f"plrp-fai-plrp-{host}-{dead.pid}-zz9")
    live_dir = os.path.join(tmp, f"plrp-fai-plrp-{host}-{os.getpid()}-zz9")
    try:
        for d in (dead_dir, live_dir):
            os.makedirs(d)
            open(os.path.join(d, "g.fa.fai"), "w").close()
        removed = space.clean_stale_temporaries(tmp_path)
        assert sorted(map(str, removed)) == sorted([str(names["dead_file"]), dead_dir])
        assert not names["dead_file"].exists() and not os.path.exists(dead_dir)
        for key in ("live_file", "other_host", "user_file"):
            assert names[key].exists()
        assert os.path.isdir(live_dir)
    finally:
        for d in (dead_dir, live_dir):
            if os.path.isdir(d):
                for f in os.listdir(d):
                    os.unlink(os.path.join(d, f))
                os.rmdir(d)


def test_an_unmapped_error_is_not_disguised():
    assert space.output_error(ValueError("bad value")) is None
    assert isinstance(space.output_error(OSError(errno.EDQUOT, "Disk quota exceeded")),
                      NoSpaceError)
    assert isinstance(space.output_error(RuntimeError("Can't write data (errno = 28)")),
                      NoSpaceError)
    assert type(space.output_error(OSError(errno.EACCES, "no"))) is OutputError
