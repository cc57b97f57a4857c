"""``PruningSpec``: everything that says how a model is pruned, every rule checked once.

The recipe embeds one (:meth:`TrainConfig.pruning_spec <snn_lats.engine.recipe.TrainConfig.pruning_spec>`),
:class:`~snn_lats.pruning.SoftThresholdPruner` takes one (or builds it from its keyword arguments),
and ``export.json`` records it (:meth:`PruningSpec.to_dict`). What a spec cannot know alone (the
model's layers, the optimizer's param groups, the planned lrs) the pruner checks. Importable
without torch (the command line reads its choices).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snn_lats.estimators.energy import ENERGY_PRESETS, EnergyPreset
from snn_lats.pruning.schedules import schedule_class

if TYPE_CHECKING:
    from torch import nn

    from snn_lats.pruning.parametrization import Selector

__all__ = [
    "COST_WEIGHTINGS",
    "COSTS",
    "GRADIENTS",
    "PruningSpec",
    "STRENGTHS",
    "TARGETS",
    "WINDOW_UNITS",
    "parse_selector",
]

#: The gradients S_d(θ) can carry to θ (:func:`~snn_lats.pruning.functional.soft_threshold`).
GRADIENTS: tuple[str, ...] = ("straight-through", "exact")
#: What a weight's cost counts, for a cost-weighted L1 term (``cost=`` with an explicit ``l1``).
COSTS: tuple[str, ...] = ("sops", "energy")
#: How a layer's cost per weight ``c_l`` weighs its L1 term (its threshold grows ``∝ c_l^p``):
#: ``sqrt`` (p = 1/2: keep a weight while ``w² > μ·c``, the knapsack view; docs/concepts.md),
#: ``linear`` (p = 1: ``λ Σ_l c_l‖w_l‖₁``), ``uniform`` (p = 0: one threshold, the cost counted only
#: to steer λ to the target).
COST_WEIGHTINGS: dict[str, float] = {"sqrt": 0.5, "linear": 1.0, "uniform": 0.0}
#: The targets, which replace ``l1``/``final_threshold``: the controller picks λ to end the window there.
TARGETS: tuple[str, ...] = ("target_sparsity", "target_sops", "target_energy")
#: Every way to set how strongly a schedule prunes; a schedule takes some of them (``Schedule.strengths``).
STRENGTHS: tuple[str, ...] = ("l1", "final_threshold", *TARGETS)
#: The unit of the window ``[start, end)``: optimizer steps (the pruner's), or epochs (a recipe's).
WINDOW_UNITS: tuple[str, ...] = ("steps", "epochs")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def _positive(value: Any, name: str, unit: str = "") -> float:
    value = _number(value, name)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0{unit}, got {value}")
    return value


def _index(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_selector(text: str | Selector) -> Selector:
    """A layer selector from its text form (``--prune-include``/``--prune-exclude``): the
    comma-separated items that name a ``torch.nn`` layer type (``"Linear"``, ``"nn.Conv2d"``)
    become that type, the others stay module-name patterns (fnmatch: ``"fc"``, ``"layer4.*"``).
    A selector that is not a string (types, patterns, a list of them, None) is returned as is."""
    if not isinstance(text, str):
        return text
    from torch import nn

    items: list[type[nn.Module] | str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        found = getattr(nn, item.removeprefix("nn."), None)
        items.append(found if isinstance(found, type) and issubclass(found, nn.Module) else item)
    if not items:
        raise ValueError(f"no layer pattern or type in {text!r}")
    return items


def _selector_record(selector: Selector) -> list[str] | None:
    """A selector as plain strings (a type by its name), for a record such as export.json."""
    if selector is None:
        return None
    items = [selector] if isinstance(selector, (type, str)) else list(selector)
    return [item.__name__ if isinstance(item, type) else str(item) for item in items]


@dataclass(frozen=True)
class PruningSpec:
    """How a model is pruned: the schedule, its strength, the window and the layers.

    - ``schedule``: a name of :data:`~snn_lats.pruning.schedules.SCHEDULES` (``"lats"``, ``"pgh"``,
      ``"slats"``, ``"stds-sine"``, ``"stds-linear"``, ``"constant"``, ``"learnable"``, ``"gmp"``).
    - its strength, exactly one of those the schedule takes: ``l1`` (λ), ``final_threshold`` (D),
      ``target_sparsity`` (a fraction of the pruned weights), ``target_sops`` (synaptic operations
      per sample) or ``target_energy`` (pJ per sample, priced by ``energy_preset``). ``"learnable"``
      takes none; ``"gmp"`` takes ``target_sparsity``.
    - ``cost`` (``"sops"``, ``"energy"``): weigh the L1 term of an explicit ``l1`` by what each
      layer's weights cost; ``cost_weighting`` (:data:`COST_WEIGHTINGS`): how a cost, or a cost
      target, weighs a layer's threshold.
    - ``beta`` (``"pgh"`` only, > 0), ``s_init`` (``"learnable"`` only).
    - the window ``[start, end)`` in ``unit`` (``"steps"``; a recipe says ``"epochs"`` and
      :meth:`in_steps` converts). The windowless schedules (``"constant"``, ``"learnable"``) have
      none. ``freeze_mask``: after ``end``, the pruned weights stay pruned and the others train
      as plain weights (a fixed mask, as gradual magnitude pruning's fine-tuning); False keeps
      ``d`` fixed and lets the straight-through gradient regrow weights.
    - ``recalibrate_bn``: recompute the BatchNorm running statistics on training batches when the
      window ends (the training engine does it; the statistics lag weights whose thresholds move).
    - the layers: ``include``, ``exclude`` (types and/or fnmatch name patterns, or their text
      form, :func:`parse_selector`), ``dense_first_last``; ``gradient`` of ``S_d(θ)``.
    - ``retarget_every``: window steps between the controller's re-estimates (a target or a
      cost), or between GMP's mask updates (default: 32 times over the window).

    Every rule is checked at construction: TypeError or ValueError naming the argument.
    """

    schedule: str = "lats"
    l1: float | None = None
    final_threshold: float | None = None
    target_sparsity: float | None = None
    target_sops: float | None = None
    target_energy: float | None = None
    energy_preset: str | EnergyPreset | None = None
    cost: str | None = None
    cost_weighting: str = "sqrt"
    beta: float | None = None
    s_init: float | None = None
    start: int = 0
    end: int | None = None
    unit: str = "steps"
    freeze_mask: bool = True
    recalibrate_bn: bool = True
    gradient: str = "straight-through"
    include: Selector = None
    exclude: Selector = None
    dense_first_last: bool = False
    retarget_every: int | None = None

    def __post_init__(self) -> None:
        schedule = schedule_class(self.schedule)  # ValueError for an unknown name
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        if self.unit not in WINDOW_UNITS:
            raise ValueError(f"unit must be one of {WINDOW_UNITS}, got {self.unit!r}")
        for name in ("freeze_mask", "recalibrate_bn", "dense_first_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self._check_strength(schedule)
        self._check_costs()
        self._check_schedule_options(schedule)
        self._check_window(schedule)
        for name in ("include", "exclude"):
            object.__setattr__(self, name, parse_selector(getattr(self, name)))

    # --- the checks ----------------------------------------------------------------------------
    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # a checked, normalised value (frozen dataclass)

    def _check_strength(self, schedule) -> None:
        for name in ("l1", "final_threshold", "target_sops"):
            if getattr(self, name) is not None:
                self._set(name, _positive(getattr(self, name), name))
        if self.target_energy is not None:
            self._set("target_energy", _positive(self.target_energy, "target_energy", " (pJ per sample)"))
        if self.target_sparsity is not None:
            value = _number(self.target_sparsity, "target_sparsity")
            if not 0 < value < 1:
                raise ValueError(f"target_sparsity must be a fraction in (0, 1), e.g. 0.9, got {value}")
            self._set("target_sparsity", value)
        given = self.strengths()
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(STRENGTHS)}, not {' and '.join(given)}: each sets the others")
        refused = [name for name in given if name not in schedule.strengths]
        if refused:
            takes = " or ".join(schedule.strengths) or "no strength (it learns its thresholds)"
            raise ValueError(f"{refused[0]} does not apply to schedule {self.schedule!r}, which takes {takes}")
        if schedule.strengths and not given:
            raise ValueError(f"schedule {self.schedule!r} needs {' or '.join(schedule.strengths)}")

    def _check_costs(self) -> None:
        if self.cost is not None:
            if self.cost not in COSTS:
                raise ValueError(f"cost must be one of {COSTS}, got {self.cost!r}")
            if self.schedule != "lats" or self.l1 is None:
                raise ValueError(
                    "cost weighs the L1 term of an explicit l1 with schedule 'lats' (a target_sops or "
                    "target_energy weighs its own)"
                )
        if self.cost_weighting not in COST_WEIGHTINGS:
            raise ValueError(f"cost_weighting must be one of {', '.join(COST_WEIGHTINGS)}, got {self.cost_weighting!r}")
        if self.energy_preset is not None:
            if self.measure != "energy":
                raise ValueError("energy_preset prices energy: it applies to target_energy and cost 'energy' only")
            if not isinstance(self.energy_preset, EnergyPreset) and self.energy_preset not in ENERGY_PRESETS:
                raise ValueError(
                    f"energy_preset must be one of {', '.join(ENERGY_PRESETS)} or an EnergyPreset, "
                    f"got {self.energy_preset!r}"
                )

    def _check_schedule_options(self, schedule) -> None:
        if self.beta is not None or schedule.takes_beta:
            if self.beta is None:
                raise ValueError(f"schedule {self.schedule!r} needs beta > 0 (beta = 1 is LATS, beta < 1 prunes early)")
            if not schedule.takes_beta:
                raise ValueError(f"beta applies to schedule 'pgh' only, not {self.schedule!r}")
            beta = _number(self.beta, "beta")
            if not (beta > 0 and math.isfinite(beta)):
                raise ValueError(
                    f"beta must be a finite number > 0 (beta = 1 is LATS, beta < 1 prunes early), got {beta}"
                )
            self._set("beta", beta)
        if self.s_init is not None:
            if self.schedule != "learnable":
                raise ValueError(f"s_init applies to schedule 'learnable' only, not {self.schedule!r}")
            self._set("s_init", _number(self.s_init, "s_init"))
        if self.retarget_every is not None:
            _index(self.retarget_every, "retarget_every", 1)
            if not (self.controlled or self.schedule == "gmp"):
                raise ValueError(
                    "retarget_every applies to a target (target_sparsity, target_sops, target_energy), a cost, "
                    "or schedule 'gmp'"
                )

    def _check_window(self, schedule) -> None:
        _index(self.start, "start", 0)
        if self.end is not None:
            _index(self.end, "end", 1)
        if not schedule.windowed:
            if self.start != 0 or self.end is not None:
                raise ValueError(f"schedule {self.schedule!r} has no pruning window: drop start and end")
            return
        if self.end is not None and self.end <= self.start:
            raise ValueError(
                f"the pruning window is empty: end ({self.end}) must be > start ({self.start}) ({self.unit})"
            )
        if self.end is None and schedule.needs_end:
            raise ValueError(
                f"schedule {self.schedule!r} needs the end of the pruning window: give end (end_step or "
                "total_steps to the pruner)"
            )
        if self.cost is not None and self.end is None and self.retarget_every is None:
            raise ValueError(
                "cost re-measures the costs every retarget_every steps: give retarget_every, or the window's end "
                "(then 32 times over the window)"
            )

    # --- what it says ----------------------------------------------------------------------------
    def strengths(self) -> list[str]:
        """The strength arguments given (at most one once checked)."""
        return [name for name in STRENGTHS if getattr(self, name) is not None]

    @property
    def target(self) -> float | None:
        """The target given (sparsity, SOPs or pJ per sample), or None."""
        return next((getattr(self, n) for n in TARGETS if getattr(self, n) is not None), None)

    @property
    def measure(self) -> str | None:
        """What the controller counts: ``"sparsity"``, ``"sops"``, ``"energy"`` (a target or a cost),
        or None (no controller)."""
        for name in TARGETS:
            if getattr(self, name) is not None:
                return None if self.schedule == "gmp" else name.removeprefix("target_")
        return self.cost

    @property
    def controlled(self) -> bool:
        """Whether an :class:`~snn_lats.pruning.L1Controller` sets λ (a target) or the layer weights
        (a cost)."""
        return self.measure is not None

    @property
    def cost_exponent(self) -> float:
        """``p`` of ``cost_weighting``: layer ``l``'s threshold grows ``∝ c_l^p``."""
        return COST_WEIGHTINGS[self.cost_weighting]

    def in_steps(self, steps_per_epoch: int) -> PruningSpec:
        """This spec with its window in optimizer steps (a spec in steps is returned as is)."""
        if self.unit == "steps":
            return self
        _index(steps_per_epoch, "steps_per_epoch", 1)
        end = None if self.end is None else self.end * steps_per_epoch
        return dataclasses.replace(self, start=self.start * steps_per_epoch, end=end, unit="steps")

    def attach(self, model: nn.Module) -> dict[str, nn.Module]:
        """Attach the parametrizations a pruner of this spec attaches, without an optimizer (to
        load a checkpoint's θ, thresholds and masks strictly). Returns the pruned modules."""
        from snn_lats.pruning.parametrization import attach

        return attach(
            model,
            self.include,
            self.exclude,
            self.dense_first_last,
            self.gradient,
            learnable=self.schedule == "learnable",
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain values (layer types by name, an energy preset by name or as its three
        fields), e.g. for export.json."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["include"], values["exclude"] = _selector_record(self.include), _selector_record(self.exclude)
        if isinstance(self.energy_preset, EnergyPreset):
            values["energy_preset"] = self.energy_preset._asdict()
        return values
