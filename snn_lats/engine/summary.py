"""The one result type of a run or an evaluation: :class:`RunSummary`, written as ``summary.json``.

``to_dict``/``from_dict`` round-trip (like a module's ``state_dict``/``load_state_dict``), so a
reader such as ``snn-lats compare`` works on the same objects that training returned, never on
hand-parsed JSON. Derived figures (energy, firing rates) are computed from the reports, not stored
beside them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snn_lats._io import atomic_write_text
from snn_lats.estimators import SOPReport
from snn_lats.estimators.energy import DEFAULT_PRESET
from snn_lats.pruning import SparsityReport

__all__ = ["RunSummary"]

_REQUIRED = ("config", "accuracy", "sparsity", "sops")


@dataclass
class RunSummary:
    """Accuracy, weight sparsity, synaptic operations and history of one run (or one evaluation).

    ``accuracy``: ``acc1``, ``acc5`` and ``loss`` on the validation set, with the number of
    ``samples`` and ``skipped_images``. ``sops`` is None when no batch was counted.
    ``checkpoint`` names the evaluated checkpoint (evaluations only). ``bn_recalibration``:
    ``{"epoch", "batches"}`` when the BatchNorm statistics were recomputed at the end of the
    pruning window (``--recalibrate-bn``), else None.
    """

    config: dict[str, Any]
    accuracy: dict[str, float]
    sparsity: SparsityReport
    sops: SOPReport | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_completed: int = 0
    best: dict[str, Any] | None = None
    skipped_images: int = 0
    checkpoint: str | None = None
    bn_recalibration: dict[str, int] | None = None

    @property
    def energy_preset(self) -> str:
        """The run's ``--energy-preset``, else the default one."""
        return self.config.get("energy_preset") or DEFAULT_PRESET

    def energy_pj_per_sample(self, preset: str | None = None) -> float | None:
        """Energy per sample in picojoules (:meth:`SOPReport.energy_pj`) under ``preset`` (the
        run's own by default), None without a SOP count."""
        return None if self.sops is None else self.sops.energy_pj(preset or self.energy_preset)

    @property
    def firing_rates(self) -> dict[str, float]:
        """Firing rate of every neuron layer, by name (empty without a SOP count)."""
        if self.sops is None:
            return {}
        return {r["name"]: r["firing_rate"] for r in self.sops.neuron_rows()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "accuracy": self.accuracy,
            "epochs_completed": self.epochs_completed,
            "best": self.best,
            "skipped_images": self.skipped_images,
            "checkpoint": self.checkpoint,
            "bn_recalibration": self.bn_recalibration,
            "sparsity": self.sparsity.to_dict(),
            "sops": None if self.sops is None else self.sops.to_dict(),
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        return cls(
            config=dict(data["config"]),
            accuracy=dict(data["accuracy"]),
            sparsity=SparsityReport.from_dict(data["sparsity"]),
            sops=None if data["sops"] is None else SOPReport.from_dict(data["sops"]),
            history=list(data.get("history") or []),
            epochs_completed=int(data.get("epochs_completed", 0)),
            best=data.get("best"),
            skipped_images=int(data.get("skipped_images", 0)),
            checkpoint=data.get("checkpoint"),
            bn_recalibration=data.get("bn_recalibration"),
        )

    def write(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunSummary:
        """A run's ``summary.json``, given the run directory or the file itself; ValueError naming
        what is wrong for anything else."""
        path = Path(path)
        file = path / "summary.json" if path.is_dir() else path
        if not file.is_file():
            raise ValueError(
                f"{str(path)!r} is not a run directory with a summary.json (written at the end of "
                "`snn-lats train`), nor such a file"
            )
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(file)!r} is not valid JSON: {error}") from None
        missing = [k for k in _REQUIRED if not isinstance(data, dict) or k not in data]
        if missing:
            raise ValueError(f"{str(file)!r} is not an snn-lats summary (lacks {', '.join(missing)})")
        return cls.from_dict(data)
