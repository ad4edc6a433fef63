"""Convert another package's checkpoint into a native plrp checkpoint (``plrp convert``).

The source is read as :func:`plrp.models.checkpoint.load_model` reads it (state_dict or
whole pickled model, kipoi / selene / bpnet-lite layouts recognised, never unpickling code);
the result is one ``.safetensors`` file whose metadata carries the architecture and its
hyper-parameters, the alphabet the weights read (kept as the source had it: kipoi's DeepSEA
stays "AGCT" and is permuted to ACGT whenever it is loaded), the output names and what was
mapped or dropped.
"""

from __future__ import annotations

from pathlib import Path

from plrp.errors import PlrpError
from plrp.models.checkpoint import file_sha256, read_model, save_checkpoint


def convert_checkpoint(src: str | Path, dst: str | Path, arch: str | Path | None = None,
                       arch_params: dict | None = None) -> dict:
    """Write ``src``'s model to ``dst`` as a native checkpoint (atomically).

    ``arch`` / ``arch_params`` as for :func:`~plrp.models.checkpoint.load_model` (e.g.
    ``output_names`` to name DeepSEA's 919 outputs). Returns a summary: source format,
    architecture spec, alphabet, source notes and the sha256 of both files.
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if dst.exists() and dst.resolve() == src.resolve():
        raise PlrpError(f"{dst}: the output would overwrite the source checkpoint")
    model, meta, fmt = read_model(src, arch, arch_params)
    source = {"file": src.name, "sha256": file_sha256(src), "format": fmt,
              **meta.get("source", {})}
    save_checkpoint(dst, model, meta.get("training") or {}, alphabet=meta["alphabet"],
                    source=source)
    return {"format": fmt, "spec": model.spec(), "alphabet": meta["alphabet"],
            "output_names": model.output_names, "source": source,
            "sha256": file_sha256(dst)}
