"""``SoftThresholdPruner``: drives the layer thresholds of a soft-threshold-pruned model.

Why one module of ~730 lines: the pruner is the one object users hold (as torch.ao.pruning's
sparsifiers are); the rules live in :mod:`.spec`, the schedules in :mod:`.schedules`, the
targets in :mod:`.controller` and :mod:`.costs`, old states in :mod:`.state`. What is left here is
the step order a resume must repeat exactly: schedule, controller, costs, mask freeze."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from snn_lats.estimators.energy import EnergyPreset
from snn_lats.pruning.controller import RE_ESTIMATES, L1Controller
from snn_lats.pruning.costs import CostMeter, check_reachable
from snn_lats.pruning.parametrization import Selector, SoftThreshold, attach, finalize, select_layers, soft_threshold_of
from snn_lats.pruning.report import SparsityReport, sparsity_report
from snn_lats.pruning.schedules import check_number, schedule_class
from snn_lats.pruning.spec import PruningSpec
from snn_lats.pruning.state import STATE_VERSION, upgrade_state

__all__ = ["SoftThresholdPruner"]


def _check_steps(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_reachable_sparsity(target: float, sizes: Mapping[str, int], scale: Mapping[str, float]) -> None:
    """Refuse a target sparsity beyond the weights of the layers with ``layer_scale > 0`` (the
    others are never pruned). ``sizes``: the number of weights of every pruned layer."""
    total = sum(sizes.values())
    prunable = sum(n for name, n in sizes.items() if scale[name] > 0)
    if target * total > prunable:
        raise ValueError(
            f"target_sparsity={target} cannot be reached: the layers with layer_scale > 0 "
            f"hold {prunable} of the {total} pruned weights ({prunable / total:.2%})"
        )


def _resolve_spec(spec, given: dict, total_steps, lr_schedule) -> PruningSpec:
    """The pruner's :class:`PruningSpec`: ``spec`` as given (then no other pruning argument may
    be), or built from the keyword arguments ``given``, the window's end defaulting to
    ``total_steps``, then to the length of a planned lr sequence."""
    if spec is not None:
        if not isinstance(spec, PruningSpec):
            raise TypeError(f"spec must be a PruningSpec, got {type(spec).__name__}")
        defaults = {name: p.default for name, p in inspect.signature(SoftThresholdPruner).parameters.items()}
        defaults.update(start=defaults["start_step"], end=defaults["end_step"])
        other = [name for name, value in given.items() if value != defaults[name]]
        if other or total_steps is not None:
            raise TypeError(f"give spec or the pruning arguments it holds, not both ({', '.join(other)})")
        if spec.unit != "steps":
            raise ValueError(
                f"the pruner counts optimizer steps: give spec.in_steps(steps_per_epoch), not a spec in {spec.unit}"
            )
        return spec
    end = given["end"]
    if total_steps is not None:
        _check_steps(total_steps, "total_steps")
        if end is not None and _check_steps(end, "end_step") > total_steps:
            raise ValueError(f"end_step ({end}) must be <= total_steps ({total_steps})")
    if end is None and schedule_class(given["schedule"]).windowed:
        end = total_steps
        if end is None and isinstance(lr_schedule, Sequence) and not isinstance(lr_schedule, str):
            end = len(lr_schedule)
    return PruningSpec(**{**given, "end": end})  # checks every rule


class SoftThresholdPruner:
    """Soft-threshold pruning ``w = S_d(θ) = sign(θ)·max(|θ| − d, 0)`` driven by a threshold schedule.

    Attaches the reparameterisation to the selected weights (see :func:`attach`) and moves the
    thresholds ``d``. Call :meth:`step` once per iteration, right after ``optimizer.step()``.
    A "step" is an optimizer step actually applied: the pruner sees them through
    ``optimizer.register_step_post_hook``, so a step that AMP's ``GradScaler`` skipped does not
    advance anything, and the order of ``scheduler.step()`` and ``pruner.step()`` is free.

    Schedules (``SCHEDULES``); ``x`` is the progress through the window
    ``[start_step, end_step)`` and ``η_t`` the lr the optimizer applied at step ``t``:

    - ``"lats"``: ``d += λ·η_t``: a constant L1 coefficient λ, i.e. ISTA on ``L + λ‖w‖₁``. Give
      ``l1=λ``, or ``final_threshold=D`` with the planned lrs ``lr_schedule`` (a sequence of
      per-step lrs, or a callable ``step -> lr``), and then ``λ = D / Σ_{t in window} η_t``: d
      reaches D exactly at ``end_step`` when the applied lrs are the planned ones, whatever
      the schedule (warm-up, restarts, steps).
    - ``"pgh"``: ``d += λ0·β^{x_t}·η_t`` (homotopy; ``beta > 0``; ``β < 1`` prunes early;
      ``β = 1`` is ``"lats"``). ``l1`` gives λ0, or ``final_threshold`` + ``lr_schedule`` fixes it.
    - ``"slats"``: ``d/D = x + sin(πx)/π`` (LATS under a cosine lr, closed form).
    - ``"stds-sine"``: ``d/D = (1 − cos πx)/2``; ``"stds-linear"``: ``d/D = x``.
    - ``"constant"``: ``d = D`` from step 0 (pruning at initialisation); θ starts as
      ``sign(w0)(|w0| + D)`` so the initial function is unchanged.
    - ``"learnable"``: STR, ``d = sigmoid(s)`` per layer, ``s`` (init ``s_init``) trained by the
      optimizer in a new param group: build lr schedulers after the pruner.
    - ``"gmp"``: gradual magnitude pruning (Zhu & Gupta), the baseline: with ``target_sparsity=s``,
      global masks ``1[|θ| > d]`` raised to ``s·(1 − (1 − x)³)`` every ``retarget_every`` window
      steps and to ``s`` at ``end_step``; ``w = θ ⊙ M``, no gradient through a mask's zeros.

    The settings can also come as one :class:`PruningSpec` (``spec=``, its window in steps), which
    checks every rule; the keyword arguments build one (``pruner.spec``).

    Target sparsity (``schedule="lats"``, ``target_sparsity=s``, with ``lr_schedule`` and
    ``end_step``/``total_steps``, instead of ``l1``/``final_threshold``): a :class:`L1Controller`
    re-picks λ every ``retarget_every`` window steps (default: ``RE_ESTIMATES`` = 32 times over the
    window) so that the sparsity follows the trajectory of constant-λ LATS, and at ``end_step``
    sets the thresholds to the exact quantile of the final θ: the window ends at ``s`` (up to
    ties). Between re-estimates λ is constant (ISTA on a fixed ``L + λ‖w‖₁``) and ``λ ≥ 0``.
    Guards keep the threshold under ``8·D_0`` and the final correction under 2× (warnings say
    when they hold); docs/concepts.md, "Target sparsity".

    Cost targets (``target_sops=S`` per sample, or ``target_energy=E`` in pJ per sample with
    ``energy_preset``): the L1 term becomes ``λ·Σ_l c_l‖w_l‖₁``, ``c_l = √e_l`` for
    ``cost_weighting="sqrt"`` (the default; ``e_l`` for ``"linear"``, 1 for ``"uniform"``), ``e_l``
    the mean cost per sample of one of layer ``l``'s weights in the exact synaptic-operation
    count, measured on the training forwards by a :class:`CostMeter` at every re-estimate; the
    same controller lands the training count at ``end_step`` on ``S`` (or ``E``).
    ``cost="sops"``/``"energy"`` with an explicit ``l1`` is the weighted objective without a
    target. :meth:`check_target` refuses an unreachable target before training
    (docs/concepts.md, "Pruning to an energy budget").

    After ``end_step`` (every windowed schedule) the thresholds are fixed and, with
    ``freeze_mask=True`` (the default), so are the zeros: at the first step past the window θ
    becomes ``S_d(θ)`` and a mask keeps the pruned weights at zero while the others train as plain
    weights, the fixed-mask fine-tuning of gradual magnitude pruning; a target sparsity holds to
    the end of training. With ``freeze_mask=False`` the straight-through gradient may still regrow
    weights, or let them die.

    Under ``torch.optim.Adam``/``AdamW`` the lr-driven schedules ("lats", "pgh") move each weight's
    own threshold by ``λ`` times the step Adam applied to it: ``Δd_i = λ·η_t/(√v̂_t,i + ε)``, the
    proximal step of ``L + λ‖w‖₁`` in Adam's diagonal metric, so constant-λ LATS converges to the
    LASSO of λ (β₁ and β₂ change the path, not the fixed point). The layer keeps a scalar ``d``
    (``thresholds()``, ``threshold``: ``λ·Σ η``) and a per-weight ``preconditioner`` r, the
    lr-weighted mean of ``1/(√v̂ + ε)``; weight i's threshold is ``d·r_i``. The targets act on the
    scalar, from the first window step on (r exists from then). docs/concepts.md, "LATS under Adam".

    With param groups of different lrs, each layer follows its own group's lr: one λ, one
    objective, so a layer whose lr is ``k×`` the planned one reaches ``k·D``. ``layer_scale``
    (dict or callable, name -> factor) multiplies a layer's threshold. Steps are counted from
    the pruner's construction; the threshold is 0 before ``start_step`` and stops growing at
    ``end_step``.

    Example (LATS to ``D = 0.05`` under warm-up + cosine)::

        >>> import math, torch
        >>> from torch import nn
        >>> from snn_lats.pruning import SoftThresholdPruner
        >>> model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> warmup, steps = 5, 50
        >>> def planned_lr(t):  # what the scheduler below will apply at step t
        ...     if t < warmup:
        ...         return 0.1 * (0.1 + 0.9 * t / warmup)
        ...     return 0.1 * (1 + math.cos(math.pi * (t - warmup) / (steps - warmup))) / 2
        >>> pruner = SoftThresholdPruner(model, optimizer, schedule="lats", final_threshold=0.05,
        ...                              total_steps=steps, lr_schedule=planned_lr)
        >>> scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [
        ...     torch.optim.lr_scheduler.LinearLR(optimizer, 0.1, 1.0, total_iters=warmup),
        ...     torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - warmup)],
        ...     milestones=[warmup])
        >>> x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
        >>> for step in range(steps):
        ...     optimizer.zero_grad()
        ...     nn.functional.cross_entropy(model(x), y).backward()
        ...     optimizer.step()
        ...     scheduler.step()
        ...     advanced = pruner.step()
        >>> round(pruner.threshold, 12), round(pruner.implied_l1() / pruner.l1, 6)
        (0.05, 1.0)
        >>> report = pruner.sparsity()   # a SparsityReport: print(report), report.to_json()
        >>> model = pruner.finalize()    # plain weights again, S_d(θ) baked in
    """

    # One class of about 700 lines: its optimizer hooks, thresholds, masks and state must agree
    # step by step; the rules live in PruningSpec, the schedules in schedules.py, λ in controller.py.
    # Long (~90 lines): the public keyword API resolved to a PruningSpec, then the layers attached.
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: str = "lats",
        *,
        l1: float | None = None,
        final_threshold: float | None = None,
        total_steps: int | None = None,
        lr_schedule: Sequence[float] | Callable[[int], float] | None = None,
        start_step: int = 0,
        end_step: int | None = None,
        beta: float | None = None,
        s_init: float | None = None,
        layer_scale: Mapping[str, float] | Callable[[str], float] | None = None,
        include: Selector = None,
        exclude: Selector = None,
        dense_first_last: bool = False,
        gradient: str = "straight-through",
        target_sparsity: float | None = None,
        target_sops: float | None = None,
        target_energy: float | None = None,
        energy_preset: str | EnergyPreset | None = None,
        cost: str | None = None,
        cost_weighting: str = "sqrt",
        freeze_mask: bool = True,
        retarget_every: int | None = None,
        spec: PruningSpec | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        given = dict(
            schedule=schedule, l1=l1, final_threshold=final_threshold, beta=beta, s_init=s_init, include=include,
            exclude=exclude, dense_first_last=dense_first_last, gradient=gradient, target_sparsity=target_sparsity,
            target_sops=target_sops, target_energy=target_energy, energy_preset=energy_preset, cost=cost,
            cost_weighting=cost_weighting, freeze_mask=freeze_mask, retarget_every=retarget_every,
            start=start_step, end=end_step,
        )  # fmt: skip
        self.spec = spec = _resolve_spec(spec, given, total_steps, lr_schedule)
        self._schedule = schedule_class(spec.schedule)(
            l1=spec.l1, final_threshold=spec.final_threshold, beta=spec.beta, target_sparsity=spec.target_sparsity
        )
        self.start_step, self.end_step = spec.start, spec.end
        planned = self._plan(self._check_lr_schedule(lr_schedule))

        # Which weights: selected and checked before anything is modified.
        candidates = select_layers(model, spec.include, spec.exclude, spec.dense_first_last)
        self._scale = scale = self._layer_scales(layer_scale, list(candidates))
        if spec.target_sparsity is not None:
            _check_reachable_sparsity(spec.target_sparsity, {n: m.weight.numel() for n, m in candidates.items()}, scale)
        # Adam/AdamW: a weight's threshold grows by λ times the step Adam applied to it (per weight).
        self._preconditioned = self._schedule.lr_driven and isinstance(optimizer, torch.optim.Adam)
        self._group_of = self._param_groups(optimizer, candidates)
        self._ref_group = next(iter(self._group_of.values())) if self._group_of else 0
        self._controller, self._meter = self._controls(model, candidates, planned)
        window = None if self.end_step is None else self.end_step - self.start_step
        self._mask_every = (spec.retarget_every or max(1, window // RE_ESTIMATES)) if self._schedule.magnitude else None

        learned = self._schedule.learned
        self.model = model
        self.optimizer = optimizer
        s_init = -10.0 if spec.s_init is None else spec.s_init
        self.layers = attach(model, spec.include, spec.exclude, spec.dense_first_last, spec.gradient, learned, s_init)
        self._params: dict[str, SoftThreshold] = {n: soft_threshold_of(m) for n, m in self.layers.items()}
        if self._preconditioned:  # r = 1 until the first window step replaces it (d is 0 until then)
            for name, p in self._params.items():
                p.set_preconditioner(torch.ones_like(self.layers[name].parametrizations.weight.original))
        if learned:
            optimizer.add_param_group({"params": [p.threshold_logit for p in self._params.values()]})

        self.step_count = 0
        self._lr_sum = [0.0] * len(optimizer.param_groups)
        self._pending: list[list[float]] = []
        self._implied = math.nan
        self._finalized = False
        self._last_threshold = 0.0
        self._estimate: dict[str, float] | None = None
        if not self._schedule.windowed and not learned:  # constant: d = D from step 0
            self._apply_thresholds()
            with torch.no_grad():  # θ0 = sign(w0)(|w0| + D) through SoftThreshold.right_inverse
                for module in self.layers.values():
                    module.weight = module.parametrizations.weight.original.detach().clone()
        if not self._schedule.windowed:
            self._last_threshold = self.threshold
        if self._controller is not None:
            self._control()  # λ for the first stretch when the window starts at step 0; the meter armed
        self._hooks = [
            optimizer.register_step_pre_hook(self._before_optimizer_step),
            optimizer.register_step_post_hook(self._after_optimizer_step),
        ]

    def _plan(self, lr_schedule) -> list[float]:
        """The planned ``w·η`` of every window step (empty without ``lr_schedule``), and λ of a
        final threshold: ``D / Σ planned``."""
        spec = self.spec
        self._planned_sum = None
        planned: list[float] = []
        if lr_schedule is not None:
            planned = self._planned_lrs(lr_schedule)
            self._planned_sum = sum(planned)
            if not self._planned_sum > 0:
                raise ValueError("lr_schedule plans no learning rate over the pruning window (sum of lrs is 0)")
        self._l1 = spec.l1
        if self._schedule.lr_driven and spec.final_threshold is not None:
            self._schedule.planned_sum = self._planned_sum
            self._l1 = spec.final_threshold / self._planned_sum
        return planned

    def _controls(self, model, candidates, planned) -> tuple[L1Controller | None, CostMeter | None]:
        """The controller of a target or a cost, and the meter of a cost (None where not needed)."""
        spec = self.spec
        if not spec.controlled:
            return None, None
        controller = L1Controller(
            planned if spec.target is not None else None,
            window=None if self.end_step is None else self.end_step - self.start_step,
            layers={name: (self._group_of[name], self._scale[name]) for name in candidates},
            ref_group=self._ref_group,
            measure=spec.measure,
            target=spec.target,
            l1=self._l1 if spec.target is None else None,
            retarget_every=spec.retarget_every,
            start_step=self.start_step,
            exponent=spec.cost_exponent,
            first=1 if self._preconditioned else 0,
        )
        meter = None if spec.measure == "sparsity" else CostMeter(model, candidates, spec.measure, spec.energy_preset)
        return controller, meter

    @property
    def schedule(self) -> str:
        """The schedule's name (``spec.schedule``)."""
        return self.spec.schedule

    @property
    def final_threshold(self) -> float | None:
        """D of the schedules set by a final threshold (None otherwise)."""
        return self.spec.final_threshold

    @property
    def beta(self) -> float | None:
        """β of ``"pgh"`` (None otherwise)."""
        return self.spec.beta

    # --- λ, the targets and the costs ----------------------------------------------------------
    @property
    def l1(self) -> float | None:
        """λ of "lats" (λ0 of "pgh"): given, or final_threshold / Σ planned lrs, or the controller's
        current estimate (a target); None for the other schedules."""
        return self._l1 if self._controller is None else self._controller.l1

    def _target(self, measure: str) -> float | None:
        c = self._controller
        return c.target if c is not None and c.measure == measure else None

    @property
    def target_sparsity(self) -> float | None:
        """The sparsity the window ends at (None without target_sparsity)."""
        return self._target("sparsity")

    @property
    def target_sops(self) -> float | None:
        """The synaptic operations per sample the window ends at (None without target_sops)."""
        return self._target("sops")

    @property
    def target_energy(self) -> float | None:
        """The energy per sample (pJ) the window ends at (None without target_energy)."""
        return self._target("energy")

    @property
    def cost(self) -> str | None:
        """What the L1 term weighs: ``"sops"``, ``"energy"`` (pJ), or None (plain L1)."""
        return None if self._meter is None else self._meter.cost

    @property
    def measuring(self) -> bool:
        """Whether the next training forward is measured: the cost meter's hooks are attached.
        Run that forward eagerly; ``torch.compile`` would trace the hooks (a graph break per layer)."""
        return self._meter is not None and self._meter.armed

    @property
    def energy_preset(self) -> EnergyPreset | None:
        """The energy of one AC and one MAC that ``cost="energy"`` prices weights with (else None)."""
        return None if self._meter is None else self._meter.preset

    @property
    def retarget_every(self) -> int | None:
        """Window steps between the controller's re-estimates of λ or of the costs (None without a
        target or cost)."""
        return None if self._controller is None else self._controller.retarget_every

    def layer_costs(self) -> dict[str, float] | None:
        """``c_l`` of every pruned layer, the weight of its L1 term in force: its ``layer_scale``
        times its weights' mean cost per sample (SOPs or pJ) at the last re-measurement. None
        without a cost."""
        return None if self._meter is None else self._controller.factors()

    @property
    def cost_estimate(self) -> dict[str, float] | None:
        """What the last re-measurement found, per sample of its training forwards (SOPs or pJ):
        ``step``, ``samples``, ``dense`` (the network unpruned), ``pruned`` (with the thresholds
        the re-estimate set). None before the first one, or without a cost."""
        return None if self._estimate is None else dict(self._estimate)

    def _control(self) -> None:
        """Let the controller re-estimate when it is due, from the θ of every pruned layer (and the
        costs measured) now; then arm the meter for the next forward if it is measured."""
        controller = self._controller
        k = self.step_count - self.start_step
        if controller.due(k):
            kwargs = dict(lrs=self._group_lrs(), lr_sum=self._lr_sum, thetas=self._magnitudes())
            if self._meter is None:
                controller.retarget(k, **kwargs)
            else:
                self._retarget_with_costs(k, kwargs)
        if self._meter is not None:
            self._meter.arm(controller.measures(k))

    def _retarget_with_costs(self, k: int, kwargs: dict) -> None:
        controller = self._controller
        measurement = self._meter.take()
        if measurement is None:
            warnings.warn(
                f"{controller.describe()}: no training forward was measured before the re-estimate after step "
                f"{self.step_count} (forwards in eval mode, under no_grad or through torch.compile are not: run "
                "the ones that `measuring` marks eagerly); the costs stay as they were",
                stacklevel=4,
            )
            return
        if self._estimate is None:  # the first measurement: is the target reachable?
            check_reachable(measurement, controller, f"on its first {measurement.samples} training samples")
        controller.retarget(k, **kwargs, costs=measurement.costs, fixed_cost=measurement.fixed)
        with torch.no_grad():
            pruned = measurement.fixed + controller.pruned_cost(kwargs["thetas"], measurement.costs, self._lr_sum)
        self._estimate = {
            "step": self.step_count,
            "samples": measurement.samples,
            "dense": measurement.dense,
            "pruned": pruned,
        }

    @torch.no_grad()
    def check_target(self, inputs: torch.Tensor) -> None:
        """Refuse, before training, a ``target_sops``/``target_energy`` that cannot be reached: the
        same check as at the first measurement in training, on one forward of ``inputs`` (a training
        batch) through a copy of the model in training mode, with every weight as it is (unpruned at
        the start). The model, its buffers (BatchNorm statistics) and the RNG are left as they were,
        so a run that passes trains exactly as without the check. Nothing to check without a cost
        target."""
        self._check_live()
        if self._meter is None or self._controller.target is None:
            return
        measurement = self._meter.measure_copy(inputs)
        check_reachable(
            measurement, self._controller, f"on {inputs.shape[0]} training samples (checked before training)"
        )

    # --- argument checks (what the spec cannot see) ------------------------------------------------
    def _check_lr_schedule(self, lr_schedule):
        """``lr_schedule`` where the schedule plans with it (a final threshold or a target of an
        lr-driven schedule), checked; None elsewhere (it is not used)."""
        spec = self.spec
        if not (self._schedule.lr_driven and (spec.final_threshold is not None or spec.target is not None)):
            return None
        if lr_schedule is None:
            name = spec.strengths()[0]
            raise ValueError(
                f"{name} needs lr_schedule: the planned lr of every step (a sequence, or a callable step -> lr), "
                + (
                    "to share the remaining threshold growth among the remaining steps"
                    if spec.target is not None
                    else f"to reach it at the window's end (λ = D / Σ planned lr, schedule {spec.schedule!r})"
                )
            )
        if not (callable(lr_schedule) or isinstance(lr_schedule, Sequence)):
            raise TypeError(
                f"lr_schedule must be a sequence of lrs or a callable step -> lr, got {type(lr_schedule).__name__}"
            )
        if spec.end is None:
            raise ValueError(
                f"schedule {spec.schedule!r} with {spec.strengths()[0]} plans the lrs of the pruning window: give "
                "its end, end_step or total_steps"
            )
        return lr_schedule

    def _planned_lrs(self, lr_schedule) -> list[float]:
        """``w_t·η_t`` planned for every window step (``w_t``: :meth:`Schedule.lr_weight`)."""
        steps = range(self.start_step, self.end_step)
        if isinstance(lr_schedule, Sequence):
            if len(lr_schedule) < self.end_step:
                raise ValueError(f"lr_schedule has {len(lr_schedule)} lrs, the pruning window needs {self.end_step}")
            planned = [lr_schedule[t] for t in steps]
        else:
            planned = [lr_schedule(t) for t in steps]
        return [
            self._lr_weight(t) * check_number(lr, f"lr_schedule[{t}]") for t, lr in zip(steps, planned, strict=True)
        ]

    @staticmethod
    def _layer_scales(layer_scale, names: list[str]) -> dict[str, float]:
        if layer_scale is None:
            return dict.fromkeys(names, 1.0)
        if isinstance(layer_scale, Mapping):
            unknown = sorted(set(layer_scale) - set(names))
            if unknown:
                raise ValueError(f"layer_scale names layers that are not pruned: {unknown}")
            return {n: check_number(layer_scale.get(n, 1.0), f"layer_scale[{n!r}]") for n in names}
        if callable(layer_scale):
            return {n: check_number(layer_scale(n), f"layer_scale({n!r})") for n in names}
        raise TypeError(
            f"layer_scale must be a dict name -> factor or a callable name -> factor, got {type(layer_scale).__name__}"
        )

    def _param_groups(self, optimizer, layers: dict[str, nn.Module]) -> dict[str, int]:
        index = {id(p): g for g, group in enumerate(optimizer.param_groups) for p in group["params"]}
        group_of = {}
        for name, module in layers.items():
            if id(module.weight) in index:
                group_of[name] = index[id(module.weight)]
            elif self._schedule.lr_driven:
                raise ValueError(
                    f"the weight of {name!r} is not trained by the optimizer, so it has no lr to drive "
                    f"schedule={self.schedule!r}: add it to the optimizer, or exclude it"
                )
        return group_of

    # --- the optimizer hooks ---------------------------------------------------------------------
    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        # The first step after the window freezes the mask, before it moves θ: S_d(θ) is baked
        # into θ, so that step is the same ISTA step for the weights kept, and the zeros stay.
        if self._freezes(self.step_count) and not self._frozen:
            for name, p in self._params.items():
                p.freeze(self.layers[name].parametrizations.weight.original)
        # The cached S_d(θ) is stale once θ moves; freeing it first keeps it out of the step's peak memory.
        for p in self._params.values():
            p.invalidate()

    def _group_lrs(self) -> list[float]:
        """The lr of every param group the pruner was built with. Groups added later cannot hold a
        pruned θ (it was in a group already), so their lrs do not move any threshold."""
        return [float(group["lr"]) for group in self.optimizer.param_groups[: len(self._lr_sum)]]

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        self._pending.append(self._group_lrs())

    @property
    def has_pending_step(self) -> bool:
        """True when the optimizer applied a step that :meth:`step` has not consumed yet."""
        return bool(self._pending)

    # --- Adam: per-weight thresholds ------------------------------------------------------------
    def _step_factor(self, name: str) -> torch.Tensor | None:
        """``1/(√v̂ + ε)``: Adam's per-weight factor of the lr in the step it just applied to the
        θ of layer ``name`` (``max v`` with amsgrad); None where it holds no state (no gradient yet)."""
        theta = self.layers[name].parametrizations.weight.original
        state = self.optimizer.state.get(theta)
        if not state or "exp_avg_sq" not in state:
            return None
        group = self.optimizer.param_groups[self._group_of[name]]
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        bias_correction = 1.0 - group["betas"][1] ** float(state["step"])
        return 1.0 / ((v / bias_correction).sqrt() + group["eps"])

    @torch.no_grad()
    def _precondition(self, increments: list[float]) -> None:
        """Fold one window step into every layer's preconditioner ``r``, the mean of Adam's step
        factor weighted by the ``w·η`` of each step: ``r ← (r·S + a·q)/(S + a)``, ``S`` the layer
        group's ``Σ w·η`` before the step and ``a = w·η`` of this one. Then ``d·r = λ Σ w·η/(√v̂+ε)``,
        the sum of the soft thresholds of Adam's proximal steps."""
        for name, p in self._params.items():
            g = self._group_of[name]
            before, a = self._lr_sum[g], increments[g]
            if a <= 0:
                continue
            q = self._step_factor(name)
            if q is None:  # Adam moved no weight of this layer: its thresholds do not grow either
                q = torch.zeros_like(self.layers[name].parametrizations.weight.original, dtype=torch.float32)
            p.preconditioner.mul_(before / (before + a)).add_(q, alpha=a / (before + a))
            p.invalidate()

    def _magnitudes(self) -> dict[str, torch.Tensor]:
        """What the controller compares with each layer's scalar threshold: θ, or ``θ/r`` where a
        weight's threshold is ``d·r`` (Adam), so that ``|θ/r| ≤ d`` says "pruned" either way."""
        out = {}
        for name, module in self.layers.items():
            theta, r = module.parametrizations.weight.original, self._params[name].preconditioner
            out[name] = theta if r is None else theta.detach() / r.clamp_min(torch.finfo(torch.float32).tiny)
        return out

    # --- thresholds ---------------------------------------------------------------------------
    def _in_window(self, t: int) -> bool:
        return self.start_step <= t and (self.end_step is None or t < self.end_step)

    def _progress(self, t: int) -> float:
        """``x`` of step ``t``: its progress through the window (unclamped)."""
        return (t - self.start_step) / (self.end_step - self.start_step)

    def _lr_weight(self, t: int) -> float:
        """Factor of ``η_t`` in ``Δd``: 1 for LATS, ``β^{x_t}`` for PGH (x at the step's start)."""
        return self._schedule.lr_weight(self._progress(t)) if self._schedule.takes_beta else 1.0

    def _group_threshold(self, group: int) -> float:
        if self._controller is not None:
            return self._controller.global_threshold(self._lr_sum)
        if self._schedule.learned or self._schedule.magnitude:
            values = [p.current_threshold() for p in self._params.values()]
            return sum(values) / len(values)
        x = self._progress(self.step_count) if self._schedule.needs_end else 0.0
        return self._schedule.threshold(x, self._lr_sum[group])

    @property
    def threshold(self) -> float:
        """The current global threshold ``d`` (before ``layer_scale``).

        For lr-driven schedules with several lrs: that of the first pruned layer's param group.
        With a cost: ``Σ λ·η``, the threshold per unit cost (layer ``l``'s grows ``c_l`` times as fast).
        For ``"learnable"`` and ``"gmp"``: the mean of the per-layer thresholds.
        """
        return self._group_threshold(self._ref_group)

    def thresholds(self) -> dict[str, float]:
        """The threshold ``d`` of every pruned layer, by name."""
        return {name: p.current_threshold() for name, p in self._params.items()}

    def implied_l1(self) -> float:
        """``λ_t = Δd / η`` of the last :meth:`step`: the L1 coefficient whose ISTA step the
        threshold change equals, for any schedule (nan before the first step; ``Δd`` and
        ``η`` summed if one ``pruner.step()`` consumed several optimizer steps)."""
        return self._implied

    def _apply_thresholds(self) -> None:
        if self._frozen or self._schedule.magnitude:  # masks set the thresholds there
            return
        if self._schedule.learned:
            for p in self._params.values():
                p.sync_threshold()
            return
        if self._controller is not None:
            for name, p in self._params.items():
                p.set_threshold(self._controller.threshold(name, self._lr_sum))
            return
        for name, p in self._params.items():
            d = self._group_threshold(self._group_of.get(name, self._ref_group))
            p.set_threshold(self._scale[name] * d)

    @property
    def _frozen(self) -> bool:
        """Whether the soft thresholds' zeros were frozen into masks (see :meth:`_freezes`)."""
        return not self._schedule.magnitude and any(p.masked for p in self._params.values())

    def _freezes(self, step_count: int) -> bool:
        """Whether an optimizer step taken after ``step_count`` steps trains a fixed mask: it lies
        beyond the window (``freeze_mask``). GMP's masks are masks already."""
        spec = self.spec
        return (
            spec.freeze_mask
            and self.end_step is not None
            and step_count >= self.end_step
            and not self._schedule.magnitude
        )

    @torch.no_grad()
    def _update_masks(self) -> None:
        """GMP: when due (every ``retarget_every`` window steps and at the window's end), raise the
        global mask to the sparsity of the cubic schedule. A layer keeps ``|θ| > layer_scale·d``, d
        the magnitude at that sparsity; pruned weights stay pruned."""
        k, window = self.step_count - self.start_step, self.end_step - self.start_step
        if not 0 < k <= window or (k % self._mask_every and k != window):
            return
        values = []
        for name, p in self._params.items():
            theta = self.layers[name].parametrizations.weight.original.detach().abs()
            v = theta / self._scale[name] if self._scale[name] > 0 else torch.full_like(theta, math.inf)
            values.append(v if p.mask is None else v.masked_fill(~p.mask, -1.0))  # -1: below every |θ|
        flat = torch.cat([v.flatten() for v in values])
        n = math.ceil(self._schedule.sparsity(k / window) * flat.numel() - 1e-9)
        cut = float(flat.kthvalue(n).values) if n > 0 else -1.0
        if cut < 0:  # no more than the pruned weights: nothing to raise
            return
        for (name, p), v in zip(self._params.items(), values, strict=True):
            p.set_mask(v > cut, self._scale[name] * cut)

    def step(self) -> bool:
        """Advance the thresholds (GMP: the masks) by the optimizer steps applied since the last call.

        Returns False (and changes nothing) when there was none, e.g. ``GradScaler`` skipped
        ``optimizer.step()``. Raises RuntimeError if the optimizer never stepped at all.
        """
        self._check_live()
        if not self._pending:
            if self.step_count == 0:
                raise RuntimeError(
                    "pruner.step() was called before any optimizer.step(): call it right after "
                    "optimizer.step(). (With AMP, GradScaler skips optimizer.step() on overflow; "
                    "guard with `if pruner.has_pending_step: pruner.step()`.)"
                )
            return False
        eta = 0.0
        for lrs in self._pending:
            t = self.step_count
            if self._schedule.lr_driven and self._in_window(t):
                weight = self._lr_weight(t)
                if self._preconditioned:
                    self._precondition([weight * lr for lr in lrs])
                for g, lr in enumerate(lrs):
                    self._lr_sum[g] += weight * lr
            eta += lrs[self._ref_group]
            self.step_count += 1
            if self._controller is not None:
                self._control()
            if self._schedule.magnitude:
                self._update_masks()
        self._pending.clear()
        self._apply_thresholds()
        now = self.threshold
        delta, self._last_threshold = now - self._last_threshold, now
        self._implied = delta / eta if eta != 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
        return True

    # --- reports, state, the end -------------------------------------------------------------------
    def sparsity(self) -> SparsityReport:
        """Exact zeros of the pruned weights, per layer and overall (``.global_sparsity``)."""
        self._check_live()
        return sparsity_report(self.model)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, besides ``model.state_dict()`` (θ, the threshold
        buffers and learnable ``s``) and ``optimizer.state_dict()``. Plain Python values and
        tensors (with a target, one ``|θ|`` tensor per layer; with a cost, the column sums of the
        measurement in progress): ``torch.load(..., weights_only=True)`` reads it.
        ``"controller"``: the :class:`L1Controller`'s state, or None; ``"costs"``: the
        :class:`CostMeter`'s window in progress and the last ``cost_estimate``, or None."""
        costs = None
        if self._meter is not None:
            costs = {"meter": self._meter.state_dict(), "estimate": self.cost_estimate}
        return {
            "version": STATE_VERSION,
            "schedule": self.schedule,
            "step_count": self.step_count,
            "lr_sum": list(self._lr_sum),
            "pending": [list(p) for p in self._pending],
            "implied_l1": self._implied,
            "last_threshold": self._last_threshold,
            "thresholds": self.thresholds(),
            "controller": None if self._controller is None else self._controller.state_dict(),
            "costs": costs,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (version 4, or versions 2 and 3 of older checkpoints)."""
        state = upgrade_state(state, self)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported pruner state version {state.get('version')!r}")
        if state["schedule"] != self.schedule:
            raise ValueError(f"state is for schedule={state['schedule']!r}, this pruner runs {self.schedule!r}")
        if set(state["thresholds"]) != set(self._params):
            raise ValueError("state was saved for a different set of pruned layers")
        if len(state["lr_sum"]) != len(self._lr_sum):
            raise ValueError("state was saved with a different number of optimizer param groups")
        if (state["controller"] is None) != (self._controller is None):
            saved = "without a target or cost" if state["controller"] is None else "with a target or cost"
            runs = "plain" if self._controller is None else self._controller.describe()
            raise ValueError(f"state was saved {saved}, this pruner runs {runs}")
        if self._controller is not None:
            self._controller.load_state_dict(state["controller"])
        if self._meter is not None:
            if state["costs"] is None:
                raise ValueError("state was saved without costs, this pruner measures them")
            self._meter.load_state_dict(state["costs"]["meter"])
            self._estimate = None if state["costs"]["estimate"] is None else dict(state["costs"]["estimate"])
        self.step_count = int(state["step_count"])
        self._lr_sum = [float(v) for v in state["lr_sum"]]
        self._pending = [[float(v) for v in p] for p in state["pending"]]
        self._implied = float(state["implied_l1"])
        self._last_threshold = float(state["last_threshold"])
        if not (self._schedule.learned or self._schedule.magnitude or self._frozen):
            for name, p in self._params.items():
                p.set_threshold(state["thresholds"][name])
        if self._meter is not None:  # the next forward is measured or not, as in the saved run
            self._meter.arm(self._controller.measures(self.step_count - self.start_step))

    def _check_live(self) -> None:
        if self._finalized:
            raise RuntimeError("this pruner was finalized: the model has plain weights now")

    def finalize(self) -> nn.Module:
        """Bake ``S_d(θ)`` into plain weights (see :func:`finalize`) and detach from the optimizer."""
        self._check_live()
        for hook in self._hooks:
            hook.remove()
        if self._meter is not None:
            self._meter.close()
        self._finalized = True
        return finalize(self.model)

    def __repr__(self) -> str:
        return (
            f"SoftThresholdPruner(schedule={self.schedule!r}, layers={len(self.layers)}, "
            f"step={self.step_count}, threshold={self.threshold:.4g})"
        )
