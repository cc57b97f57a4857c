"""Energy per operation at 45 nm (Horowitz, "Computing's energy problem", ISSCC 2014).

A synaptic operation on a spike is one accumulate (AC = one add); on a real-valued input it is a
multiply-accumulate (MAC = one multiply + one add). Energy estimate, in picojoules:

    E = ACs * E_AC + MACs * E_MAC

The SNN literature's usual figures (0.9 pJ per AC, 4.6 pJ per MAC) are the fp32 row.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["EnergyPreset", "ENERGY_PRESETS", "DEFAULT_PRESET", "energy_preset", "energy_pj"]


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


def energy_preset(preset: str) -> EnergyPreset:
    """The :class:`EnergyPreset` called ``preset``; ValueError naming the presets otherwise."""
    try:
        return ENERGY_PRESETS[preset]
    except (KeyError, TypeError):
        raise ValueError(f"preset must be one of {', '.join(map(repr, ENERGY_PRESETS))}, got {preset!r}") from None


def energy_pj(acs: float, macs: float, preset: str = DEFAULT_PRESET) -> float:
    """Energy in pJ of ``acs`` accumulates and ``macs`` multiply-accumulates: ACs*E_AC + MACs*E_MAC."""
    p = energy_preset(preset)
    return acs * p.ac_pj + macs * p.mac_pj
