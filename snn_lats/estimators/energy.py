"""Energy per operation at 45 nm (Horowitz, "Computing's energy problem", ISSCC 2014).

A synaptic operation on a spike is one accumulate (AC = one add); on a real-valued input it is a
multiply-accumulate (MAC = one multiply + one add). Compute-only estimate, in picojoules:

    E = ACs * E_AC + MACs * E_MAC

The SNN literature's usual figures (0.9 pJ per AC, 4.6 pJ per MAC) are the fp32 row.

:func:`memory_energy_pj` also charges memory traffic, after the counting model of Lemaire et
al., "An Analytical Estimation of Spiking Neural Networks Energy Efficiency", ICONIP 2022
(arXiv 2210.13107), eqs. 3-15, with one SRAM access per value moved (``E_mem``; default 5 pJ: a
64-bit read of an 8 KB SRAM costs 10 pJ at 45 nm, Horowitz 2014, here per 32-bit value; writes
as reads):

- a synaptic operation on a spike (AC) reads its weight and reads and writes the membrane
  potential it adds to (eqs. 7-10, 14-15: ``3 E_mem`` per AC);
- a multiply-accumulate on a real input (MAC) reads its weight and its input (eqs. 3-4, 6);
- every spiking neuron, at every step, reads and writes its potential (leak, threshold: the
  ``C_out x H_out x W_out x T`` terms of eqs. 9 and 14), and reads each input spike and writes
  each output spike once (eqs. 5, 13);
- every output of an ANN layer is written once (eqs. 11-12).

It needs ACs and MACs (any convention), the neuron updates and spikes of the neuron rows, and the
output elements of the synaptic rows of an ANN (``output_elements``). Address computation
(Lemaire's ``E_addr``) is not charged.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "DEFAULT_MEMORY_PJ",
    "DEFAULT_PRESET",
    "ENERGY_PRESETS",
    "EnergyPreset",
    "energy_pj",
    "energy_preset",
    "memory_energy_pj",
]


class EnergyPreset(NamedTuple):
    """Energy of one accumulate and of one multiply-accumulate, in picojoules."""

    ac_pj: float
    mac_pj: float
    source: str


_HOROWITZ = "Horowitz, ISSCC 2014, 45 nm"

# MAC = multiply + add. Horowitz 45 nm: fp32 add 0.9, mult 3.7; fp16 add 0.4, mult 1.1;
# int32 add 0.1, mult 3.1; int8 add 0.03, mult 0.2 (pJ).
ENERGY_PRESETS: dict[str, EnergyPreset] = {
    "45nm-fp32": EnergyPreset(0.9, 0.9 + 3.7, _HOROWITZ),
    "45nm-fp16": EnergyPreset(0.4, 0.4 + 1.1, _HOROWITZ),
    "45nm-int32": EnergyPreset(0.1, 0.1 + 3.1, _HOROWITZ),
    "45nm-int8": EnergyPreset(0.03, 0.03 + 0.2, _HOROWITZ),
}

DEFAULT_PRESET = "45nm-fp32"


def energy_preset(preset: str | EnergyPreset) -> EnergyPreset:
    """The :class:`EnergyPreset` called ``preset`` (an :class:`EnergyPreset` is returned as it is);
    ValueError naming the presets otherwise."""
    if isinstance(preset, EnergyPreset):
        return preset
    try:
        return ENERGY_PRESETS[preset]
    except (KeyError, TypeError):
        raise ValueError(f"preset must be one of {', '.join(map(repr, ENERGY_PRESETS))}, got {preset!r}") from None


def energy_pj(acs: float, macs: float, preset: str = DEFAULT_PRESET) -> float:
    """Energy in pJ of ``acs`` accumulates and ``macs`` multiply-accumulates: ACs*E_AC + MACs*E_MAC."""
    p = energy_preset(preset)
    return acs * p.ac_pj + macs * p.mac_pj


DEFAULT_MEMORY_PJ = 5.0  # one 32-bit SRAM access: half of Horowitz's 10 pJ 64-bit read of an 8 KB SRAM


def memory_energy_pj(
    rows: list[dict], totals: dict, preset: str = DEFAULT_PRESET, memory_pj: float = DEFAULT_MEMORY_PJ
) -> dict[str, float]:
    """Energy per sample (pJ) of compute and memory traffic, by part, from a report's rows and
    totals (the layout of ``SOPReport.to_dict()``): ``compute``, ``weights``, ``potentials``,
    ``activations`` and their ``total`` (the module docstring gives the counting rule)."""
    p = energy_preset(preset)
    n = totals["samples"]
    acs, macs = totals["acs"] / n, totals["macs"] / n
    neurons = [r for r in rows if r["kind"] == "neuron" and r.get("output_elements")]
    if totals["spiking"]:
        updates = sum(r["output_elements"] for r in neurons) / n
        spikes = sum(r["output_elements"] * (r["firing_rate"] or 0.0) for r in neurons) / n
        potentials = memory_pj * (2 * acs + 2 * updates)
        activations = memory_pj * (2 * spikes + macs)  # a spike written once, read once; MAC inputs read
    else:
        outputs = sum(r.get("output_elements") or 0 for r in rows if r["kind"] == "synaptic") / n
        potentials = 0.0
        activations = memory_pj * (macs + outputs)
    parts = {
        "compute": acs * p.ac_pj + macs * p.mac_pj,
        "weights": memory_pj * (acs + macs),
        "potentials": potentials,
        "activations": activations,
    }
    return parts | {"total": sum(parts.values())}
