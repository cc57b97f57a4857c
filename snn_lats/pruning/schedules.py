"""Threshold schedules of the soft-threshold family, and the closed forms of the cosine-lr ones.

``x ∈ [0, 1]`` is the progress through the pruning window; each ``*_fraction`` returns ``d(x)/D``.
Every schedule implies an L1 coefficient ``λ_t = Δd_t / η_t`` (ISTA); they differ only in how λ
moves. The lr-driven schedules (``lats``, ``pgh``) need no closed form: the pruner accumulates the
learning rate the optimizer actually applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "SCHEDULES",
    "LR_DRIVEN",
    "WINDOWLESS",
    "PROGRESS_FRACTIONS",
    "pruner_arguments",
    "slats_fraction",
    "pgh_fraction",
    "stds_sine_fraction",
    "stds_linear_fraction",
    "check_beta",
    "check_number",
    "check_step_index",
]

#: Schedule names accepted by :class:`~snn_lats.pruning.SoftThresholdPruner`.
SCHEDULES: tuple[str, ...] = ("lats", "slats", "pgh", "stds-sine", "stds-linear", "constant", "learnable")

#: Schedules whose threshold follows the applied learning rate: ``d += λ_t · η_t``.
LR_DRIVEN: tuple[str, ...] = ("lats", "pgh")

#: Schedules without a pruning window: ``d`` is set from step 0 (``constant``) or learned.
WINDOWLESS: tuple[str, ...] = ("constant", "learnable")


def _check_progress(x: float) -> float:
    x = float(x)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"progress x must be in [0, 1], got {x}")
    return x


def check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_step_index(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"beta must be a number > 0, got {beta!r}")
    beta = float(beta)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0 (beta = 1 is LATS), got {beta}")
    return beta


def stds_linear_fraction(x: float) -> float:
    """STDS, linear: ``d/D = x``."""
    return _check_progress(x)


def stds_sine_fraction(x: float) -> float:
    """STDS, sine: ``d/D = (1 − cos πx) / 2``."""
    return (1.0 - math.cos(math.pi * _check_progress(x))) / 2.0


def slats_fraction(x: float) -> float:
    """S-LATS, LATS under a cosine lr ``η ∝ 1 + cos πx`` in closed form: ``d/D = x + sin(πx)/π``."""
    x = _check_progress(x)
    return x + math.sin(math.pi * x) / math.pi


def _pgh_integral(x: float, a: float) -> float:
    """``∫_0^x (1 + cos πs) e^{a s} ds`` with ``a = ln β``; exact at ``a = 0`` (no division by a)."""
    z = a * x
    # (e^{ax} − 1)/a written as x · expm1(z)/z, which is accurate near and at z = 0.
    first = x * (math.expm1(z) / z if z != 0.0 else 1.0)
    # ∫ e^{as} cos πs ds = Re[(e^{(a+iπ)x} − 1)/(a + iπ)]
    second = (math.exp(z) * (a * math.cos(math.pi * x) + math.pi * math.sin(math.pi * x)) - a) / (a * a + math.pi**2)
    return first + second


def pgh_fraction(x: float, beta: float) -> float:
    """PGH (homotopy) under a cosine lr: ``λ(x) ∝ β^x``, so

    ``d(x)/D = ∫_0^x (1 + cos πs) β^s ds / ∫_0^1 (1 + cos πs) β^s ds``.

    ``β < 1`` front-loads the threshold growth (early pruning); ``β = 1`` is S-LATS.
    """
    x = _check_progress(x)
    a = math.log(check_beta(beta))
    return _pgh_integral(x, a) / _pgh_integral(1.0, a)


#: Closed forms ``d(x)/D`` of the progress-driven schedules, by name.
PROGRESS_FRACTIONS = {
    "slats": slats_fraction,
    "stds-sine": stds_sine_fraction,
    "stds-linear": stds_linear_fraction,
}


def pruner_arguments(
    schedule: str,
    *,
    l1: float | None = None,
    final_threshold: float | None = None,
    target_sparsity: float | None = None,
    target_sops: float | None = None,
    target_energy: float | None = None,
    beta: float | None = None,
    start_step: int = 0,
    end_step: int | None = None,
    planned_lrs: Sequence[float] | Callable[[int], float] | None = None,
    **rest: Any,
) -> dict[str, Any]:
    """Keyword arguments of ``SoftThresholdPruner(model, optimizer, **kwargs)`` for ``schedule``
    and its strength: the L1 coefficient ``l1`` (λ), the final threshold ``final_threshold`` (D)
    or a target: ``target_sparsity``, ``target_sops`` (per sample) or ``target_energy`` (pJ per
    sample).

    The pruning window ``[start_step, end_step)`` is passed on, except for the schedules without
    one (``WINDOWLESS``: ``"constant"``, ``"learnable"``), where it is dropped. ``planned_lrs``,
    the planned lr of every step, becomes ``lr_schedule`` of the lr-driven schedules
    (``LR_DRIVEN``) when they need it, i.e. with ``final_threshold`` (``λ = D / Σ planned η``)
    or a target; elsewhere it is not used. ``rest`` (``dense_first_last``, ``gradient``,
    ``layer_scale``, ``energy_preset``, ``cost``, ...) is passed on as is, ``None`` values
    dropped; the pruner checks everything.
    """
    if "lr_schedule" in rest:
        raise TypeError("pruner_arguments takes the planned lrs as planned_lrs, not lr_schedule")
    kwargs: dict[str, Any] = {"schedule": schedule, **{k: v for k, v in rest.items() if v is not None}}
    if schedule not in WINDOWLESS:
        kwargs.update(start_step=start_step, end_step=end_step)
    targets = {"target_sparsity": target_sparsity, "target_sops": target_sops, "target_energy": target_energy}
    given = {"l1": l1, "final_threshold": final_threshold, "beta": beta, **targets}
    kwargs.update({name: value for name, value in given.items() if value is not None})
    lr_needed = final_threshold is not None or any(v is not None for v in targets.values())
    if schedule in LR_DRIVEN and lr_needed and planned_lrs is not None:
        kwargs["lr_schedule"] = planned_lrs if callable(planned_lrs) else list(planned_lrs)
    return kwargs
