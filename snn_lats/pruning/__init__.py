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

from snn_lats import _torchvision  # noqa: F401  (first: torchvision, and spikingjelly, which imports it)
from snn_lats.pruning.batchnorm import recalibrate_batchnorm
from snn_lats.pruning.controller import MEASURES, L1Controller
from snn_lats.pruning.costs import CostMeter, Measurement
from snn_lats.pruning.functional import GRADIENTS, soft_threshold
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
from snn_lats.pruning.spec import COST_WEIGHTINGS, COSTS, PruningSpec

__all__ = [
    "SoftThresholdPruner",
    "PruningSpec",
    "L1Controller",
    "CostMeter",
    "Measurement",
    "MEASURES",
    "COSTS",
    "COST_WEIGHTINGS",
    "attach",
    "finalize",
    "recalibrate_batchnorm",
    "sparsity_report",
    "SparsityReport",
    "soft_threshold",
    "SoftThreshold",
    "select_layers",
    "pruned_layers",
    "SCHEDULES",
    "Schedule",
    "GRADIENTS",
    "gmp_sparsity",
    "slats_fraction",
    "pgh_fraction",
    "stds_sine_fraction",
    "stds_linear_fraction",
]
