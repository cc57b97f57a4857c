"""``L1Controller``: the L1 term of LATS per layer, ``λ·c_l``, and the thresholds it gives; with a
target (a weight sparsity, SOPs or energy per sample), λ is picked so that the window ends at it.

Why one module of ~530 lines: the re-estimate, its guards and the state a resume needs read
one another's fields at every step; split, each half would reach into the other's."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "LAST_STRETCH_GROWTH",
    "L1Controller",
    "MEASURES",
    "TRAJECTORY_EXPONENT",
    "DRIFT_PERSISTENCE",
    "RE_ESTIMATES",
    "RUNAWAY_FACTOR",
    "MEASURED_FRACTION",
]

#: What a target counts: the fraction of pruned weights, or the operations (SOPs) or energy (pJ)
#: per sample of the exact synaptic-operation count.
MEASURES: tuple[str, ...] = ("sparsity", "sops", "energy")
# Constant-λ LATS runs follow logit s(c) ≈ logit s* + 1.4·log c (c: fraction of the planned lr
# spent) on the digits benchmark; the controller tracks that trajectory
TRAJECTORY_EXPONENT = 1.4
# ... and about half of a weight's recent drift carries on (1 overshot the trajectory, 0 lagged it)
DRIFT_PERSISTENCE = 0.5
# ... re-estimating λ this many times over the window (default ``retarget_every``): with 8 (one
# per epoch on digits) the sparsity lagged and was caught up at small lrs; with 128 the per-weight
# drift over each short stretch was mostly noise and the runs at 99 % collapsed
RE_ESTIMATES = 32
# Costs are measured on the training forwards of the last eighth of each stretch (the counter's
# hooks cost about 10 % of a forward), and on the last stretch's worth of forwards before the
# end of the window, whose costs set the final thresholds
MEASURED_FRACTION = 1 / 8
# Guards of a target (docs/concepts.md): the threshold never exceeds this many times D_0, the
# threshold that prunes the target's share of the weights as the window starts. The
# straight-through gradient keeps moving a pruned θ, and a target at odds with the loss makes the
# controller chase the pruned weights outward: a 99.4 % target with the classifier excluded ran
# the threshold from 0.3 to 27.5, about 60 D_0 (λ to 174x its first estimate; the run collapsed to
# 10 % accuracy); the tests' small networks, whose kept weights grow a lot, end at up to 4.7 D_0.
# λ itself may grow legitimately near the end of a cosine lr, where a small η needs a large λ to
# move the threshold at all: a cap on λ would bind there.
RUNAWAY_FACTOR = 8.0
# ... and the final correction (at the settle point and the window's end) may at most multiply
# the threshold by this: an energy budget's settling once jumped it 11x (0.093 -> 1.022) and
# emptied 7 layers; a capped run lands off its target and says so instead.
LAST_STRETCH_GROWTH = 2.0


class L1Controller:
    """The L1 term ``λ·Σ_l c_l‖w_l‖₁`` of LATS: λ and the layer weights ``c_l``, and the thresholds
    they give, ``d_l = anchor_l + λ·c_l·(Σ η − anchor_lr_sum_l)`` (:meth:`threshold`), re-anchored
    whenever λ or ``c_l`` change. Between two changes this is ISTA on a fixed objective.

    ``c_l`` is the layer's ``layer_scale`` (``measure="sparsity"``) times, for ``"sops"`` and
    ``"energy"``, its measured cost raised to ``exponent``: the operations (or pJ) per sample that
    one of its weights adds to the exact synaptic-operation count, averaged over the layer's
    weights, re-measured at every re-estimate. ``exponent`` 1/2 (``cost_weighting="sqrt"``) keeps
    a weight while ``w²`` is worth its cost (docs/concepts.md), 1 is the L1 term ``λ Σ_l c_l‖w_l‖₁``,
    0 one uniform threshold whose λ is still steered by the cost.

    ``target`` (a fraction of the weights, SOPs per sample, or pJ per sample): λ is re-estimated
    every ``retarget_every`` window steps (default: ``RE_ESTIMATES`` times over the window) so
    that the pruned fraction of the weights, or of the pruned layers' cost, follows the
    trajectory of constant-λ LATS (:meth:`retarget`), and at the end of the window the thresholds
    are set to the exact quantile (the snap). ``target=None`` with ``l1``: λ is the constant
    ``l1`` and only the costs are re-measured.

    ``planned``: the planned lr of every window step (a target needs it; ``Σ > 0``); without a
    target, ``window`` is the number of window steps instead (None: a window without end).
    ``layers``: ``{name: (param group, layer_scale)}`` of every pruned layer; ``ref_group``: the
    group of :meth:`global_threshold`. ``start_step``: forwards before the window that can be
    measured. :class:`SoftThresholdPruner` drives it.
    """

    def __init__(
        self,
        planned: Sequence[float] | None,
        *,
        window: int | None = None,
        layers: Mapping[str, tuple[int, float]],
        ref_group: int,
        measure: str = "sparsity",
        target: float | None = None,
        l1: float | None = None,
        retarget_every: int | None = None,
        start_step: int = 0,
        exponent: float = 1.0,
        first: int = 0,
    ) -> None:
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        if (target is None) == (l1 is None):
            raise ValueError("give exactly one of target and l1")
        if target is None and measure == "sparsity":
            raise ValueError("a constant l1 without costs needs no controller")
        self.measure = measure
        self.target = target
        self.exponent = float(exponent)  # c_l = layer_scale · (mean cost per weight)^exponent
        if target is not None and planned is None:
            raise ValueError("a target needs the planned lr of every window step")
        self._window = window if planned is None else len(planned)
        if retarget_every is None:
            if self._window is None:
                raise ValueError("a window without end needs retarget_every")
            retarget_every = max(1, self._window // RE_ESTIMATES)
        self.retarget_every = int(retarget_every)  # checked by PruningSpec
        self._planned_sum = sum(planned) if planned is not None else None
        remaining = [0.0]
        for lr in reversed(planned or ()):
            remaining.append(remaining[-1] + lr)
        self._planned_remaining = remaining[::-1]  # [k]: Σ planned lrs of window steps >= k
        self._groups = {name: group for name, (group, _) in layers.items()}
        self._scale = {name: float(scale) for name, (_, scale) in layers.items()}
        self._ref_group = ref_group
        # forwards measured before a re-estimate, and the first re-estimate that has them behind it
        self._measured = 0 if measure == "sparsity" else max(1, math.ceil(self.retarget_every * MEASURED_FRACTION))
        # (``first``: no re-estimate before that window step; 1 under Adam, whose per-weight
        # scale of the thresholds exists from the first step it applied)
        self._first = max(first, self._measured - start_step)
        # With costs and a target, the final thresholds are set twice: at the settle point, one
        # stretch before the end, and at the end, from the forwards in between, corrected by how
        # the count answered the first setting (pruning moves the spikes of the layers downstream)
        self._settle = None
        if self._window is not None and target is not None and self.uses_costs:
            self._settle = max(self._first, self._window - self.retarget_every)
        self._response: tuple[float, float] | None = None  # the cost before and predicted after settling
        self._reference: float | None = None  # D_0, the runaway guard's scale
        self.capped: list[str] = []  # what the guards held back, for the run's record (one line each)
        self._emptied: set[str] = set()  # layers already warned about
        #: λ in force: constant between re-estimates, never < 0
        self.l1 = 0.0 if l1 is None else float(l1)
        counted = measure == "sparsity"  # weights, not costs: c_l is layer_scale from the start
        self._factor = {name: (scale if counted else 0.0) for name, scale in self._scale.items()}  # c_l
        self._anchor = dict.fromkeys(layers, 0.0)
        self._anchor_lr_sum = dict.fromkeys(layers, 0.0)
        self._global_anchor = 0.0
        self._global_anchor_lr_sum = 0.0
        # |θ| of every pruned layer at the last re-estimate (the anchor): each weight's drift since
        self._drift_origin: dict[str, torch.Tensor] = {}

    @property
    def uses_costs(self) -> bool:
        return self.measure != "sparsity"

    def describe(self) -> str:
        """``target_sparsity=0.9``, ``target_sops=2e+06``, ``l1=0.001 (cost 'energy')``, ..."""
        if self.target is None:
            return f"l1={self.l1:g} (cost {self.measure!r})"
        return f"target_{self.measure}={self.target:g}"  # the pruner's argument

    # --- thresholds --------------------------------------------------------------------------
    def threshold(self, name: str, lr_sum: Sequence[float]) -> float:
        """``d_l = anchor_l + λ·c_l·(lr_sum[g] − anchor_lr_sum_l)``: layer ``name``'s threshold
        (``lr_sum``: Σ η applied per param group)."""
        return self._anchor[name] + self.l1 * self._factor[name] * (
            lr_sum[self._groups[name]] - self._anchor_lr_sum[name]
        )

    def global_threshold(self, lr_sum: Sequence[float]) -> float:
        """``Σ λ·η`` over the reference group: the threshold before any layer's ``c_l``."""
        return self._global_anchor + self.l1 * (lr_sum[self._ref_group] - self._global_anchor_lr_sum)

    def factors(self) -> dict[str, float]:
        """``c_l`` of every pruned layer, in force since the last re-estimate."""
        return dict(self._factor)

    # --- when -------------------------------------------------------------------------------
    def due(self, k: int) -> bool:
        """Whether λ (or the costs) are re-estimated after ``k`` window steps: every
        ``retarget_every`` steps from the window's start (with costs: from the first step that
        has measured forwards behind it), and at the window's end (the snap) with a target."""
        window = self._window
        if window is not None and k == window:
            return self.target is not None
        if k < self._first or (window is not None and k > window):
            return False
        if self._settle is not None and k >= self._settle:
            return k == self._settle
        return k == self._first or k % self.retarget_every == 0

    def _next_point(self, k: int) -> int | None:
        """The first re-estimate after window step ``k`` (None: none is left)."""
        every, window = self.retarget_every, self._window
        points = [(max(k, self._first) // every + 1) * every]
        points += [p for p in (self._first, self._settle) if p is not None and p > k]
        if window is not None:
            points.append(window)
        points = [p for p in points if p > k and self.due(p)]
        return min(points) if points else None

    def measures(self, k: int) -> bool:
        """Whether the training forward of window step ``k`` (negative before the window) is
        measured: the last ``MEASURED_FRACTION`` of every stretch, and with a target the whole
        stretch before the settle point and every forward from it to the end of the window."""
        if not self.uses_costs:
            return False
        if self._settle is not None and self._settle <= k < self._window:
            return True
        point = self._next_point(k)
        if point is not None and point == self._settle:  # a whole stretch: what settling starts from
            return k >= point - self.retarget_every
        return point is not None and k >= point - self._measured

    # --- re-estimates -----------------------------------------------------------------------
    def _goal(self, k: int, snap: bool, final: float) -> tuple[float, float]:
        """``(horizon, goal)``: the planned lr until the next re-estimate, and the pruned fraction
        to reach there on the trajectory ``logit s(c) = logit s* + TRAJECTORY_EXPONENT·log c``
        towards ``s* = final`` (``c``: the fraction of the planned lr spent by then)."""
        if snap:
            return 1.0, final
        window = self._window
        next_k = min(window, (k // self.retarget_every + 1) * self.retarget_every)
        horizon = self._planned_remaining[k] - self._planned_remaining[next_k]
        spent = 1.0 - self._planned_remaining[next_k] / self._planned_sum
        goal = final
        if next_k < window and spent < 1.0 and 0 < final < 1:
            odds = final / (1.0 - final)
            odds *= max(spent, 1e-12) ** TRAJECTORY_EXPONENT
            goal = odds / (1.0 + odds)
        return horizon, goal

    # Long (~95 lines): one re-estimate, in the order the derivation gives (docs/concepts.md).
    @torch.no_grad()
    def retarget(
        self,
        k: int,
        *,
        lrs: Sequence[float],
        lr_sum: Sequence[float],
        thetas: Mapping[str, torch.Tensor],
        costs: Mapping[str, torch.Tensor] | None = None,
        fixed_cost: float = 0.0,
    ) -> None:
        """Re-estimate after ``k`` window steps (at ``k = window``: set the final thresholds).

        ``lrs``: the lr of every param group now; ``lr_sum``: Σ η applied per group; ``thetas``:
        θ of every pruned layer; ``costs`` (``"sops"``, ``"energy"``): what each pruned weight
        costs per sample (:meth:`CostMeter.take <snn_lats.pruning.costs.CostMeter.take>`), and
        ``fixed_cost`` what the synaptic layers outside the pruning cost.

        Between re-estimates layer ``l`` grows as ``d_l(λ) = d_l + λ·H·r_l``: ``H`` is the planned
        lr until the next re-estimate, ``r_l = c_l`` × its group's lr relative to the reference
        group. Weight ``i`` is pruned then iff ``θ̂_i ≤ d_l(λ)``, with the prediction
        ``θ̂_i = |θ_i| + DRIFT_PERSISTENCE·ρ_i·H`` (``ρ_i``: change of ``|θ_i|`` per unit lr since
        the last re-estimate; 0 at the first), i.e. iff ``v_i = (θ̂_i − d_l) / (H·r_l) ≤ λ``. λ is
        the smallest ``v`` that prunes the goal (:meth:`_l1_reaching`): the fraction ``s(c_next)``
        of the weights (sparsity), or of the pruned layers' cost ``C = Σ_i cost_i``, where the
        final fraction is ``1 − (target − fixed_cost) / C``; clamped at 0 so thresholds never
        shrink inside the window. At the end of the window (the snap) the quantile of the final θ
        with ``H = 1`` is applied at once, in either direction. Without a target, λ stays and
        only the ``c_l`` change.
        """
        factors = self._factor
        if self.uses_costs:
            factors = {name: self._scale[name] * float(costs[name].mean()) ** self.exponent for name in self._factor}
        if self.target is None:
            self._reanchor(lr_sum, factors)
            return
        ref_lr = lrs[self._ref_group]
        ratio = [lr / ref_lr if ref_lr > 0 else 1.0 for lr in lrs]
        snap = k in (self._window, self._settle)
        weights = None
        if self.uses_costs:
            weights = [costs[name].flatten() for name in thetas]
            total = float(sum(float(w.sum()) for w in weights))
            before = fixed_cost + self.pruned_cost(thetas, costs, lr_sum)
            target = self.target
            if k == self._window and self._response is not None:
                target = self._corrected_target(before)
            final = 1.0 - (target - fixed_cost) / total if total > 0 else 0.0
        else:
            final = self.target
        horizon, goal = self._goal(k, snap, final)
        if horizon <= 0:  # no lr planned before the next re-estimate: keep λ (and take the new costs)
            if self.uses_costs:
                self._reanchor(lr_sum, factors)
                self._drift_origin = {}  # the drift is measured from the new anchor
            return
        past = lr_sum[self._ref_group] - self._global_anchor_lr_sum  # lr since the anchor
        drift = not snap and self._drift_origin and past > 0
        values, origin = [], {}
        for name, theta in thetas.items():
            theta = theta.detach().abs().flatten()  # a new tensor
            origin[name] = theta
            predicted = theta.double()
            if drift:
                moved = predicted - self._drift_origin[name].to(predicted)
                predicted = predicted + DRIFT_PERSISTENCE * (horizon / past) * moved
            rate = factors[name] * ratio[self._groups[name]] * horizon
            now = self.threshold(name, lr_sum)
            values.append((predicted - now) / rate if rate > 0 else torch.full_like(predicted, math.inf))
        quantile = self._l1_reaching(values, goal, weights)
        if quantile is None:
            if self.uses_costs:
                self._reanchor(lr_sum, factors)
                self._drift_origin = {}
            return
        if self._reference is None:
            self._reference = self._threshold_now(thetas, factors, ratio, final, weights)
        quantile = self._guard(k, snap, quantile, lr_sum, ratio[self._ref_group], horizon)
        self._warn_emptied(thetas, values, quantile)
        if snap:
            for name in thetas:
                step = quantile * ratio[self._groups[name]] * factors[name]
                self._anchor[name] = max(0.0, self.threshold(name, lr_sum) + step)
                self._anchor_lr_sum[name] = lr_sum[self._groups[name]]
            self._global_anchor = max(0.0, self.global_threshold(lr_sum) + quantile * ratio[self._ref_group])
            self._global_anchor_lr_sum = lr_sum[self._ref_group]
            self._factor = dict(factors)
            self._drift_origin = {}
            if k == self._settle:  # fixed until the end, where the count's answer corrects them
                after = fixed_cost + float(torch.cat(weights)[torch.cat(values) > quantile].sum())
                self._response = (before, after)
                self.l1 = 0.0
            return
        self._reanchor(lr_sum, factors)
        self._drift_origin = origin
        self.l1 = max(0.0, quantile)

    def _threshold_now(self, thetas, factors, ratio, final, weights) -> float:
        """The global threshold ``D_0`` that would prune the final share (weights or cost) of the
        weights as they are, every layer's threshold being ``c_l·D_0``."""
        values = [
            theta.detach().abs().flatten().double() / (factors[name] * ratio[self._groups[name]])
            if factors[name] * ratio[self._groups[name]] > 0
            else torch.full((theta.numel(),), math.inf, dtype=torch.float64, device=theta.device)
            for name, theta in thetas.items()
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # out of reach is the estimate's warning to give
            return max(self._l1_reaching(values, final, weights) or 0.0, 0.0)

    def _guard(
        self, k: int, snap: bool, quantile: float, lr_sum: Sequence[float], ref_ratio: float, horizon: float
    ) -> float:
        """The estimate held within the guards: the threshold at most :data:`RUNAWAY_FACTOR` times
        ``D_0``, and a final correction at most :data:`LAST_STRETCH_GROWTH` times the threshold."""
        now = self.global_threshold(lr_sum)
        ceiling = RUNAWAY_FACTOR * self._reference
        scale = ref_ratio if snap else ref_ratio * horizon  # the threshold moves by quantile x scale
        if scale <= 0:
            return quantile
        if ceiling > 0 and quantile * scale > ceiling - now:  # no D_0 (the first weights all zero): no cap
            self._held(
                f"after {k} window steps the threshold would reach {(now + quantile * scale) / self._reference:.3g}x "
                f"D_0 = {self._reference:.4g}, the threshold that prunes the target's share of the window's first "
                "weights: it is chasing pruned weights that the straight-through gradient moves outward; it is "
                f"capped at {RUNAWAY_FACTOR:g} D_0"
            )
            quantile = max(ceiling - now, 0.0) / scale
        if snap and now > 0 and quantile * scale > (LAST_STRETCH_GROWTH - 1.0) * now:
            self._held(
                f"after {k} window steps the final correction would multiply the threshold by "
                f"{1 + quantile * scale / now:.3g}; it is capped at {LAST_STRETCH_GROWTH:g}x, so the run will land "
                "off its target"
            )
            quantile = (LAST_STRETCH_GROWTH - 1.0) * now / scale
        return quantile

    def _held(self, what: str) -> None:
        if not self.capped:  # once a run: the state keeps every event
            warnings.warn(f"{self.describe()}: {what}", stacklevel=6)
        self.capped.append(what)

    def _warn_emptied(self, thetas: Mapping[str, torch.Tensor], values: list[torch.Tensor], quantile: float) -> None:
        """Warn (once per layer) when every weight of a layer falls under its threshold at ``quantile``."""
        for name, v in zip(thetas, values):
            if name not in self._emptied and v.numel() and float(v.max()) <= quantile:
                self._emptied.add(name)
                warnings.warn(
                    f"{self.describe()}: layer {name!r} is about to be emptied (all its {v.numel()} weights under "
                    "its threshold): no signal passes it but through a shortcut",
                    stacklevel=5,
                )

    def pruned_cost(self, thetas, costs, lr_sum) -> float:
        """``Σ_i cost_i·1[|θ_i| > d_l]``: what the pruned layers cost with the thresholds in force."""
        return sum(
            float((costs[name] * (theta.detach().abs() > self.threshold(name, lr_sum))).sum())
            for name, theta in thetas.items()
        )

    def _corrected_target(self, now: float) -> float:
        """The cost to aim the final thresholds at, so that the count lands on the target.

        Setting the thresholds at the settle point moved the predicted cost from ``before`` to
        ``after``, and the forwards since then measured ``now``: the count answered the predicted
        change ``after − before`` by ``a = (now − before) / (after − before)`` (more than 1 in
        SNNs, where a pruned weight also silences spikes downstream). The remaining error
        ``target − now`` is corrected by ``1/a`` of it (``a`` clamped to [1/4, 4]; 1 when the
        settling moved the cost by less than 1 % of the target, too little to measure ``a``).
        The corrected aim stays within [1/2, 3/2] of the target: where weights regrew after the
        settle point (the lr still large there), ``now`` moved for another reason than the
        settling, and an unbounded correction could aim below zero and prune everything."""
        before, after = self._response
        predicted = after - before
        answer = (now - before) / predicted if abs(predicted) > 0.01 * self.target else 1.0
        corrected = now + (self.target - now) / min(max(answer, 0.25), 4.0)
        return min(max(corrected, 0.5 * self.target), 1.5 * self.target)

    def _reanchor(self, lr_sum: Sequence[float], factors: Mapping[str, float]) -> None:
        """Anchor every threshold where it is now, and let ``factors`` (``c_l``) drive them on."""
        for name in self._anchor:
            self._anchor[name] = self.threshold(name, lr_sum)
            self._anchor_lr_sum[name] = lr_sum[self._groups[name]]
        self._global_anchor = self.global_threshold(lr_sum)
        self._global_anchor_lr_sum = lr_sum[self._ref_group]
        self._factor = dict(factors)

    def _l1_reaching(
        self, values: list[torch.Tensor], goal: float, weights: list[torch.Tensor] | None = None
    ) -> float | None:
        """The measure: the λ at which the fraction ``goal`` is pruned, given each weight's ``v_i``
        (it is pruned iff ``v_i ≤ λ``; ``inf``: its threshold cannot grow), one tensor per layer.

        Counting weights (``weights`` None), that is the ``k``-th smallest ``v`` with
        ``k = ⌈goal·N⌉``. Counting costs (``weights``: each weight's cost), the smallest ``v`` at
        which the pruned weights carry ``goal·Σ cost``; ``-inf`` (prune nothing more) for
        ``goal ≤ 0``. None when no threshold can grow."""
        values = torch.cat(values)
        finite = torch.isfinite(values)
        if weights is None:
            k = max(1, math.ceil(goal * values.numel() - 1e-9))
            reachable = int(finite.sum())  # weights whose threshold can still grow
            if reachable == 0:
                return None
            if k > reachable:  # a param group's lr is 0 now (beyond-reach layer_scale 0 is refused at construction)
                self._warn_out_of_reach(f"only {reachable} of {values.numel()} pruned weights have")
                k = reachable
            return float(values.kthvalue(k).values)
        weights = torch.cat(weights).to(values)
        need = goal * float(weights.sum())
        if need <= 0:
            return -math.inf
        reachable_values, reachable_weights = values[finite], weights[finite]
        if reachable_values.numel() == 0:
            return None
        reachable = float(reachable_weights.sum())
        if need > reachable:
            self._warn_out_of_reach(
                f"the weights that carry only {reachable / float(weights.sum()):.2%} of the pruned layers' cost have"
            )
            need = reachable
        if need >= reachable:  # everything that costs (compared directly: a float sum has no exact total)
            return float(reachable_values[reachable_weights > 0].max())
        return _weighted_quantile(reachable_values, reachable_weights, need)

    def _warn_out_of_reach(self, who: str) -> None:
        warnings.warn(
            f"{self.describe()} is out of reach: {who} a threshold that grows (the others have layer_scale 0, "
            f"a param group whose lr is 0, or no cost); the controller prunes as many as it can",
            stacklevel=6,  # SoftThresholdPruner.__init__ or .step, through _control, retarget (no_grad), _l1_reaching
        )

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """λ, every layer's anchor and ``c_l``, the global anchor and the drift origin (one ``|θ|``
        tensor per layer, or none)."""
        return {
            "measure": self.measure,
            "target": self.target,
            "l1": self.l1,
            "anchor": dict(self._anchor),
            "anchor_lr_sum": dict(self._anchor_lr_sum),
            "factor": dict(self._factor),
            "global_anchor": self._global_anchor,
            "global_anchor_lr_sum": self._global_anchor_lr_sum,
            "drift_origin": dict(self._drift_origin),
            "response": None if self._response is None else list(self._response),
            "reference": self._reference,
            "capped": list(self.capped),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["measure"] != self.measure or (state["target"] is None) != (self.target is None):
            raise ValueError(
                f"state was saved for measure {state['measure']!r} with target {state['target']!r}, "
                f"this pruner runs {self.describe()}"
            )
        if set(state["anchor"]) != set(self._anchor):
            raise ValueError("state was saved for a different set of pruned layers")
        self.l1 = float(state["l1"])
        self._anchor = {name: float(v) for name, v in state["anchor"].items()}
        self._anchor_lr_sum = {name: float(v) for name, v in state["anchor_lr_sum"].items()}
        self._factor = {name: float(v) for name, v in state["factor"].items()}
        self._global_anchor = float(state["global_anchor"])
        self._global_anchor_lr_sum = float(state["global_anchor_lr_sum"])
        self._drift_origin = {name: t.detach().clone() for name, t in state["drift_origin"].items()}
        self._reference = state.get("reference")  # (not in states from before the guards)
        self.capped = list(state.get("capped") or [])
        response = state.get("response")  # (not in states upgraded from version 3)
        self._response = None if response is None else (float(response[0]), float(response[1]))


def _sorted_quantile(values: torch.Tensor, weights: torch.Tensor, need: float, below: float = 0.0) -> float:
    """The smallest ``v`` of ``values`` at which the weights of the values ``≤ v`` (plus ``below``)
    reach ``need``, by sorting."""
    order = torch.argsort(values)
    carried = below + torch.cumsum(weights[order], 0)
    i = int(torch.searchsorted(carried, torch.tensor([need], dtype=carried.dtype, device=carried.device))[0])
    return float(values[order[min(i, order.numel() - 1)]])


def _weighted_quantile(values: torch.Tensor, weights: torch.Tensor, need: float) -> float:
    """:func:`_sorted_quantile` without sorting every weight (a sort of a million is about 0.1 s
    on a CPU core, a few percent of a demo run over 34 re-estimates): a fixed sample of 16,384
    values brackets the answer, one pass counts the weights below the bracket, and only the values
    inside it are sorted. The answer is the same; the bracket widens, and at last everything is
    sorted, if the sample missed it."""
    n = values.numel()
    if n <= 1 << 16:
        return _sorted_quantile(values, weights, need)
    generator = torch.Generator(device=values.device).manual_seed(0)  # deterministic, global RNG untouched
    pick = torch.randint(n, (1 << 14,), generator=generator, device=values.device)
    sample, sample_weights = values[pick], weights[pick]
    order = torch.argsort(sample)
    sample, carried = sample[order], torch.cumsum(sample_weights[order], 0)
    share = need / float(weights.sum())
    for margin in (0.02, 0.08, 0.32):
        lo, hi = (share - margin) * float(carried[-1]), (share + margin) * float(carried[-1])
        lo_value = float(sample[int(torch.searchsorted(carried, carried.new_tensor([lo])))]) if lo > 0 else -math.inf
        i = int(torch.searchsorted(carried, carried.new_tensor([hi])))
        hi_value = float(sample[i]) if i < sample.numel() else math.inf
        below = float(weights[values <= lo_value].sum())
        inside = (values > lo_value) & (values <= hi_value)
        if below < need and (hi_value == math.inf or need <= below + float(weights[inside].sum())):
            return _sorted_quantile(values[inside], weights[inside], need, below)
    return _sorted_quantile(values, weights, need)
