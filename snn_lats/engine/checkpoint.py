"""The one checkpoint format of snn-lats, and :class:`CheckpointSaver`, the one owner of its layout.

A checkpoint is a dict of plain tensors and containers, so it loads with
``torch.load(weights_only=True)``: nothing but tensors, numbers, strings, lists, tuples and dicts
is ever unpickled. Files are written atomically (temporary file + rename), so an interruption
mid-write leaves the previous checkpoint intact. The keys are listed once, in
:meth:`CheckpointSaver.state_dict`.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snn_lats._io import atomic_open
from snn_lats.engine.distributed import all_gather
from snn_lats.engine.recipe import ARCHITECTURE_FIELDS, upgrade_config
from snn_lats.engine.rundir import BEST_NAME, CHECKPOINT_NAME

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "CheckpointSaver",
    "CheckpointWriteError",
    "check_architecture",
    "load_checkpoint",
    "load_model_state",
    "read_torch_file",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "snn-lats-checkpoint"
#: Version 2 holds the RNG states and epoch sums of every rank; version 1 (rank 0's only) still loads.
VERSION = 2
_READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A file that is not a usable snn-lats checkpoint (missing, truncated, foreign, mismatched)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, read-only folder); the previous one is intact."""


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
    # Serialised in memory first: a write the disk refuses is then one OSError, not torch's
    # zip writer failing again on its way out.
    buffer = io.BytesIO()
    torch.save(content, buffer)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getbuffer())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_torch_file(path: Path, label: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, every failure a one-line :class:`CheckpointError`
    naming ``label`` (``"checkpoint 'x.pth'"``): a file holding objects besides tensors and
    containers is refused before any of its code runs, and anything else torch cannot read (a
    text file, a truncated one: torch raises IndexError, KeyError, RuntimeError, ... for those)
    is "truncated or not a torch file"."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _ANSI.sub("", (str(error).strip().splitlines() or [""])[0])[:200]
        raise CheckpointError(
            f"{label} holds objects other than plain tensors and containers; refusing to unpickle it "
            f"(weights_only=True): {reason}"
        ) from None
    except Exception as error:  # whatever the parser tripped on, the file is not readable
        reason = _ANSI.sub("", (str(error).strip().splitlines() or [type(error).__name__])[0])[:200]
        raise CheckpointError(f"{label} is truncated or not a torch file ({type(error).__name__}: {reason})") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything else.

    Only plain tensors and containers are unpickled (``weights_only=True``): a file holding other
    objects is refused before any of its code can run. Raises :class:`CheckpointError` for a
    missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    content = read_torch_file(path, f"checkpoint {str(path)!r}", map_location)
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an snn-lats checkpoint (no format {FORMAT!r} marker); "
            "checkpoints come from `snn-lats train`"
        )
    if content.get("version") not in _READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {content.get('version')!r}; "
            f"this snn-lats reads versions {', '.join(map(str, _READABLE_VERSIONS))}"
        )
    missing = [k for k in ("model", "config", "epoch", "step", "num_classes") if k not in content]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    content["config"] = upgrade_config(content["config"])  # fields it predates mean what their absence meant
    return content


def check_architecture(
    checkpoint: Mapping[str, Any], config: Mapping[str, Any], num_classes: int | None = None, source: str = "checkpoint"
) -> None:
    """:class:`CheckpointError` if ``checkpoint`` was trained on another architecture than ``config``."""
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


# ----------------------------------------------------------------------------------------------
# The saver


class CheckpointSaver:
    """Saves and restores everything a run needs to continue exactly, like timm's ``CheckpointSaver``.

    ``run_state`` is the run's progress (epochs, steps, history, best choice): any object with
    ``state_dict()``/``load_state_dict()`` and a ``partial`` attribute (the running sums of the
    epoch in progress, which differ between ranks). ``pruner`` and ``scaler`` may be None (no
    pruning, no AMP scaler). ``rank``/``world_size``: where this process sits; every rank calls
    :meth:`save` (it gathers each rank's RNG state and epoch sums), rank 0 alone writes.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any,
        pruner: Any,
        scaler: Any,
        run_state: Any,
        config: Mapping[str, Any],
        num_classes: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.model = model
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.pruner = pruner
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.run_state = run_state
        self.config = dict(config)
        self.num_classes = num_classes
        self.rank = rank
        self.world_size = world_size

    @property
    def path(self) -> Path:
        """The latest checkpoint, ``output_dir/checkpoint.pth``."""
        return self.output_dir / CHECKPOINT_NAME

    @property
    def best_path(self) -> Path:
        """The best checkpoint so far, ``output_dir/model_best.pth``."""
        return self.output_dir / BEST_NAME

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's content, besides the ``format``/``version`` stamp:

        - ``model``: the state dict of the unwrapped model: θ (``...parametrizations.weight.original``)
          and the per-layer threshold buffers of a pruned model;
        - ``optimizer``, ``lr_scheduler``, ``pruner``, ``scaler``: their state dicts (None if unused);
        - ``rng``: per rank, torch (CPU and CUDA), numpy and Python ``random`` states (:func:`rng_state`);
        - ``config``: the resolved :class:`~snn_lats.engine.recipe.TrainConfig` as a dict;
        - ``num_classes``, ``world_size`` (the number of processes that trained it);
        - the run state's keys: ``epoch`` (epochs completed), ``step`` (optimizer steps in all),
          ``epoch_step`` (steps of the epoch in progress, non-zero after an interruption),
          ``partial`` (per rank, the running sums of that epoch), ``history``, ``best`` (the
          ``model_best.pth`` choice), ``skipped_images``.

        A collective under torchrun: every rank must call it.
        """
        ranks = all_gather({"rng": rng_state(), "partial": dict(self.run_state.partial)})
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "pruner": None if self.pruner is None else self.pruner.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "config": self.config,
            "num_classes": self.num_classes,
            "world_size": self.world_size,
            **self.run_state.state_dict(),
            "rng": [r["rng"] for r in ranks],
            "partial": [r["partial"] for r in ranks],
        }

    def save(self, best: bool = False) -> Path:
        """Write ``checkpoint.pth`` (with ``best``, first the same content as ``model_best.pth``,
        so that a checkpoint never names a best model that is not on disk).

        :class:`CheckpointWriteError` when the disk refuses (full, read-only): the files written
        before are intact, since every write goes to a temporary file renamed at the end.
        """
        content = self.state_dict()
        if self.rank != 0:
            return self.path
        for path in (self.best_path, self.path) if best else (self.path,):
            try:
                save_checkpoint(path, content)
            except OSError as error:
                reason = error.strerror or str(error)
                raise CheckpointWriteError(
                    error.errno, f"cannot write {str(path)!r}: {reason}; the previous checkpoint is intact"
                ) from None
        return self.path

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`save` into every object, the RNGs included.

        :class:`CheckpointError` when it does not fit (another network, optimizer or pruner).
        """
        load_model_state(self.model, checkpoint["model"])
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
            if self.pruner is not None:
                if checkpoint.get("pruner") is None:
                    raise ValueError("the checkpoint has no pruner state (it was trained with --prune none)")
                self.pruner.load_state_dict(checkpoint["pruner"])
            if self.scaler is not None and checkpoint.get("scaler"):
                self.scaler.load_state_dict(checkpoint["scaler"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(f"the checkpoint's training state does not fit this run: {error}") from None
        self.run_state.load_state_dict(checkpoint)
        rng, partial = checkpoint["rng"], checkpoint.get("partial") or {}
        if isinstance(rng, list):  # version 2: one entry per rank
            rng, partial = rng[self.rank], partial[self.rank]
        set_rng_state(rng)
        self.run_state.partial = dict(partial)
