"""Soft-threshold pruning: ``w = S_d(θ) = sign(θ)·max(|θ| − d, 0)`` on any weight, and the
threshold schedules of the unified framework (LATS, S-LATS, PGH, STDS, constant, STR).

``attach`` adds the reparameterisation (``torch.nn.utils.parametrize``), ``SoftThresholdPruner``
drives the thresholds during training (with a target, ``target_sparsity``, ``target_sops`` or
``target_energy``, or a ``cost``, through an ``L1Controller`` that picks λ and the per-layer
weights of the L1 term; costs are measured by a ``CostMeter``), ``finalize`` bakes the pruned
weights into plain ones. ``pruner_arguments`` turns a schedule and its settings into the
pruner's keyword arguments. This package reads costs from ``snn_lats.estimators``.
"""

from snn_lats.pruning.controller import MEASURES, L1Controller
from snn_lats.pruning.costs import COSTS, CostMeter, Measurement
from snn_lats.pruning.functional import GRADIENTS, soft_threshold
from snn_lats.pruning.parametrization import SoftThreshold, attach, finalize, pruned_layers, select_layers
from snn_lats.pruning.pruner import SoftThresholdPruner
from snn_lats.pruning.report import SparsityReport, sparsity_report
from snn_lats.pruning.schedules import (
    SCHEDULES,
    pgh_fraction,
    pruner_arguments,
    slats_fraction,
    stds_linear_fraction,
    stds_sine_fraction,
)

__all__ = [
    "SoftThresholdPruner",
    "L1Controller",
    "CostMeter",
    "Measurement",
    "MEASURES",
    "COSTS",
    "pruner_arguments",
    "attach",
    "finalize",
    "sparsity_report",
    "SparsityReport",
    "soft_threshold",
    "SoftThreshold",
    "select_layers",
    "pruned_layers",
    "SCHEDULES",
    "GRADIENTS",
    "slats_fraction",
    "pgh_fraction",
    "stds_sine_fraction",
    "stds_linear_fraction",
]
