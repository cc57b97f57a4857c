"""The schedules of the soft-threshold family, as small objects, and the closed forms of the cosine-lr ones.

``x ∈ [0, 1]`` is the progress through the pruning window; each ``*_fraction`` returns ``d(x)/D``.
Every schedule implies an L1 coefficient ``λ_t = Δd_t / η_t`` (ISTA); they differ only in how λ
moves. The lr-driven schedules (``lats``, ``pgh``) need no closed form: the pruner accumulates the
learning rate the optimizer actually applied, weighted by :meth:`Schedule.lr_weight`.

A schedule says what it takes (:attr:`Schedule.strengths`, :attr:`Schedule.takes_beta`), what window
it needs (:attr:`Schedule.windowed`, :attr:`Schedule.needs_end`) and where the threshold is
(:meth:`Schedule.threshold`), as ``torch.ao.pruning``'s schedulers say their sparsity level.
:class:`GMP` is the magnitude baseline in the same frame: a hard threshold at the cubic sparsity.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

__all__ = [
    "GMP",
    "LATS",
    "PGH",
    "SCHEDULES",
    "SLATS",
    "STDSLinear",
    "STDSSine",
    "Constant",
    "Learnable",
    "Schedule",
    "check_number",
    "gmp_sparsity",
    "pgh_fraction",
    "schedule_class",
    "slats_fraction",
    "stds_linear_fraction",
    "stds_sine_fraction",
]


def _check_progress(x: float) -> float:
    x = float(x)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"progress x must be in [0, 1], got {x}")
    return x


def check_number(value: Any, name: str) -> float:
    """``value`` as a float, refusing anything but a finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"beta must be a number > 0, got {beta!r}")
    beta = float(beta)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0 (beta = 1 is LATS), got {beta}")
    return beta


# --- closed forms ----------------------------------------------------------------------------
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
    a = math.log(_check_beta(beta))
    return _pgh_integral(x, a) / _pgh_integral(1.0, a)


def gmp_sparsity(x: float, final: float) -> float:
    """Gradual magnitude pruning (Zhu & Gupta, 2017): ``s(x) = s_f·(1 − (1 − x)³)``."""
    return final * (1.0 - (1.0 - _check_progress(x)) ** 3)


# --- the schedules ---------------------------------------------------------------------------
class Schedule:
    """A schedule: how the global threshold ``d`` (or, for :class:`GMP`, the sparsity) moves over
    the pruning window. :class:`~snn_lats.pruning.SoftThresholdPruner` builds one from its
    :class:`~snn_lats.pruning.PruningSpec` and asks it, never the schedule's name."""

    name: ClassVar[str]
    #: the strengths it takes (``PruningSpec`` fields), exactly one of which must be given
    strengths: ClassVar[tuple[str, ...]] = ("final_threshold",)
    #: whether it has a pruning window ``[start, end)`` (False: set from step 0, or learned)
    windowed: ClassVar[bool] = True
    #: whether it needs the window's end whatever its strength (progress through the window)
    needs_end: ClassVar[bool] = True
    #: ``d += λ·w(x)·η_t``: driven by the learning rates the optimizer applied
    lr_driven: ClassVar[bool] = False
    takes_beta: ClassVar[bool] = False
    #: the thresholds are the layers' own parameters (STR), trained by the optimizer
    learned: ClassVar[bool] = False
    #: a hard threshold on a mask (magnitude pruning), not a soft threshold
    magnitude: ClassVar[bool] = False

    def __init__(self, final_threshold: float | None = None, **_: Any) -> None:
        self.final_threshold = final_threshold

    def lr_weight(self, x: float) -> float:
        """``w(x)``, the factor of the applied lr in ``Δd`` at window progress ``x`` (lr-driven)."""
        return 1.0

    def threshold(self, x: float, lr_sum: float) -> float:
        """The global threshold at window progress ``x`` (clamped to [0, 1]), ``lr_sum`` being
        ``Σ w·η`` applied in the window so far (lr-driven schedules)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LATS(Schedule):
    """LATS: ``d_t = λ·Σ_{i<t} η_i``, a constant L1 coefficient (ISTA on ``L + λ‖w‖₁``). ``l1``
    gives λ; ``final_threshold`` D gives ``λ = D / Σ planned η`` (the pruner computes it)."""

    name = "lats"
    strengths = ("l1", "final_threshold", "target_sparsity", "target_sops", "target_energy")
    needs_end = False
    lr_driven = True

    def __init__(self, l1: float | None = None, final_threshold: float | None = None, **_: Any) -> None:
        super().__init__(final_threshold)
        self.l1 = l1
        self.planned_sum: float | None = None  # Σ w·η planned over the window (final_threshold)

    def threshold(self, x: float, lr_sum: float) -> float:
        if self.final_threshold is not None:
            return self.final_threshold * (lr_sum / self.planned_sum)
        return self.l1 * lr_sum


class PGH(LATS):
    """PGH (homotopy): ``d += λ0·β^x·η_t``; ``β < 1`` prunes early, ``β = 1`` is LATS."""

    name = "pgh"
    strengths = ("l1", "final_threshold")
    needs_end = True
    takes_beta = True

    def __init__(self, beta: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = _check_beta(beta)

    def lr_weight(self, x: float) -> float:
        return self.beta**x


class _Progress(Schedule):
    """``d = D·f(x)`` with the closed form ``f`` of the schedule."""

    fraction: ClassVar[Any]

    def threshold(self, x: float, lr_sum: float) -> float:
        return self.final_threshold * type(self).fraction(min(max(x, 0.0), 1.0))


class SLATS(_Progress):
    """S-LATS: LATS under a cosine lr in closed form, ``d/D = x + sin(πx)/π``."""

    name = "slats"
    fraction = staticmethod(slats_fraction)


class STDSSine(_Progress):
    """STDS, sine: ``d/D = (1 − cos πx)/2``."""

    name = "stds-sine"
    fraction = staticmethod(stds_sine_fraction)


class STDSLinear(_Progress):
    """STDS, linear: ``d/D = x``."""

    name = "stds-linear"
    fraction = staticmethod(stds_linear_fraction)


class Constant(Schedule):
    """Pruning at initialisation: ``d = D`` from step 0 (θ starts at ``sign(w0)(|w0| + D)``)."""

    name = "constant"
    windowed = False
    needs_end = False

    def threshold(self, x: float, lr_sum: float) -> float:
        return self.final_threshold


class Learnable(Schedule):
    """STR: ``d = sigmoid(s)`` per layer, ``s`` trained by the optimizer."""

    name = "learnable"
    strengths = ()
    windowed = False
    needs_end = False
    learned = True


class GMP(Schedule):
    """Gradual magnitude pruning (Zhu & Gupta, 2017), the baseline every pruning paper compares
    with: global masks ``1[|θ| > d]`` raised to the sparsity :func:`gmp_sparsity` every
    ``retarget_every`` steps of the window, ``d`` being the magnitude at that sparsity; the masks
    only grow (a pruned weight stays pruned), and after the window they are fixed."""

    name = "gmp"
    strengths = ("target_sparsity",)
    magnitude = True

    def __init__(self, target_sparsity: float, **_: Any) -> None:
        super().__init__()
        self.target_sparsity = target_sparsity

    def sparsity(self, x: float) -> float:
        """The sparsity the masks reach at window progress ``x``."""
        return gmp_sparsity(min(max(x, 0.0), 1.0), self.target_sparsity)


#: Every schedule, by name (``PruningSpec.schedule``, ``--prune``).
_CLASSES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (LATS, SLATS, PGH, STDSSine, STDSLinear, Constant, Learnable, GMP)
}
#: Schedule names accepted by :class:`~snn_lats.pruning.SoftThresholdPruner`.
SCHEDULES: tuple[str, ...] = tuple(_CLASSES)


def schedule_class(name: str) -> type[Schedule]:
    """The :class:`Schedule` subclass named ``name``; ValueError for an unknown name."""
    if name not in _CLASSES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
    return _CLASSES[name]
