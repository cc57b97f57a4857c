"""The one neuron factory: SpikingJelly 0.0.0.0.14 multi-step spiking neurons, and their backends.

This is the only module of snn_lats that knows about neuron backends (``"torch"`` or SpikingJelly's
fused CuPy kernels). Networks call :func:`make_neuron` and never look at backends themselves.

Backends, as chosen by the ``backend`` argument:

- ``"torch"``: SpikingJelly's PyTorch implementation, on any device.
- ``"cupy"``: SpikingJelly's fused CuPy kernels. Checked when the neuron is built; without a usable
  CuPy and CUDA GPU a :class:`RuntimeError` says what is missing. Needs CUDA float32/float16 inputs.
- ``"auto"`` (default): decided at every forward from the input, not once at construction:
  CuPy for a CUDA float32/float16 input when CuPy is usable, torch otherwise. Why per call: a model
  built on a GPU machine is often run on the CPU (tests, estimators, a model moved with
  ``.cpu()``), and a CuPy neuron given a CPU tensor fails. Following the input makes every device
  move safe without the user doing anything.

:func:`set_backend` changes the backend of every neuron of an existing model, "auto" included.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from spikingjelly.activation_based import base, surrogate
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

__all__ = ["NEURONS", "BACKENDS", "make_neuron", "set_backend", "cupy_usable", "cupy_unusable_reason", "reset_state"]

#: Neuron kinds accepted by ``neuron=``: integrate-and-fire, leaky IF, parametric LIF (learned tau).
NEURONS: dict[str, type[sj_neuron.BaseNode]] = {
    "if": sj_neuron.IFNode,
    "lif": sj_neuron.LIFNode,
    "plif": sj_neuron.ParametricLIFNode,
}
#: Values accepted by ``backend=``.
BACKENDS: tuple[str, ...] = ("auto", "cupy", "torch")

_CUPY_DTYPES = (torch.float32, torch.float16)  # the dtypes SpikingJelly's CuPy kernels implement


@functools.cache
def cupy_unusable_reason() -> str | None:
    """Why SpikingJelly's CuPy backend cannot run here, or None when it can. Checked once, cached.

    Needs all of: a CUDA device for torch, ``import cupy``, ``cupy.cuda.is_available()``, and a real
    array operation (cupy-cuda12x imports, and may even report a device, yet fail at the first
    kernel on a driver that is too old).
    """
    missing = []
    if not torch.cuda.is_available():
        missing.append("torch.cuda.is_available() is False (no CUDA device for torch)")
    try:
        import cupy
    except Exception as error:  # ImportError, or a broken CUDA library raising at import
        missing.append(f"cupy is not importable ({type(error).__name__}: {error}); install cupy-cuda12x")
        return "; ".join(missing)
    try:
        if not cupy.cuda.is_available():
            missing.append("cupy.cuda.is_available() is False (cupy sees no usable CUDA device)")
        elif not missing:
            int(cupy.arange(3).sum())
    except Exception as error:
        missing.append(f"a cupy array operation failed ({type(error).__name__}: {error})")
    if not missing and base.cupy is None:
        missing.append("spikingjelly failed to import cupy")
    return "; ".join(missing) or None


def cupy_usable() -> bool:
    """True when SpikingJelly's CuPy neuron kernels can run here (see :func:`cupy_unusable_reason`)."""
    return cupy_unusable_reason() is None


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cupy":
        reason = cupy_unusable_reason()
        if reason is not None:
            raise RuntimeError(
                f"backend='cupy' needs CuPy and a CUDA GPU, but {reason}. "
                "Use backend='auto' (CuPy when usable, torch otherwise) or backend='torch'."
            )


def _follow_input(node: nn.Module, args: tuple) -> None:
    """Forward pre-hook of every factory-built neuron: applies the "auto" backend rule per call."""
    if node.auto_backend:
        x = args[0]
        wanted = "cupy" if x.is_cuda and x.dtype in _CUPY_DTYPES and cupy_usable() else "torch"
        if node.backend != wanted:
            node.backend = wanted


def _set_node_backend(node: sj_neuron.BaseNode, backend: str) -> None:
    if not hasattr(node, "auto_backend"):  # a neuron not built here: give it the hook once
        node.register_forward_pre_hook(_follow_input)
    node.auto_backend = backend == "auto"
    node.backend = "torch" if backend == "auto" else backend


def make_neuron(neuron: str = "if", backend: str = "auto", **neuron_kwargs: Any) -> sj_neuron.BaseNode:
    """One layer of multi-step spiking neurons (``step_mode="m"``: input and output ``[T, N, ...]``).

    Defaults follow SEW ResNet/STDS: hard reset to ``v_reset=0``, ``v_threshold=1``,
    ``detach_reset=True`` and the ATan surrogate gradient; ``neuron_kwargs`` override them or add
    the kind's own (``tau`` for "lif", ``init_tau`` for "plif"). For "if" the charge is
    ``H[t] = V[t-1] + X[t]``, the spike ``S[t] = Θ(H[t] - v_threshold)``, then the reset.
    """
    if neuron not in NEURONS:
        raise ValueError(f"neuron must be one of {tuple(NEURONS)}, got {neuron!r}")
    _check_backend(backend)
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
    _set_node_backend(node, backend)
    return node


def set_backend(model: nn.Module, backend: str) -> None:
    """Set the backend ("auto", "cupy" or "torch") of every spiking neuron in ``model``.

    What ``spikingjelly.activation_based.functional.set_backend`` does for neurons, plus the
    availability check of "cupy" and the per-forward "auto" rule of this module.
    """
    _check_backend(backend)
    for m in model.modules():
        if isinstance(m, sj_neuron.BaseNode):
            _set_node_backend(m, backend)


def reset_state(model: nn.Module) -> None:
    """Reset the state (membrane potentials) of every stateful SpikingJelly module in ``model``.

    Like ``functional.reset_net``, but touches only ``base.MemoryModule`` instances, so other
    modules that happen to have a ``reset`` method (a parametrization, say) are left alone.
    """
    for m in model.modules():
        if isinstance(m, base.MemoryModule):
            m.reset()
