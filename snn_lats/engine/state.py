"""``RunState``: the progress of a run, what a checkpoint holds besides the modules' own state dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RunState"]


class RunState:
    """Epochs and steps done, the epoch in progress' running sums, the history, the best choice,
    the images skipped and the BatchNorm recalibration (epoch and batches), with
    ``state_dict()``/``load_state_dict()``."""

    def __init__(self) -> None:
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed in all
        self.epoch_step = 0  # steps completed in the epoch in progress
        self.partial: dict[str, float] = {}  # running sums of the epoch in progress
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.skipped_images = 0
        self.bn_recalibration: dict[str, int] | None = None  # {"epoch", "batches"} once done

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "partial": dict(self.partial),
            "history": self.history,
            "best": self.best,
            "skipped_images": self.skipped_images,
            "bn_recalibration": self.bn_recalibration,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.epoch_step = int(state.get("epoch_step", 0))
        partial = state.get("partial")  # per rank in a checkpoint: CheckpointSaver.restore picks this rank's
        self.partial = dict(partial) if isinstance(partial, Mapping) else {}
        self.history = list(state.get("history") or [])
        self.best = state.get("best")
        self.skipped_images = int(state.get("skipped_images", 0))
        recalibration = state.get("bn_recalibration")  # (not in checkpoints from before it existed)
        self.bn_recalibration = None if recalibration is None else dict(recalibration)
