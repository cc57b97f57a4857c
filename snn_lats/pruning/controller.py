"""``TargetSparsityController``: picks the λ of LATS so that the pruning window ends at a target sparsity."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from snn_lats.pruning.schedules import check_step_index

__all__ = [
    "TargetSparsityController",
    "check_target_sparsity",
    "TRAJECTORY_EXPONENT",
    "DRIFT_PERSISTENCE",
    "RE_ESTIMATES",
]

# Constant-λ LATS runs follow logit s(c) ≈ logit s* + 1.4·log c (c: fraction of the planned lr
# spent) on the digits benchmark; the controller tracks that trajectory
TRAJECTORY_EXPONENT = 1.4
# ... and about half of a weight's recent drift carries on (1 overshot the trajectory, 0 lagged it)
DRIFT_PERSISTENCE = 0.5
# ... re-estimating λ this many times over the window (default ``retarget_every``): with 8 (one
# per epoch on digits) the sparsity lagged and was caught up at small lrs; with 128 the per-weight
# drift over each short stretch was mostly noise and the runs at 99 % collapsed
RE_ESTIMATES = 32


def check_target_sparsity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"target_sparsity must be a number in (0, 1), got {value!r}")
    if not 0 < value < 1:
        raise ValueError(f"target_sparsity must be in (0, 1), got {value}")
    return float(value)


class TargetSparsityController:
    """Chooses λ of LATS (``d += λ·η_t``) so that the fraction ``target_sparsity`` of the pruned
    weights is pruned at the end of the window.

    ``planned``: the planned lr of every window step (``Σ > 0``); ``groups``: the number of
    optimizer param groups. Every ``retarget_every`` window steps (default: ``RE_ESTIMATES``
    times over the window) λ is re-estimated (:meth:`retarget`); between re-estimates the
    threshold of param group ``g`` is ``d_g = anchor_threshold[g] + λ·(Σ_g η − anchor_lr_sum[g])``
    (:meth:`threshold`), re-anchored at each re-estimate. At the end of the window the thresholds
    are set to the exact quantile of the final θ (the snap). :class:`SoftThresholdPruner` drives it.
    """

    def __init__(
        self,
        target_sparsity: float,
        planned: Sequence[float],
        *,
        groups: int,
        retarget_every: int | None = None,
    ) -> None:
        self.target_sparsity = check_target_sparsity(target_sparsity)
        self._window = len(planned)
        self.retarget_every = (
            max(1, self._window // RE_ESTIMATES)
            if retarget_every is None
            else check_step_index(retarget_every, "retarget_every", 1)
        )
        self._planned_sum = sum(planned)
        remaining = [0.0]
        for lr in reversed(planned):
            remaining.append(remaining[-1] + lr)
        self._planned_remaining = remaining[::-1]  # [k]: Σ planned lrs of window steps >= k
        #: λ in force: constant between re-estimates, never < 0
        self.l1 = 0.0
        self._anchor_threshold = [0.0] * groups
        self._anchor_lr_sum = [0.0] * groups
        # |θ| of every pruned layer at the last re-estimate (the anchor): each weight's drift since
        self._drift_origin: dict[str, torch.Tensor] = {}

    def check_reachable(self, sizes: Mapping[str, int], scale: Mapping[str, float]) -> None:
        """Refuse a target beyond the weights of the layers with ``layer_scale > 0`` (their
        thresholds never grow). ``sizes``: the number of weights of every pruned layer."""
        total = sum(sizes.values())
        prunable = sum(n for name, n in sizes.items() if scale[name] > 0)
        if self.target_sparsity * total > prunable:
            raise ValueError(
                f"target_sparsity={self.target_sparsity} cannot be reached: the layers with layer_scale > 0 "
                f"hold {prunable} of the {total} pruned weights ({prunable / total:.2%})"
            )

    def threshold(self, group: int, lr_sum: Sequence[float]) -> float:
        """``d_g = anchor_threshold[g] + λ·(lr_sum[g] − anchor_lr_sum[g])`` (``lr_sum``: Σ η per group)."""
        return self._anchor_threshold[group] + self.l1 * (lr_sum[group] - self._anchor_lr_sum[group])

    def due(self, k: int) -> bool:
        """Whether λ is re-estimated after ``k`` window steps: every ``retarget_every`` steps from
        the window's start, and at its end (the snap)."""
        return k == self._window or (0 <= k < self._window and k % self.retarget_every == 0)

    @torch.no_grad()
    def retarget(
        self,
        k: int,
        *,
        lrs: Sequence[float],
        lr_sum: Sequence[float],
        ref_group: int,
        layers: Mapping[str, tuple[torch.Tensor, int, float]],
    ) -> None:
        """Re-estimate λ after ``k`` window steps (at ``k = window``: set the final thresholds).

        ``lrs``: the lr of every param group now; ``lr_sum``: Σ η applied per group;
        ``ref_group``: the group of :attr:`SoftThresholdPruner.threshold`; ``layers``: for every
        pruned layer, ``(θ, param group, layer_scale)``.

        Between re-estimates each layer grows as ``d_l(λ) = d_l + λ·H·r_l``: ``H`` is the planned
        lr until the next re-estimate, ``r_l`` the layer's scale × its group's lr relative to the
        reference group. The controller tracks the sparsity trajectory of constant-λ LATS,
        ``logit s(c) = logit s* + TRAJECTORY_EXPONENT·log c`` (``c``: fraction of the planned lr
        spent; ``s(1) = s*``): it picks the λ that reaches ``s(c_next)`` at the next
        re-estimate. Weight ``i`` is pruned then iff ``θ̂_i ≤ d_l(λ)``, with the prediction
        ``θ̂_i = |θ_i| + DRIFT_PERSISTENCE·ρ_i·H`` (``ρ_i``: change of ``|θ_i|`` per unit lr since
        the last re-estimate; 0 at the first), i.e. iff ``v_i = (θ̂_i − d_l) / (H·r_l) ≤ λ``;
        λ is then the value of ``v`` that prunes the fraction ``s(c_next)``
        (:meth:`_l1_reaching`), clamped at 0 so thresholds never shrink inside the window. At
        the end of the window (the snap) the quantile of the final θ with ``H = 1`` is applied
        at once, in either direction.
        """
        ref_lr = lrs[ref_group]
        ratio = [lr / ref_lr if ref_lr > 0 else 1.0 for lr in lrs]
        window = self._window
        next_k = min(window, k + self.retarget_every)
        snap = k == window
        if snap:
            horizon, goal = 1.0, self.target_sparsity
        else:
            horizon = self._planned_remaining[k] - self._planned_remaining[next_k]
            spent = 1.0 - self._planned_remaining[next_k] / self._planned_sum
            goal = self.target_sparsity
            if next_k < window and spent < 1.0:
                odds = self.target_sparsity / (1.0 - self.target_sparsity)
                odds *= max(spent, 1e-12) ** TRAJECTORY_EXPONENT
                goal = odds / (1.0 + odds)
        if horizon <= 0:
            return  # no lr planned before the next re-estimate: keep λ
        past = lr_sum[ref_group] - self._anchor_lr_sum[ref_group]  # lr since the anchor
        drift = not snap and self._drift_origin and past > 0
        values, origin = [], {}
        for name, (theta, g, scale) in layers.items():
            theta = theta.detach().abs().flatten()  # a new tensor
            origin[name] = theta
            predicted = theta.double()
            if drift:
                moved = predicted - self._drift_origin[name].to(predicted)
                predicted = predicted + DRIFT_PERSISTENCE * (horizon / past) * moved
            rate = scale * ratio[g] * horizon
            now = scale * self.threshold(g, lr_sum)
            values.append((predicted - now) / rate if rate > 0 else torch.full_like(predicted, math.inf))
        quantile = self._l1_reaching(values, goal)
        if quantile is None:
            return
        groups = {g for _, g, _ in layers.values()}
        if snap:
            for g in groups:
                self._anchor_threshold[g] = max(0.0, self.threshold(g, lr_sum) + quantile * ratio[g])
                self._anchor_lr_sum[g] = lr_sum[g]
            self._drift_origin = {}
            return
        for g in groups:
            self._anchor_threshold[g] = self.threshold(g, lr_sum)
            self._anchor_lr_sum[g] = lr_sum[g]
        self._drift_origin = origin
        self.l1 = max(0.0, quantile)

    def _l1_reaching(self, values: list[torch.Tensor], goal: float) -> float | None:
        """The measure: the λ at which the fraction ``goal`` of the weights is pruned, given each
        weight's ``v_i`` (it is pruned iff ``v_i ≤ λ``; ``inf``: its threshold cannot grow), one
        tensor per layer. Counting weights, that is the ``k``-th smallest ``v`` with
        ``k = ⌈goal·N⌉``. None when no threshold can grow."""
        values = torch.cat(values)
        k = max(1, math.ceil(goal * values.numel() - 1e-9))
        reachable = int(torch.isfinite(values).sum())  # weights whose threshold can still grow
        if reachable == 0:
            return None
        if k > reachable:  # a param group's lr is 0 now (beyond-reach layer_scale 0 is refused at construction)
            warnings.warn(
                f"target_sparsity={self.target_sparsity} is out of reach: only {reachable} of "
                f"{values.numel()} pruned weights have a threshold that grows (the others have layer_scale 0 "
                f"or a param group whose lr is 0); the controller prunes as many as it can",
                stacklevel=5,  # SoftThresholdPruner.__init__ or .step, through _control and retarget (no_grad)
            )
            k = reachable
        return float(values.kthvalue(k).values)

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """λ, the anchors and the drift origin (one ``|θ|`` tensor per layer, or none)."""
        return {
            "l1": self.l1,
            "anchor_threshold": list(self._anchor_threshold),
            "anchor_lr_sum": list(self._anchor_lr_sum),
            "drift_origin": dict(self._drift_origin),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["anchor_threshold"]) != len(self._anchor_threshold):
            raise ValueError("state was saved with a different number of optimizer param groups")
        self.l1 = float(state["l1"])
        self._anchor_threshold = [float(v) for v in state["anchor_threshold"]]
        self._anchor_lr_sum = [float(v) for v in state["anchor_lr_sum"]]
        self._drift_origin = {name: t.detach().clone() for name, t in state["drift_origin"].items()}
