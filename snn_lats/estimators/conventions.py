"""Counting conventions: the same forward passes, counted by the rule of each tool or paper.

A synaptic layer's counts are linear in what :class:`~snn_lats.estimators.sops.SynapticOpCounter`
accumulates per input shape: column sums ``[K]`` of its inputs (one sample's input elements
``i``), split by what each batch held, and scalars (rows = samples x steps seen, sums). With
``f`` the pruned fan-out, ``g`` the unpruned one (``fan_out[i]``: synapses from input element i
to a valid output), ``FL`` the conventional dense MACs of one row (output elements x
``C_in/groups x prod(kernel)``, padded taps included, the FLOPs of ptflops/thop/syops) and ``T``
the time steps:

``exact`` (default; docs/concepts.md, "Counting synaptic operations")
    ``ACs = sum_i x_i f_i`` over spike inputs (non-negative integers: a SEW-ADD 2 is two spikes),
    ``MACs = sum_i 1[x_i != 0] f_i`` over real-valued ones. Pruned synapses never count.
``neurobench`` (NeuroBench 2.3.0, ``metrics.workload.SynapticOperations``)
    Inputs and weights binarised (``x != 0``, ``w != 0``); a batch is spikes (ACs) iff every value
    is -1, 0 or 1, so a SEW-ADD input holding a 2 counts MACs, once per nonzero element.
    "Effective" = ``sum_i 1[x_i != 0] f_i``; "Dense" = rows x ``sum_i g_i`` (every input element,
    zeros included, every weight; bias never).
``syops`` (syops-counter 0.0.5, ``syops.ops``)
    Mask-unaware: a batch is spikes iff it holds at most two distinct values, all in [0, 1]; then
    ``ACs = (FL + bias adds) x mean(x)`` per row, else ``MACs = FL + bias adds`` per row.
    BatchNorm (input elements, x2 if affine), pooling (input elements) and activations (output
    elements) are charged by the same rule, and every neuron update (input element) as an AC.
``sinabs`` (sinabs 3.1.3, ``sinabs.hooks`` / ``SNNAnalyzer``)
    ``synops = sum_i x_i g_i`` for every input, whatever it holds (its values taken as spike
    counts, also real ones); mask-unaware; reported here as ACs.
``paper`` (the energy formula of the spiking-transformer papers: Zhou et al., Spikformer,
    ICLR 2023, appendix; Yao et al., Spike-driven Transformer, NeurIPS 2023, Table 1 and eqs. S1-S2)
    SNN: the encoding layer (the first synaptic layer a forward calls) ``MACs = T x FL`` per
    sample, whether the image came once or T times; every other layer ``SOPs = fr x T x FL`` as
    ACs, ``fr`` = its mean input per element and step. ANN: ``MACs = FL`` per sample.
    Mask-unaware; a static and a repeated input give the same figures.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "Accumulated",
    "LayerOps",
    "check_convention",
    "layer_ops",
]

CONVENTIONS: dict[str, str] = {
    "exact": "mask-aware: spikes x nonzero fan-out (ACs), nonzero real inputs x nonzero fan-out (MACs)",
    "neurobench": "NeuroBench 2.3.0 effective synaptic operations (binarised inputs and weights)",
    "syops": "syops-counter 0.0.5: firing rate x dense FLOPs (ACs), dense FLOPs (MACs), plus BN/pool/neurons",
    "sinabs": "sinabs 3.1.3 synops: input values x unpruned fan-out",
    "paper": "SNN papers: encoding layer T x dense FLOPs (MACs) + fr x T x dense FLOPs (ACs); ANN dense FLOPs",
}
DEFAULT_CONVENTION = "exact"

# Rows of the [6, K] column-sum accumulator of one synaptic layer and input shape.
BINARY = 0  # column sums of spike batches holding 0/1 only (counts == nonzero)
MULTI = 1  # column sums (counts) of spike batches holding counts > 1 (SEW-ADD)
MULTI_NONZERO = 2  # nonzero inputs of those batches
REAL_NONZERO = 3  # nonzero inputs of real-valued batches, except those in {-1, 0, 1}
TERNARY_NONZERO = 4  # nonzero inputs of real-valued batches holding only -1, 0, 1
REAL_SUM = 5  # value sums of real-valued batches (sinabs and paper only)
ROWS = 6


def check_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`CONVENTIONS`; ValueError naming them otherwise."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(map(repr, CONVENTIONS))}, got {convention!r}")
    return convention


class Accumulated(NamedTuple):
    """What one synaptic layer accumulated for one input shape, per accumulator row (BINARY, ...):
    the dot products of its column sums with the pruned fan-out ``f`` (under the mask in force
    when they were added) and the unpruned ``g``, and the plain sums of the column sums."""

    pruned: list[float]  # [ROWS]: sum over batches of columns . f
    dense: list[float]  # [ROWS]: columns . g
    sums: list[float]  # [ROWS]: sum of the columns
    k: int  # input elements of one row
    flops_row: int  # FL: conventional dense MACs of one row (bias excluded)
    dense_row: float  # sum_i g_i: unpruned synapses of one row (padding excluded)
    rows: int  # rows seen (samples x steps, as the layer was called)
    rows_neurobench_spiking: int  # rows of batches NeuroBench takes for spikes
    encoding: bool  # the first synaptic layer of a forward (paper convention)


class LayerOps(NamedTuple):
    acs: float
    macs: float
    dense_acs: float
    dense_macs: float
    events: float  # spikes (AC inputs) or nonzero inputs (MAC inputs), as counted by the exact rule


def layer_ops(convention: str, acc: Accumulated, steps_per_row: float, spiking: bool) -> LayerOps:
    """ACs, MACs, their unpruned counterparts and events of one layer and shape under ``convention``
    (not ``"syops"``, whose rate is per call: the counter keeps its figures itself).

    ``steps_per_row``: time steps that one row of this layer stands for, ``samples x T / rows``
    over the whole count (1 for a layer run at every step, T for one run once per sample: a
    static stem or a readout on the time-mean). The paper convention charges every layer per
    time step with it.
    """
    f, g, sums = acc.pruned, acc.dense, acc.sums
    events = sums[BINARY] + sums[MULTI] + sums[REAL_NONZERO] + sums[TERNARY_NONZERO]
    if convention == "exact":
        return LayerOps(
            f[BINARY] + f[MULTI],
            f[REAL_NONZERO] + f[TERNARY_NONZERO],
            g[BINARY] + g[MULTI],
            g[REAL_NONZERO] + g[TERNARY_NONZERO],
            events,
        )
    if convention == "neurobench":
        return LayerOps(
            f[BINARY] + f[TERNARY_NONZERO],
            f[MULTI_NONZERO] + f[REAL_NONZERO],
            acc.rows_neurobench_spiking * acc.dense_row,
            (acc.rows - acc.rows_neurobench_spiking) * acc.dense_row,
            events,
        )
    if convention == "sinabs":
        synops = g[BINARY] + g[MULTI] + g[REAL_SUM]
        return LayerOps(synops, 0.0, synops, 0.0, events)
    if convention != "paper":
        raise ValueError(f"layer_ops does not compute the {convention!r} convention")
    # paper: T x FL (MACs) for the encoding layer and every ANN layer, fr x T x FL (ACs) otherwise
    if acc.encoding or not spiking:
        macs = float(acc.flops_row * acc.rows * steps_per_row)
        return LayerOps(0.0, macs, 0.0, macs, events)
    value_sum = sums[BINARY] + sums[MULTI] + sums[REAL_SUM]  # fr x rows x K
    acs = value_sum / acc.k * acc.flops_row * steps_per_row
    return LayerOps(acs, 0.0, acs, 0.0, events)
