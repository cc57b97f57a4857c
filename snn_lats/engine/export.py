"""Export a checkpoint as the plain pruned network: pruned weights baked in, no reparameterisation.

``out_dir`` receives ``model.safetensors`` and ``model.pth`` (the same state dict; the ``.pth``
loads with ``torch.load(weights_only=True)``), which load strictly into the architecture built
without pruning, and ``export.json`` (architecture, sparsity, accuracy).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from snn_lats._io import atomic_open, atomic_write_text
from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint
from snn_lats.engine.model import build_model, build_model_from_checkpoint, model_kwargs
from snn_lats.pruning import finalize, pruned_layers, sparsity_report

__all__ = ["export_checkpoint", "load_exported"]


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write the finalized model of ``checkpoint`` into ``out_dir``; return the ``export.json`` content.

    Everything is checked before the first file is written: the checkpoint loads, and the
    finalized state dict loads strictly into a freshly built unpruned network.
    """
    content = load_checkpoint(checkpoint)
    model, _ = build_model_from_checkpoint(content)
    sparsity = sparsity_report(model)  # with the thresholds, before they are baked in
    if pruned_layers(model):
        finalize(model)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}

    config = content["config"]
    plain = build_model(config, content["num_classes"])
    try:
        plain.load_state_dict(state, strict=True)
    except RuntimeError as error:  # would be a bug of finalize: refuse to write a model that does not load
        raise CheckpointError(f"the finalized model does not load into the plain network: {error}") from None

    history = content.get("history") or []
    last = history[-1]["val"] if history else None
    info = {
        "source_checkpoint": str(checkpoint),
        "architecture": {
            "model": config["model"],
            "num_classes": content["num_classes"],
            **model_kwargs(config),
            "spiking": bool(getattr(model, "spiking", False)),
        },
        "epoch": content["epoch"],
        "accuracy": {"acc1": last["acc1"], "acc5": last["acc5"]} if last else None,
        "accuracy_note": "validation accuracy of the checkpoint's last completed epoch (as trained)",
        "sparsity": {
            "global": sparsity.global_sparsity,
            "layers": sparsity.layer_sparsity(),
            "thresholds": {row["name"]: row["threshold"] for row in sparsity.rows},
        },
        "pruning": {k: config.get(k) for k in ("prune", "l1", "final_threshold", "beta", "dense_first_last")},
        "files": ["model.safetensors", "model.pth"],
        "load": "snn_lats.networks.create(architecture.model, num_classes=..., **options).load_state_dict(...)",
    }

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "model.safetensors", "wb") as f:
        f.write(safetensors_bytes(state, metadata={"format": "pt", "model": str(config["model"])}))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_open(out_dir / "model.pth", "wb") as f:
        f.write(buffer.getvalue())
    atomic_write_text(out_dir / "export.json", json.dumps(info, indent=2) + "\n")
    return info


def load_exported(out_dir: str | os.PathLike) -> tuple[torch.nn.Module, Mapping[str, Any]]:
    """``(model, export_info)``: the plain network of an export directory, from ``model.safetensors``."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    info = json.loads((out_dir / "export.json").read_text())
    arch = dict(info["architecture"])
    arch.pop("spiking", None)
    num_classes = arch.pop("num_classes")
    config = {"model": arch.pop("model"), **arch}
    model = build_model(config, num_classes)
    model.load_state_dict(load_file(out_dir / "model.safetensors"), strict=True)
    return model.eval(), info
