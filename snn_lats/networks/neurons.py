"""The one neuron factory: SpikingJelly multi-step spiking neurons, and their backends.

Networks call :func:`make_neuron` and never look at backends themselves. What a backend name
means depends on the SpikingJelly release installed (:mod:`snn_lats._spikingjelly`):

- ``"auto"`` (default): the fastest that runs on the input. On 0.0.0.0.14, decided at every
  forward: CuPy for a CUDA float32/float16 input when CuPy is usable, torch otherwise (a model
  built on a GPU machine is often run on the CPU, and a CuPy neuron given a CPU tensor fails). On
  2.x, SpikingJelly's own choice: native CUDA, then Triton, then torch; torch on the CPU.
- ``"torch"``: SpikingJelly's PyTorch implementation, on any device.
- ``"cupy"`` (0.0.0.0.14): the fused CuPy kernels; ``"cuda"`` and ``"triton"`` (2.x): its native
  and Triton kernels. Checked when the neuron is built: where they cannot run, or on a release that
  does not offer them, one error says why.

:func:`set_backend` changes the backend of every neuron of an existing model, "auto" included.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from snn_lats._spikingjelly import (
    NEURON_TYPES,
    BaseNode,
    apply_backend,
    check_backend,
    cupy_unusable_reason,
    reset_state,
    surrogate,
)

from .registry import ALL_BACKENDS

__all__ = [
    "ALL_BACKENDS",
    "NEURONS",
    "make_neuron",
    "set_backend",
    "cupy_usable",
    "cupy_unusable_reason",
    "reset_state",
]

#: The class of each neuron kind accepted by ``neuron=`` (:data:`~snn_lats.networks.registry.NEURON_KINDS`):
#: integrate-and-fire, leaky IF, parametric LIF (learned tau).
NEURONS = NEURON_TYPES


def cupy_usable() -> bool:
    """True when SpikingJelly 0.0.0.0.14's CuPy neuron kernels can run here."""
    return cupy_unusable_reason() is None


def make_neuron(neuron: str = "if", backend: str = "auto", **neuron_kwargs: Any) -> BaseNode:
    """One layer of multi-step spiking neurons (``step_mode="m"``: input and output ``[T, N, ...]``).

    Defaults follow SEW ResNet/STDS: hard reset to ``v_reset=0``, ``v_threshold=1``,
    ``detach_reset=True`` and the ATan surrogate gradient; ``neuron_kwargs`` override them or add
    the kind's own (``tau`` for "lif", ``init_tau`` for "plif"). For "if" the charge is
    ``H[t] = V[t-1] + X[t]``, the spike ``S[t] = Θ(H[t] - v_threshold)``, then the reset.
    """
    if neuron not in NEURONS:
        raise ValueError(f"neuron must be one of {tuple(NEURONS)}, got {neuron!r}")
    check_backend(backend)
    for fixed in ("step_mode", "backend"):
        if fixed in neuron_kwargs:
            raise TypeError(
                f"neuron_kwargs may not set {fixed!r}: networks run neurons multi-step, "
                "and the backend is the backend= argument"
            )
    kwargs = {"detach_reset": True, **neuron_kwargs}
    # A fresh surrogate per layer (as SpikingJelly's own models deep-copy theirs).
    kwargs["surrogate_function"] = copy.deepcopy(kwargs.get("surrogate_function") or surrogate.ATan())
    node = NEURONS[neuron](step_mode="m", **kwargs)
    apply_backend(node, backend)
    return node


def set_backend(model: nn.Module, backend: str) -> None:
    """Set the backend of every spiking neuron in ``model``, SpikingJelly's own models included.

    What ``spikingjelly.activation_based.functional.set_backend`` does for neurons, plus the
    availability check and the "auto" rule of this module.
    """
    check_backend(backend)
    for m in model.modules():
        if isinstance(m, BaseNode):
            apply_backend(m, backend)
