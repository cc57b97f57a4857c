"""Export a checkpoint as the plain pruned network, in one or more deployment formats.

The formats (``formats=``), each written into ``out_dir``:

- ``"dense"``: ``model.safetensors`` and ``model.pth`` (the same state dict; the ``.pth`` loads
  with ``torch.load(weights_only=True)``), pruned weights baked in, no reparameterisation;
- ``"sparse"``: ``model.sparse.safetensors``, the same state dict with every pruned weight as a
  bitmask plus its nonzero values (:mod:`snn_lats.deploy.sparse`);
- ``"nir"``: ``model.nir``, the NIR graph of a SEW ResNet (:func:`snn_lats.deploy.to_nir`).

Every state dict loads strictly into the architecture built without pruning. ``export.json``
describes the export: architecture, sparsity, accuracy, the nonzero weights of every layer, the
files and their sizes beside the dense safetensors', the NIR graph's settings and, with
``sops_batches > 0``, the synaptic-operation report of the source model on its validation data.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from snn_lats._io import atomic_open, atomic_write_text
from snn_lats.data import DataError
from snn_lats.deploy import DEFAULT_DT, FORMATS, decode_sparse, encode_sparse, load_sparse, to_nir
from snn_lats.deploy.nir import require_nir
from snn_lats.engine.checkpoint import CheckpointError, load_checkpoint
from snn_lats.engine.evaluation import checkpoint_loader, count_sops
from snn_lats.engine.model import build_model, build_model_from_checkpoint, checkpoint_config, model_kwargs
from snn_lats.engine.recipe import TrainConfig, resolve_config
from snn_lats.pruning import finalize, pruned_layers, sparsity_report
from snn_lats.report import Report

__all__ = ["export_checkpoint", "load_exported", "nonzero_report"]


def nonzero_report(model: torch.nn.Module) -> Report:
    """Nonzero weights of every Conv and Linear layer of ``model`` (rows ``name, shape, params,
    nonzeros, density``; totals over the layers)."""
    rows = [
        {
            "name": r["name"],
            "shape": r["shape"],
            "params": r["numel"],
            "nonzeros": r["numel"] - r["zeros"],
            "density": r["density"],
        }
        for r in sparsity_report(model).rows
    ]
    params, nonzeros = sum(r["params"] for r in rows), sum(r["nonzeros"] for r in rows)
    return Report(
        title="Nonzero weights per layer (exported)",
        rows=rows,
        totals={"layers": len(rows), "params": params, "nonzeros": nonzeros, "density": nonzeros / params},
    )


def _validation_data(content: Mapping[str, Any], data_path: str | None):
    """A loader over the checkpoint's validation data (``data_path`` overrides its own)."""
    config = resolve_config({"data_path": data_path, "workers": 0}, base=content["config"])
    try:
        return checkpoint_loader(content, config)
    except DataError as error:
        raise DataError(
            f"{error}; the SOP report and the NIR graph's input shape read the checkpoint's validation data: "
            "give --data-path, or --sops-batches 0 (and --input-shape C H W for nir)"
        ) from None


def _first_image_shape(loader) -> tuple[int, ...]:
    for images, _, _ in loader:
        if images.numel():  # [N, C, H, W] images, or [T, N, C, H, W] event frames: one step's (C, H, W)
            return tuple(images.shape[-3:])
    raise ValueError("no readable validation image to take the input shape from; give input_shape")


def _nir_bytes(graph) -> bytes:
    import nir

    buffer = io.BytesIO()
    nir.write(buffer, graph)
    data = buffer.getvalue()
    back = nir.read(io.BytesIO(data))  # the file reads back, with its types checked
    if set(back.nodes) != set(graph.nodes) or sorted(back.edges) != sorted(graph.edges):
        raise RuntimeError("the NIR file does not read back as the graph written")
    return data


# Long (~110 lines, a third of it the docstring): everything is built and checked in memory, in
# the order of the files, before the first one is written; split, that guarantee would be spread.
def export_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = ("dense",),
    *,
    input_shape: Sequence[int] | None = None,
    dt: float = DEFAULT_DT,
    sops_batches: int = 0,
    data_path: str | None = None,
) -> dict[str, Any]:
    """Write the finalized model of ``checkpoint`` into ``out_dir`` in ``formats`` (keys of
    :data:`FORMATS`); return the ``export.json`` content.

    ``input_shape`` ``(C, H, W)`` of the NIR graph defaults to that of the checkpoint's validation
    images; ``dt`` is the NIR graph's time step in seconds. ``sops_batches > 0`` counts the
    synaptic operations of the source model (with its thresholds) on that many validation batches
    (``data_path`` overrides the checkpoint's data folder).

    Everything is computed and checked in memory before the first file is written: the checkpoint
    loads, the finalized state dict loads strictly into a freshly built unpruned network, the
    sparse file decodes to that state dict exactly and the NIR file reads back with ``nir.read``.
    Each file is written atomically, ``export.json`` last.
    """
    formats = list(dict.fromkeys([formats] if isinstance(formats, str) else formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be some of {', '.join(FORMATS)}; got {', '.join(map(repr, formats)) or 'none'}")
    if sops_batches < 0:
        raise ValueError(f"sops_batches must be >= 0, got {sops_batches}")
    if "nir" in formats:
        require_nir()
    content = load_checkpoint(checkpoint)
    model, _ = build_model_from_checkpoint(content)
    sparsity = sparsity_report(model)  # with the thresholds, before they are baked in

    loader = None
    if sops_batches or ("nir" in formats and input_shape is None):
        loader = _validation_data(content, data_path)
    graph = None
    if "nir" in formats:  # refused before anything is counted or written; reads the pruned S_d(θ)
        input_shape = _first_image_shape(loader) if input_shape is None else tuple(input_shape)
        graph = to_nir(model, input_shape, dt=dt)
    sops = None
    if sops_batches:
        sops = count_sops(model, loader, sops_batches)

    if pruned_layers(model):
        finalize(model)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    config = checkpoint_config(content)
    plain = build_model(config, content["num_classes"])
    try:
        plain.load_state_dict(state, strict=True)
    except RuntimeError as error:  # would be a bug of finalize: refuse to write a model that does not load
        raise CheckpointError(f"the finalized model does not load into the plain network: {error}") from None

    dense = safetensors_bytes(state, metadata={"format": "pt", "model": config.model})
    files = _state_files(state, formats, dense, config.model)
    nir_info = None
    if graph is not None:
        files["model.nir"] = _nir_bytes(graph)
        nir_info = {
            "file": "model.nir",
            "input_shape": [int(v) for v in input_shape],
            "dt": float(dt),
            "T": int(model.T),
            "readout": graph.metadata["readout"],
            "nodes": len(graph.nodes),
            "edges": len(graph.edges),
            "node_types": dict(Counter(type(n).__name__ for n in graph.nodes.values())),
        }

    history = content.get("history") or []
    validated = [r["val"] for r in history if r.get("val") is not None]
    last = validated[-1] if validated else None
    sizes = {name: len(data) for name, data in files.items()}
    info = {
        "source_checkpoint": str(checkpoint),
        "architecture": {
            "model": config.model,
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
        "pruning": None if config.pruning_spec() is None else config.pruning_spec().to_dict(),
        "formats": formats,
        "files": list(files),
        "sizes": {
            "bytes": sizes,
            "dense_safetensors_bytes": len(dense),
            **(
                {"sparse_vs_dense": len(dense) / sizes["model.sparse.safetensors"]}
                if "model.sparse.safetensors" in sizes
                else {}
            ),
        },
        "nonzeros": nonzero_report(model).to_dict(),
        "sops": sops.to_dict() if sops is not None else None,
        "nir": nir_info,
        "load": "snn_lats.networks.create(architecture.model, num_classes=..., **options).load_state_dict(...)",
    }

    _write(Path(out_dir), files, info)
    return info


def _write(out_dir: Path, files: dict[str, bytes], info: dict[str, Any]) -> None:
    """The files, then export.json, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # export.json names a consistent set of files: it goes first and comes back last, so that a
    # write that fails midway leaves no description of a mixed folder; the files of formats this
    # export does not write (an earlier export's) go too.
    (out_dir / "export.json").unlink(missing_ok=True)
    for name in {n for names in FORMATS.values() for n in names} - files.keys():
        (out_dir / name).unlink(missing_ok=True)
    for name, data in files.items():
        with atomic_open(out_dir / name, "wb") as f:
            f.write(data)
    atomic_write_text(out_dir / "export.json", json.dumps(info, indent=2) + "\n")


def _state_files(state: dict[str, torch.Tensor], formats: list[str], dense: bytes, model: str) -> dict[str, bytes]:
    """The bytes of the state dict's files in ``formats`` (``dense``: its safetensors bytes); the
    sparse file is decoded again and must give the state dict back exactly."""
    files: dict[str, bytes] = {}
    if "dense" in formats:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files["model.safetensors"], files["model.pth"] = dense, buffer.getvalue()
    if "sparse" in formats:
        sparse = encode_sparse(state, metadata={"model": model})
        decoded = decode_sparse(sparse)
        if decoded.keys() != state.keys() or not all(_same(decoded[k], state[k]) for k in state):
            raise RuntimeError("the sparse file does not decode to the exported state dict")
        files["model.sparse.safetensors"] = sparse
    return files


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN equal to NaN (``torch.equal`` is False for a NaN weight)."""
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and torch.equal(a.isnan(), b.isnan())
        and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    )


def load_exported(out_dir: str | os.PathLike) -> tuple[torch.nn.Module, Mapping[str, Any]]:
    """``(model, export_info)``: the plain network of an export directory, from ``model.safetensors``
    (or ``model.sparse.safetensors`` when only the sparse format was exported)."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    info = json.loads((out_dir / "export.json").read_text())
    files = info.get("files", ["model.safetensors"])
    if "model.safetensors" in files:
        state = load_file(out_dir / "model.safetensors")
    elif "model.sparse.safetensors" in files:
        state = load_sparse(out_dir / "model.sparse.safetensors")
    else:
        raise ValueError(f"{out_dir} holds no state dict (formats {', '.join(info.get('formats', []))})")
    arch = dict(info["architecture"])
    arch.pop("spiking", None)
    num_classes = arch.pop("num_classes")
    model = build_model(TrainConfig(**arch), num_classes)
    model.load_state_dict(state, strict=True)
    return model.eval(), info
