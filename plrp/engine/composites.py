"""Composites: which rule each Conv1d/Linear layer gets, read from TOML files.

File format (tomllib)::

    description = "LRP-epsilon everywhere"
    maxpool = "wta"                     # or "proportional" (optional, default "wta")
    op_epsilon = 1e-6                   # stabiliser of add / average pooling / proportional
                                        # max-pooling (optional, default 1e-6)

    [default]                           # every conv/linear layer not matched below
    rule = "epsilon"
    epsilon = 1e-6

    [types.Conv1d]                      # by layer type: "Conv1d" or "Linear"
    rule = "gamma"
    gamma = 0.25

    [first_layer]                       # layers that read the model input directly
    rule = "flat"

    [names."classifier.0"]              # by layer name (module path or fx node name)
    rule = "zplus"

Precedence: name > first_layer > type > default. A rule table holds ``rule`` plus the
rule's parameters (see plrp.engine.rules).

A composite is named either by a shipped name (``configs/composites/<name>.toml``, searched
in $PLRP_COMPOSITES_DIR, the repository checkout, then the installed package) or by a path
to a ``.toml`` file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from plrp.engine.rules import Rule, make_rule
from plrp.errors import InputError

LAYER_TYPES = ("Conv1d", "Linear")
TOP_KEYS = {"description", "maxpool", "op_epsilon", "default", "types", "first_layer", "names",
            "name"}
MAXPOOL_MODES = ("wta", "proportional")

# Used only when no configs/composites/epsilon.toml can be found (e.g. a wheel installed
# without the configs folder): the default must always work.
_BUILTIN_EPSILON = {"description": "LRP-epsilon (eps=1e-6) on every conv and linear layer",
                    "maxpool": "wta", "default": {"rule": "epsilon", "epsilon": 1e-6}}


@dataclass
class Composite:
    """A parsed composite. Rule tables are (rule name, params) pairs."""

    name: str
    source: str
    description: str = ""
    maxpool: str = "wta"
    op_epsilon: float = 1e-6
    default: tuple = ("epsilon", {"epsilon": 1e-6})
    types: dict = field(default_factory=dict)
    first_layer: tuple | None = None
    names: dict = field(default_factory=dict)

    def rule_for(self, layer_name: str, layer_type: str, is_first: bool) -> Rule:
        """The rule of one layer (precedence name > first_layer > type > default)."""
        if layer_name in self.names:
            spec, where = self.names[layer_name], f"names.{layer_name!r}"
        elif is_first and self.first_layer is not None:
            spec, where = self.first_layer, "first_layer"
        elif layer_type in self.types:
            spec, where = self.types[layer_type], f"types.{layer_type}"
        else:
            spec, where = self.default, "default"
        return make_rule(spec[0], spec[1], f"composite {self.source} [{where}]: ")

    def check_names(self, known: list[str]) -> None:
        """Every [names.X] must name a conv/linear layer of the model."""
        unknown = [n for n in self.names if n not in known]
        if unknown:
            raise InputError(
                f"composite {self.source}: [names] lists {', '.join(map(repr, unknown))}, "
                f"not a Conv1d/Linear layer of this model; layers: {', '.join(known)}")


def composite_dirs() -> list[Path]:
    """Folders searched for shipped composites, in order."""
    dirs = []
    env = os.environ.get("PLRP_COMPOSITES_DIR")
    if env:
        dirs.append(Path(env))
    package = Path(__file__).resolve().parents[1]            # .../plrp
    dirs.append(package.parent / "configs" / "composites")    # repository checkout
    dirs.append(package / "configs" / "composites")           # installed package data
    return dirs


def available_composites() -> list[str]:
    """Names of the shipped composites that can be found."""
    names = set()
    for d in composite_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names | {"epsilon"})


def load_composite(spec: "str | os.PathLike | Composite") -> Composite:
    """Load a composite by shipped name or by path to a .toml file.

    Raises InputError for an unknown name, an unreadable file, invalid TOML (with its line)
    or an invalid table (naming the key).
    """
    if isinstance(spec, Composite):
        return spec
    text = str(spec)
    if text.endswith(".toml") or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise InputError(f"composite file {text}: no such file")
        return _parse(path)
    for d in composite_dirs():
        path = d / f"{text}.toml"
        if path.is_file():
            return _parse(path)
    if text == "epsilon":
        return _from_table(dict(_BUILTIN_EPSILON), "epsilon", "built-in epsilon")
    raise InputError(f"unknown composite {text!r}; known: {', '.join(available_composites())}"
                     f" (or give a path to a .toml file)")


def _parse(path: Path) -> Composite:
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"composite file {path}: invalid TOML: {err}") from None
    except OSError as err:
        raise InputError(f"composite file {path}: cannot read: {err.strerror}") from None
    return _from_table(table, path.stem, str(path))


def _rule_table(value, source: str, where: str) -> tuple:
    if not isinstance(value, dict):
        raise InputError(f"composite {source}: [{where}] must be a table with a 'rule' key")
    if "rule" not in value:
        raise InputError(f"composite {source}: [{where}] has no 'rule' key")
    params = {k: v for k, v in value.items() if k != "rule"}
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"composite {source}: [{where}] {k} = {v!r} is not a number")
    spec = (str(value["rule"]), params)
    make_rule(spec[0], spec[1], f"composite {source} [{where}]: ")  # validate now
    return spec


def _from_table(table: dict, name: str, source: str) -> Composite:
    unknown = set(table) - TOP_KEYS
    if unknown:
        raise InputError(f"composite {source}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(sorted(TOP_KEYS))}")
    comp = Composite(name=str(table.get("name", name)), source=source,
                     description=str(table.get("description", "")))
    maxpool = table.get("maxpool", "wta")
    if maxpool not in MAXPOOL_MODES:
        raise InputError(f"composite {source}: maxpool = {maxpool!r}; expected "
                         f"{' or '.join(MAXPOOL_MODES)}")
    comp.maxpool = maxpool
    op_eps = table.get("op_epsilon", 1e-6)
    if isinstance(op_eps, bool) or not isinstance(op_eps, (int, float)) or op_eps < 0:
        raise InputError(f"composite {source}: op_epsilon = {op_eps!r}; expected a number >= 0")
    comp.op_epsilon = float(op_eps)
    if "default" in table:
        comp.default = _rule_table(table["default"], source, "default")
    if "first_layer" in table:
        comp.first_layer = _rule_table(table["first_layer"], source, "first_layer")
    types = table.get("types", {})
    if not isinstance(types, dict):
        raise InputError(f"composite {source}: [types] must be a table")
    for t, v in types.items():
        if t not in LAYER_TYPES:
            raise InputError(f"composite {source}: [types.{t}]: unknown layer type; "
                             f"expected {' or '.join(LAYER_TYPES)}")
        comp.types[t] = _rule_table(v, source, f"types.{t}")
    names = table.get("names", {})
    if not isinstance(names, dict):
        raise InputError(f"composite {source}: [names] must be a table")
    for n, v in names.items():
        comp.names[n] = _rule_table(v, source, f"names.{n!r}")
    return comp
