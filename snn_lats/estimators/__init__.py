"""Measurements of a network: mask-aware synaptic operations, firing rates and energy.

:class:`SynapticOpCounter` (:mod:`.sops`) hooks any model while it runs and counts by one of
:data:`CONVENTIONS` (:mod:`.conventions`: exact, or NeuroBench's, sinabs' or the SNN papers'
rule, and :mod:`.syops`: syops'); :mod:`.layers` says which modules it hooks, :mod:`.fanout`
and :mod:`.accumulators` hold its arithmetic, :mod:`.functional` adds functional calls,
activation products and recurrent layers. Its :class:`SOPReport` (:mod:`.report`) has one row per layer, totals,
:meth:`SOPReport.energy_pj` from :data:`ENERGY_PRESETS` and the energy with memory traffic
(:mod:`.energy`); :mod:`.plot` draws it.
"""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from snn_lats.estimators.conventions import CONVENTIONS, DEFAULT_CONVENTION
    from snn_lats.estimators.energy import ENERGY_PRESETS, EnergyPreset, energy_pj
    from snn_lats.estimators.layers import ANN_ACTIVATIONS, NORM_LAYERS, POOL_LAYERS, SYNAPTIC_LAYERS, is_spiking
    from snn_lats.estimators.report import SOPReport
    from snn_lats.estimators.sops import SynapticOpCounter

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
