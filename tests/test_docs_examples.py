"""The shell examples in the docs work: every `plrp explain`, `plrp inspect` and
`plrp convert` line in a shell code block of docs/*.md or README.md is run, in a temporary
folder, on small stand-ins for the files it names.

Placeholder files a doc may name (``PLACEHOLDERS``; add one here when a doc needs it):

  genome.fa            two random 3 kbp chromosomes
  m.safetensors        the shipped default model (native); also model.safetensors
  model.pt             a Basset state_dict with 3 outputs (600 bp windows)
  deepsea_cpu.pth      a kipoi DeepSEA state_dict (Conv2d layout, AGCT), narrow layers
  bpnet.torch          a bpnet-lite BPNet, torch.save'd whole (8 filters, 8 layers)
  chrombpnet.torch     a bpnet-lite ChromBPNet, torch.save'd whole (small)

The lines of one file run in order in one folder, so a line may use what an earlier one
wrote (`plrp convert bpnet.torch -o bpnet.safetensors`, then `--model bpnet.safetensors`);
paths that exist under the repository (configs/...) are used from there. A line that cannot
run is still parsed by click, which must accept every option: a synopsis (``[--opt X]``,
``...``, ``A|B``, upper-case metavariables such as FASTA), a shell variable (``$i``) or an
input file that is neither a placeholder nor written by an earlier line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import plrp.cli
from plrp.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
VERBS = ("explain", "inspect", "convert")
SHELL_FENCES = {"", "bash", "sh", "shell", "console", "text"}
OUTPUTS = {"out", "out_prefix", "metrics", "json"}  # path parameters that are written


def _genome(path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    lines = []
    for name in ("chr1", "chr2"):
        bases = "".join("ACGT"[i] for i in torch.randint(0, 4, (3000,), generator=gen))
        lines += [f">{name}"] + [bases[i:i + 60] for i in range(0, len(bases), 60)]
    path.write_text("\n".join(lines) + "\n")


def _default_model(path: Path) -> None:
    from plrp.models.checkpoint import DEFAULT_MODEL_PATH

    path.write_bytes(DEFAULT_MODEL_PATH.read_bytes())


def _basset_state_dict(path: Path) -> None:
    from plrp.models.architectures import build_model

    torch.save(build_model("basset", n_outputs=3).state_dict(), path)


def _kipoi_deepsea(path: Path) -> None:
    sys_path = str(ROOT / "tests" / "models")
    import sys

    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    from foreign_models import kipoi_deepsea

    torch.save(kipoi_deepsea().state_dict(), path)


def _bpnet(path: Path) -> None:
    from bpnetlite.bpnet import BPNet

    torch.save(BPNet(n_filters=8, n_layers=8, n_outputs=2, verbose=False), path)


def _chrombpnet(path: Path) -> None:
    from bpnetlite.bpnet import BPNet
    from bpnetlite.chrombpnet import ChromBPNet

    torch.save(ChromBPNet(BPNet(4, 4, 1, 0, verbose=False), BPNet(8, 8, 1, 0, verbose=False)),
               path)


PLACEHOLDERS = {
    "genome.fa": _genome,
    "m.safetensors": _default_model,
    "model.safetensors": _default_model,
    "model.pt": _basset_state_dict,
    "deepsea_cpu.pth": _kipoi_deepsea,
    "bpnet.torch": _bpnet,
    "chrombpnet.torch": _chrombpnet,
}


def shell_commands(path: Path) -> list[str]:
    """`plrp explain|inspect|convert` lines of the shell code blocks of a Markdown file,
    continuation lines joined and any `$ ` prompt removed."""
    commands, fence = [], None
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
        elif fence in SHELL_FENCES:
            command = re.sub(r"^\$\s+", "", stripped)
            if re.match(rf"plrp ({'|'.join(VERBS)})\b", command):
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command[:-1].rstrip() + " " + lines[i].strip()
                commands.append(command)
        i += 1
    return commands


def _is_synopsis(command: str) -> bool:
    return bool(re.search(r"\[|\.\.\.|\|", command))


def _command(verb: str, command: str) -> click.Command:
    cmd = main.get_command(click.Context(main), verb)
    assert cmd is not None, f"no such verb in: {command}"
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))
    assert named <= known, f"{sorted(named - known)} not options of plrp {verb}: {command}"
    return cmd


def _parse(cmd: click.Command, verb: str, args: list[str], command: str) -> dict:
    try:
        return cmd.make_context(verb, list(args)).params
    except click.UsageError as err:
        pytest.fail(f"usage error {err.format_message()!r} in: {command}")


def _missing_inputs(cmd: click.Command, params: dict) -> list[str]:
    """Values of file-path parameters (other than outputs) that do not exist."""
    missing = []
    for p in cmd.params:
        value = params.get(p.name)
        if (isinstance(p.type, click.Path) and isinstance(value, str) and p.name not in OUTPUTS
                and not Path(value).exists()):
            missing.append(value)
    return missing


def run_doc(doc: Path, tmp_path: Path) -> int:
    """Run (or parse) every command of ``doc``; returns how many really ran."""
    ran = 0
    runner = CliRunner()
    for command in shell_commands(doc):
        args = shlex.split(command, comments=True)[1:]
        verb = args[0]
        args = [str(ROOT / a) if "/" in a and (ROOT / a).exists() else a for a in args]
        for name in args:
            if name in PLACEHOLDERS and not (tmp_path / name).exists():
                PLACEHOLDERS[name](tmp_path / name)
        cmd = _command(verb, command)
        if _is_synopsis(command):
            continue
        params = _parse(cmd, verb, args[1:], command)
        if "$" in command or _missing_inputs(cmd, params):
            continue  # parsed only
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (f"{doc.name}: `{command}` exited {result.exit_code}:\n"
                                       f"{result.output[-2000:]}")
        ran += 1
    return ran


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(plrp.cli.VERBS, "convert", "convert")  # until the lead registers it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_examples_run(doc, in_tmp):
    ran = run_doc(doc, in_tmp)
    if doc.name == "models.md":  # written for this test: every example there runs
        runnable = [c for c in shell_commands(doc) if not _is_synopsis(c)]
        assert len(runnable) >= 6 and ran == len(runnable)


def test_extraction_and_parse_checks(tmp_path):
    """The checker itself: finds commands in shell blocks only and catches bad options."""
    doc = tmp_path / "x.md"
    doc.write_text("```bash\n$ plrp inspect --p-pos 0.2 \\\n    --window 300\n```\n"
                   "```python\nplrp explain --nope\n```\n"
                   "plrp explain --fasta a.fa --out b (prose, not a block)\n"
                   "```\nplrp explain --fasta FASTA [--model CKPT] --out PREFIX\n```\n")
    assert shell_commands(doc) == ["plrp inspect --p-pos 0.2 --window 300",
                                   "plrp explain --fasta FASTA [--model CKPT] --out PREFIX"]
    with pytest.raises(AssertionError, match="--no-such-option"):
        _command("explain", "plrp explain --fasta FASTA [--no-such-option X]")
    inspect = _command("inspect", "plrp inspect missing.pt --p-pos 2")
    with pytest.raises(pytest.fail.Exception, match="usage error"):
        _parse(inspect, "inspect", ["missing.pt", "--p-pos", "2"], "plrp inspect ...")
    params = _parse(inspect, "inspect", ["missing.pt", "--p-pos", "0.5"], "plrp inspect ...")
    assert _missing_inputs(inspect, params) == ["missing.pt"]
