"""The one checkpoint format of snn-lats.

A checkpoint is a dict of plain tensors and containers, so it loads with
``torch.load(weights_only=True)``: nothing but tensors, numbers, strings, lists, tuples and dicts
is ever unpickled. Keys:

- ``format`` (:data:`FORMAT`) and ``version``;
- ``model``: the state dict of the unwrapped model: theta (``...parametrizations.weight.original``)
  and the per-layer threshold buffers of a pruned model;
- ``optimizer``, ``lr_scheduler``, ``pruner``, ``scaler``: their state dicts (``None`` if unused);
- ``epoch``: epochs fully completed; ``step``: optimizer steps taken in all;
  ``epoch_step``: steps taken in the epoch in progress (non-zero only after an interruption);
- ``rng``: torch (CPU and CUDA), numpy and Python ``random`` states, as tensors and lists;
- ``config``: the resolved :class:`~snn_lats.engine.recipe.TrainConfig` as a dict;
- ``num_classes``, ``history`` (per-epoch metrics), ``best`` (the ``model_best.pth`` choice).

Files are written atomically (temporary file + rename), so an interruption mid-write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from snn_lats._io import atomic_open

FORMAT = "snn-lats-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable snn-lats checkpoint (missing, truncated, foreign, mismatched)."""


# ----------------------------------------------------------------------------------------------
# RNG state as plain data


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors, lists and numbers."""
    version, mt_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {"version": int(version), "state": list(mt_state), "gauss_next": gauss_next},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# ----------------------------------------------------------------------------------------------
# Saving and loading


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping[str, Any]) -> None:
    """Write ``checkpoint`` (plain containers and tensors) atomically, stamped with the format."""
    content = {"format": FORMAT, "version": VERSION, **checkpoint}
    with atomic_open(path, "wb") as f:
        torch.save(content, f)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything else.

    Only plain tensors and containers are unpickled (``weights_only=True``): a file holding other
    objects is refused before any of its code can run. Raises :class:`CheckpointError` for a
    missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds objects other than plain tensors and containers; "
            f"refusing to unpickle it (weights_only=True): {str(error).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or not a torch file: {error}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an snn-lats checkpoint (no format {FORMAT!r} marker); "
            "checkpoints come from `snn-lats train`"
        )
    if content.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {content.get('version')!r}; "
            f"this snn-lats reads version {VERSION}"
        )
    missing = [k for k in ("model", "config", "epoch", "step", "num_classes") if k not in content]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    return content


def check_architecture(
    checkpoint: Mapping[str, Any], config: Mapping[str, Any], num_classes: int | None = None, source: str = "checkpoint"
) -> None:
    """:class:`CheckpointError` if ``checkpoint`` was trained on another architecture than ``config``."""
    from snn_lats.engine.recipe import ARCHITECTURE_FIELDS

    saved = checkpoint["config"]
    diffs = [
        f"{k}: {saved.get(k)!r} in the {source}, {config.get(k)!r} here"
        for k in ARCHITECTURE_FIELDS
        if saved.get(k) != config.get(k)
    ]
    if num_classes is not None and checkpoint["num_classes"] != num_classes:
        diffs.append(f"num_classes: {checkpoint['num_classes']} in the {source}, {num_classes} here")
    if diffs:
        raise CheckpointError(f"the {source} is of another architecture: " + "; ".join(diffs))


def load_model_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)`` with a short message naming the mismatch."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise CheckpointError(f"the {source} does not fit this network: {' '.join(first[:3])[:600]}") from None
