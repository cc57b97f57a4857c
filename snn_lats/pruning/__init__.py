"""Soft-threshold pruning: ``w = S_d(θ) = sign(θ)·max(|θ| − d, 0)`` on any weight, and the
schedules of the unified framework (LATS, S-LATS, PGH, STDS, constant, STR), with gradual
magnitude pruning (GMP) as the baseline in the same frame.

A :class:`PruningSpec` says how a model is pruned and checks every rule once. ``attach`` adds the
reparameterisation (``torch.nn.utils.parametrize``), ``SoftThresholdPruner`` drives the
thresholds during training (with a target, ``target_sparsity``, ``target_sops`` or
``target_energy``, or a ``cost``, through an ``L1Controller`` that picks λ and the per-layer
weights of the L1 term; costs are measured by a ``CostMeter``), ``recalibrate_batchnorm``
recomputes the normalisation statistics of the pruned weights, ``finalize`` bakes the pruned
weights into plain ones. This package reads costs from ``snn_lats.estimators``.
"""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from snn_lats.pruning.batchnorm import recalibrate_batchnorm
    from snn_lats.pruning.controller import MEASURES, L1Controller
    from snn_lats.pruning.costs import CostMeter, Measurement
    from snn_lats.pruning.functional import soft_threshold
    from snn_lats.pruning.parametrization import SoftThreshold, attach, finalize, pruned_layers, select_layers
    from snn_lats.pruning.pruner import SoftThresholdPruner
    from snn_lats.pruning.report import SparsityReport, sparsity_report
    from snn_lats.pruning.schedules import (
        SCHEDULES,
        Schedule,
        gmp_sparsity,
        pgh_fraction,
        slats_fraction,
        stds_linear_fraction,
        stds_sine_fraction,
    )
    from snn_lats.pruning.spec import COST_WEIGHTINGS, COSTS, GRADIENTS, PruningSpec

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
