"""Weight layouts of other packages, mapped onto plrp's architectures.

``LAYOUTS`` is a table: name -> :class:`Layout` (the plrp architecture it maps onto, the
alphabet its first layer reads, a ``detect`` test on the tensor names/shapes and a ``convert``
function). :func:`map_layout` picks the layout of a state_dict and returns it renamed and
reshaped for the architecture, with hyper-parameters read from the tensor shapes. Add a
layout by adding an entry.

The kipoi and selene layouts follow those packages' module definitions: kipoi's PyTorch
conversions of the Torch7 DeepSEA (``deepsea_cpu.pth``: Conv2d with (1, k) kernels, channels
in AGCT order, dense layers inside ``Sequential(Lambda, Linear)``) and Basset
(``pretrained_model_reloaded_th.pth``: Conv2d with (k, 1) kernels, ACGT), selene_sdk's
``DeepSEA`` (``conv_net``/``classifier``, hidden width = n_targets) and bpnet-lite's
``BPNet``/``ChromBPNet`` (1.1.0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from plrp.errors import InputError


@dataclass(frozen=True)
class Layout:
    """One foreign weight layout.

    ``detect(tensors, info) -> bool``; ``convert(tensors, info, user_hparams, path) ->
    (tensors, hparams, notes)``: tensors renamed for ``arch``, the hyper-parameters the
    weights determine, and notes on what was mapped or dropped (stored in the checkpoint).
    ``info``: for a whole pickled model, {"modules": {path: (class, attributes)}}; else {}.
    """

    arch: str
    alphabet: str
    detect: Callable[[dict, dict], bool]
    convert: Callable[[dict, dict, dict, Path], tuple[dict, dict, dict]]
    description: str


def shape_text(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _has(tensors: dict, shapes: dict[str, int]) -> bool:
    """Every key present with the given number of dimensions."""
    return all(k in tensors and tensors[k].dim() == d for k, d in shapes.items())


def _rename(tensors: dict, mapping: dict[str, str], path: Path, layout: str,
            squeeze: dict[str, int] | None = None) -> dict:
    """Rename ``prefix.`` -> ``new.`` for every key; squeeze the given dims (Conv2d with a
    length-1 kernel axis -> Conv1d). Any key outside the mapping is an error naming it."""
    out = {}
    for key, value in tensors.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in mapping:
            raise InputError(f"{path}: tensor {key!r} {shape_text(value)} is not part of a "
                             f"{layout} model")
        if squeeze and prefix in squeeze and leaf == "weight":
            dim = squeeze[prefix]
            if value.dim() != 4 or value.shape[dim] != 1:
                raise InputError(f"{path}: tensor {key!r} has shape {shape_text(value)}; a "
                                 f"{layout} convolution has a length-1 axis {dim}")
            value = value.squeeze(dim)
        out[f"{mapping[prefix]}.{leaf}"] = value
    return out


# ------------------------------------------------------------------------------ DeepSEA

_KIPOI_DEEPSEA = {"0": "features.0", "4": "features.4", "8": "features.8",
                  "12.1": "classifier.0", "14.1": "classifier.2"}


def _strip_kipoi_outer(tensors: dict) -> tuple[dict, str]:
    """kipoi wraps deepsea_cpu in Sequential(ReCodeAlphabet, [ConcatenateRC,] deepsea_cpu,
    [AverageRC]); a state_dict of the wrapper has every key under "1." or "2."."""
    for outer in ("1.", "2."):
        if tensors and all(k.startswith(outer) for k in tensors):
            return {k[len(outer):]: v for k, v in tensors.items()}, outer
    return tensors, ""


def _detect_kipoi_deepsea(tensors: dict, info: dict) -> bool:
    inner, _ = _strip_kipoi_outer(tensors)
    return (_has(inner, {"0.weight": 4, "4.weight": 4, "8.weight": 4, "12.1.weight": 2,
                         "14.1.weight": 2}) and inner["0.weight"].shape[2] == 1)


def _deepsea_hparams(t: dict) -> dict:
    return {"channels": [int(t[f"features.{i}.weight"].shape[0]) for i in (0, 4, 8)],
            "kernel_size": int(t["features.0.weight"].shape[2]),
            "n_hidden": int(t["classifier.0.weight"].shape[0]),
            "n_outputs": int(t["classifier.2.weight"].shape[0])}


def _convert_kipoi_deepsea(tensors, info, user, path):
    inner, outer = _strip_kipoi_outer(tensors)
    out = _rename(inner, _KIPOI_DEEPSEA, path, "kipoi DeepSEA",
                  squeeze={"0": 2, "4": 2, "8": 2})
    notes = {"layout": "kipoi-deepsea", "alphabet": "AGCT",
             "activations": "kipoi's nn.Threshold(0, 1e-6) (non-positive -> 1e-6) is a ReLU "
                            "in plrp"}
    if outer == "2.":
        notes["reverse_complement"] = ("kipoi's DeepSEA/predict averages the forward and "
                                       "reverse-complement predictions; plrp's model is the "
                                       "forward pass")
    return out, _deepsea_hparams(out), notes


def _detect_selene_deepsea(tensors: dict, info: dict) -> bool:
    return _has(tensors, {"conv_net.0.weight": 3, "conv_net.4.weight": 3,
                          "conv_net.8.weight": 3, "classifier.0.weight": 2,
                          "classifier.2.weight": 2})


def _convert_selene_deepsea(tensors, info, user, path):
    mapping = {f"conv_net.{i}": f"features.{i}" for i in (0, 4, 8)}
    mapping.update({"classifier.0": "classifier.0", "classifier.2": "classifier.2"})
    out = _rename(tensors, mapping, path, "selene DeepSEA")
    return out, _deepsea_hparams(out), {"layout": "selene-deepsea"}


# ------------------------------------------------------------------------------- Basset

_KIPOI_BASSET = {"0": "features.0", "1": "features.1", "4": "features.4", "5": "features.5",
                 "8": "features.8", "9": "features.9", "13.1": "classifier.0",
                 "14": "classifier.1", "17.1": "classifier.4", "18": "classifier.5",
                 "21.1": "classifier.8"}


def _detect_kipoi_basset(tensors: dict, info: dict) -> bool:
    return (_has(tensors, {"0.weight": 4, "1.running_mean": 1, "13.1.weight": 2,
                           "17.1.weight": 2, "21.1.weight": 2})
            and tensors["0.weight"].shape[3] == 1)


def _convert_kipoi_basset(tensors, info, user, path):
    out = _rename(tensors, _KIPOI_BASSET, path, "kipoi Basset",
                  squeeze={"0": 3, "4": 3, "8": 3})
    hparams = {"channels": [int(out[f"features.{i}.weight"].shape[0]) for i in (0, 4, 8)],
               "kernel_sizes": [int(out[f"features.{i}.weight"].shape[2]) for i in (0, 4, 8)],
               "n_hidden": int(out["classifier.0.weight"].shape[0]),
               "n_outputs": int(out["classifier.8.weight"].shape[0])}
    notes = {"layout": "kipoi-basset",
             "output": "kipoi's final nn.Sigmoid is left out: plrp explains the logits"}
    return out, hparams, notes


# ------------------------------------------------------------------ bpnet-lite / chrombpnet

def _detect_bpnet_lite(tensors: dict, info: dict) -> bool:
    return (_has(tensors, {"iconv.weight": 3, "fconv.weight": 3, "linear.weight": 2})
            and not any(k.startswith(("accessibility.", "bias.")) for k in tensors))


def _detect_chrombpnet(tensors: dict, info: dict) -> bool:
    return (any(k.startswith("accessibility.") for k in tensors)
            and _detect_bpnet_lite({k[len("accessibility."):]: v for k, v in tensors.items()
                                    if k.startswith("accessibility.")}, {}))


def _module_attribute(info: dict, module: str, name: str):
    return info.get("modules", {}).get(module, (None, {}))[1].get(name)


def _convert_bpnet_lite(tensors, info, user, path, module=""):
    """bpnet-lite BPNet weights -> plrp's BPNet: hyper-parameters from the tensor shapes
    (and a pickled model's ``trimming``), control-track inputs removed, missing output biases
    zero.

    Dropping the control weights is exact for zero control tracks (what bpnet-lite's
    ControlWrapper feeds when explaining): the profile conv then sees zeros on those
    channels and the count head sees log(0 + 1) = 0.
    """
    iconv, fconv = tensors["iconv.weight"], tensors["fconv.weight"]
    linear = tensors["linear.weight"]
    layers = sorted({int(m.group(1)) for k in tensors
                     if (m := re.fullmatch(r"rconvs\.(\d+)\.weight", k))})
    if layers != list(range(len(layers))):
        raise InputError(f"{path}: residual convolutions rconvs.{layers} are not numbered "
                         "0..n-1")
    n_filters = int(iconv.shape[0])
    hparams = {"n_filters": n_filters, "n_layers": len(layers),
               "n_outputs": int(fconv.shape[0]), "profile_kernel": int(fconv.shape[2])}
    trimming = _module_attribute(info, module, "trimming")
    if isinstance(trimming, int) and "trimming" not in user:
        hparams["trimming"] = trimming  # a pickled model knows its own
    n_control = int(fconv.shape[1]) - n_filters
    n_count_control = int(linear.shape[1]) - n_filters
    if n_control < 0 or n_count_control not in (0, 1):
        raise InputError(f"{path}: tensors 'fconv.weight' {shape_text(fconv)} and "
                         f"'linear.weight' {shape_text(linear)} do not fit iconv's "
                         f"{n_filters} filters")
    tensors = dict(tensors)
    tensors["fconv.weight"] = fconv[:, :n_filters].contiguous()
    tensors["linear.weight"] = linear[:, :n_filters].contiguous()
    notes: dict = {"layout": "bpnet-lite"}
    if n_control or n_count_control:
        notes["control_tracks_dropped"] = n_control
        notes["count_control_inputs_dropped"] = n_count_control
    zero_biases = []
    for key, size in (("fconv.bias", hparams["n_outputs"]), ("linear.bias", 1)):
        if key not in tensors:  # bpnet-lite's profile_output_bias / count_output_bias = False
            tensors[key] = torch.zeros(size, dtype=fconv.dtype)
            zero_biases.append(key)
    if zero_biases:
        notes["zero_biases_added"] = zero_biases
    return tensors, hparams, notes


def _convert_chrombpnet(tensors, info, user, path):
    """ChromBPNet = frozen Tn5 bias model + accessibility model; chrombpnet interprets the
    accessibility ("no bias") model, so that is the one mapped; the bias model is dropped."""
    acc = {k[len("accessibility."):]: v for k, v in tensors.items()
           if k.startswith("accessibility.")}
    stray = sorted({k.split(".", 1)[0] for k in tensors} - {"accessibility", "bias"})
    if stray:
        raise InputError(f"{path}: tensor group {stray[0]!r} is not part of a ChromBPNet "
                         "(expected 'accessibility.' and 'bias.')")
    out, hparams, notes = _convert_bpnet_lite(acc, info, user, path, module="accessibility")
    notes["layout"] = "chrombpnet"
    notes["chrombpnet"] = ("accessibility model only; the Tn5 bias model "
                           f"({sum(k.startswith('bias.') for k in tensors)} tensors) "
                           "is not explained")
    return out, hparams, notes


LAYOUTS: dict[str, Layout] = {
    "kipoi-deepsea": Layout("deepsea", "AGCT", _detect_kipoi_deepsea, _convert_kipoi_deepsea,
                            "kipoi DeepSEA (deepsea_cpu.pth, Conv2d, AGCT)"),
    "selene-deepsea": Layout("deepsea", "ACGT", _detect_selene_deepsea,
                             _convert_selene_deepsea, "selene_sdk DeepSEA"),
    "kipoi-basset": Layout("basset", "ACGT", _detect_kipoi_basset, _convert_kipoi_basset,
                           "kipoi Basset (pretrained_model_reloaded_th.pth, Conv2d)"),
    "chrombpnet": Layout("bpnet", "ACGT", _detect_chrombpnet, _convert_chrombpnet,
                         "bpnet-lite ChromBPNet (accessibility model)"),
    "bpnet-lite": Layout("bpnet", "ACGT", _detect_bpnet_lite, _convert_bpnet_lite,
                         "bpnet-lite BPNet"),
}

_WRAPPER_PREFIXES = ("_orig_mod.", "module.", "model.")


def strip_wrappers(tensors: dict) -> tuple[dict, list[str]]:
    """Remove prefixes every key shares: ``_orig_mod.`` (torch.compile), ``module.``
    (DataParallel / DistributedDataParallel) and ``model.`` (bpnet-lite's Control/Count/
    ProfileWrapper), repeatedly. Returns (tensors, prefixes removed)."""
    removed: list[str] = []
    changed = True
    while changed and tensors:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
                removed.append(prefix)
                changed = True
    return tensors, removed


def detect_layout(tensors: dict, info: dict, arch: str | None = None) -> str | None:
    """Name of the first layout in ``LAYOUTS`` whose test the tensors pass (restricted to
    layouts of architecture ``arch`` when given); None when none does."""
    for name, layout in LAYOUTS.items():
        if (arch is None or layout.arch == arch) and layout.detect(tensors, info):
            return name
    return None


def map_layout(name: str, tensors: dict, info: dict, user_hparams: dict,
               path: Path) -> tuple[dict, dict, str, dict]:
    """Convert ``tensors`` from layout ``name``: (tensors for the architecture, hyper-
    parameters read from the weights, the alphabet the first layer reads, notes).

    A user hyper-parameter that contradicts the weights is an InputError naming both.
    """
    layout = LAYOUTS[name]
    out, hparams, notes = layout.convert(tensors, info, user_hparams, path)
    for key, value in hparams.items():
        if key in user_hparams and user_hparams[key] != value:
            raise InputError(f"{path}: --arch-param {key}={user_hparams[key]} disagrees with "
                             f"the weights, which have {key}={value}")
    return out, hparams, layout.alphabet, notes
