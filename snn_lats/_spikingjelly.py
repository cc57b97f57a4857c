"""The one place that imports SpikingJelly: the release installed, its neuron backends, and the
parts of its API snn_lats uses. Every other module imports SpikingJelly's names from here, so
that the next release is a change in this file (as :mod:`snn_lats._torchvision` is for torchvision).

Two release lines are supported, with the same ``activation_based`` conventions (step modes,
``MemoryModule`` state, the SEW ResNet constructors and state-dict keys):

- **0.0.0.0.14** (the tested set): every neuron module has its own ``backend``, ``"torch"`` or
  ``"cupy"`` (fused CuPy multi-step kernels, CUDA only).
- **2.x**: no CuPy and no ``backend`` argument. Each neuron kind picks its CUDA implementation
  process-wide, from the variable ``SJ_<KIND>_CUDA_IMPLEMENTATION`` (``auto``, ``cuda``: native
  kernels, ``triton``, ``torch``), read once, when the kind's kernels are first used. CPU inputs
  always run the torch implementation.

Backend names offered (:data:`BACKENDS`): ``auto`` and ``torch`` on both; ``cupy`` on 0.0.0.0.14;
``cuda`` and ``triton`` on 2.x. A configuration may name any of them (``networks.registry.ALL_BACKENDS``: a
checkpoint trained under either release loads under the other); building a neuron with a backend
the installed release does not offer is a one-line error that names the release and its offer.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snn_lats import _torchvision  # noqa: F401  (first: spikingjelly imports torchvision)

# isort: split
from spikingjelly.activation_based import base, functional, layer, neuron, surrogate

__all__ = [
    "BACKENDS",
    "CLOCK_DRIVEN_NODE",
    "CUPY_ERA",
    "NEURON_TYPES",
    "VERSION",
    "BaseNode",
    "MemoryModule",
    "StepModule",
    "apply_backend",
    "backend_unusable_reason",
    "base",
    "check_backend",
    "cupy_unusable_reason",
    "event_reader",
    "functional",
    "integrate_frames",
    "layer",
    "neuron",
    "reset_state",
    "surrogate",
]

#: The installed release, e.g. "0.0.0.0.14" or "2.0.0".
VERSION: str = importlib.metadata.version("spikingjelly")
#: True for the 0.0.0.0.x line: per-module backends, CuPy kernels.
CUPY_ERA: bool = VERSION.startswith("0.")

#: The backends the installed release offers.
BACKENDS: tuple[str, ...] = ("auto", "cupy", "torch") if CUPY_ERA else ("auto", "cuda", "torch", "triton")

BaseNode = neuron.BaseNode
MemoryModule = base.MemoryModule
StepModule = base.StepModule

#: The class of each neuron kind (``networks.registry.NEURON_KINDS``, in its order).
NEURON_TYPES: dict[str, type[nn.Module]] = {
    "if": neuron.IFNode,
    "lif": neuron.LIFNode,
    "plif": neuron.ParametricLIFNode,
}

try:  # the older clock_driven API (0.0.0.0.x only), which syops hooks
    from spikingjelly.clock_driven.neuron import BaseNode as CLOCK_DRIVEN_NODE
except ImportError:
    CLOCK_DRIVEN_NODE = None

_CUPY_DTYPES = (torch.float32, torch.float16)  # the dtypes 0.0.0.0.14's CuPy kernels implement
# 2.x: the kernels package and the variable of each kind (spikingjelly/_ops/<kind>/__init__.py).
_KINDS_2X = {neuron.IFNode: "if_", neuron.LIFNode: "lif", neuron.ParametricLIFNode: "plif"}


@functools.cache
def cupy_unusable_reason() -> str | None:
    """Why 0.0.0.0.14's CuPy kernels cannot run here, or None. Needs a CUDA device,
    ``import cupy``, ``cupy.cuda.is_available()`` and a real array operation (cupy-cuda12x imports,
    and may even report a device, yet fail at the first kernel on a driver that is too old).
    Checked once, cached."""
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
    if not missing and getattr(base, "cupy", None) is None:
        missing.append("spikingjelly failed to import cupy")
    return "; ".join(missing) or None


def backend_unusable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None when it can ("auto" and "torch" always can).
    "cupy": :func:`cupy_unusable_reason`; "cuda" and "triton" (2.x) need a CUDA device, "triton"
    the triton package, and "cuda" SpikingJelly's native operators, which its PyPI wheel does not
    include (they are built from source, ``SJ_BUILD_NATIVE_CUDA=1``)."""
    if backend == "cupy":
        return cupy_unusable_reason()
    if backend in ("cuda", "triton"):
        if not torch.cuda.is_available():
            return "torch.cuda.is_available() is False (no CUDA device for torch)"
        if backend == "triton" and importlib.util.find_spec("triton") is None:
            return "the triton package is not installed"
        # Looked up as files: importing the kernels' package would read its variable too early.
        root = Path(importlib.util.find_spec("spikingjelly").submodule_search_locations[0])
        if backend == "cuda" and not any((root / "_ops" / "if_").glob("_C*")):
            return (
                f"SpikingJelly {VERSION} has no native CUDA operators here (its PyPI wheel has none; "
                "they are built from source with SJ_BUILD_NATIVE_CUDA=1)"
            )
    return None


def check_backend(backend: str) -> None:
    """Refuse, in one line, a backend the installed SpikingJelly does not offer or cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (what SpikingJelly {VERSION} offers), got {backend!r}")
    reason = backend_unusable_reason(backend)
    if reason is not None:
        needs = {"cupy": "CuPy and a CUDA GPU", "cuda": "a CUDA GPU and SpikingJelly's native operators"}.get(
            backend, "a CUDA GPU and triton"
        )
        raise RuntimeError(
            f"backend={backend!r} needs {needs}, but {reason}. "
            f"Use backend='auto' (the fastest that runs) or backend='torch'."
        )


def _follow_input(node: nn.Module, args: tuple) -> None:
    """0.0.0.0.14: forward pre-hook of every neuron set to "auto": CuPy for a CUDA float32/float16
    input when CuPy is usable, torch otherwise, decided per call. Why per call: a model built on a
    GPU machine is often run on the CPU (tests, estimators, ``.cpu()``), and a CuPy neuron given a
    CPU tensor fails."""
    if node.auto_backend:
        x = args[0]
        fits = x.is_cuda and x.dtype in _CUPY_DTYPES
        wanted = "cupy" if fits and cupy_unusable_reason() is None else "torch"
        if node.backend != wanted:
            node.backend = wanted


def _variable(node: nn.Module) -> tuple[str, str] | None:
    """2.x: ``(kernels module, variable)`` choosing the implementation of ``node``'s kind."""
    for kind, package in _KINDS_2X.items():
        if type(node) is kind:
            return f"spikingjelly._ops.{package}", f"SJ_{package.rstrip('_').upper()}_CUDA_IMPLEMENTATION"
    return None


def apply_backend(node: nn.Module, backend: str) -> None:
    """Give one neuron ``backend`` (already checked with :func:`check_backend`).

    0.0.0.0.14: the module's own ``backend``, with "auto" following the input (above).
    2.x: the process-wide choice of the neuron's kind, for CUDA inputs. "auto" leaves it to
    SpikingJelly (native CUDA, then Triton, then torch) or to a variable the user set; another name
    sets the variable, and, when the kind's kernels are already loaded (SpikingJelly read the
    variable then), their selection too, so the next CUDA forward follows it."""
    if CUPY_ERA:
        if not hasattr(node, "auto_backend"):  # a neuron not built by the factory: hook it once
            node.register_forward_pre_hook(_follow_input)
        node.auto_backend = backend == "auto"
        node.backend = "torch" if backend == "auto" else backend
        return
    found = _variable(node)
    if found is None or backend == "auto":
        return
    module, variable = found
    os.environ[variable] = backend
    if module in sys.modules:
        # SpikingJelly 2.0.0 keeps the variable's value and its per-device choices on the kind's
        # _CudaSelection (spikingjelly/_ops/selection.py); a later release may not.
        selection = getattr(sys.modules[module], "_selection", None)
        if not (hasattr(selection, "_requested") and hasattr(selection, "_selections")):
            raise RuntimeError(
                f"SpikingJelly {VERSION} has loaded the {type(node).__name__} kernels already; "
                f"set {variable}={backend} before the first forward, or start a new process"
            )
        if selection._requested != backend:
            selection._requested = backend
            selection._selections.clear()
            getattr(selection, "_compiled_selections", {}).clear()


def reset_state(model: nn.Module) -> None:
    """Reset every ``MemoryModule`` of ``model`` (membrane potentials) to its reset values.

    Like ``functional.reset_net``, but touches only SpikingJelly's stateful modules, so other
    modules that happen to have a ``reset`` method (a parametrization, say) are left alone. Each
    state gets a fresh copy of its reset value, which is 0.0.0.0.14's ``reset``; 2.x's restores a
    tensor state in place instead, so the state is a float at the first forward and a tensor
    later, and torch.compile recompiles the forward twice on that."""
    for m in model.modules():
        if isinstance(m, MemoryModule):
            for key, value in m._memories_rv.items():
                m._memories[key] = copy.deepcopy(value)
            if getattr(m, "v_seq", None) is not None:  # 2.x's BaseNode.reset also drops the trace
                m.v_seq = None


# Event-camera files. spikingjelly.datasets imports torchvision's data sets (and, on 2.x,
# torchaudio): loaded on first use, so that a static-image run never pays for it.
#: The reader of each event data set's original files, by the ``spikingjelly.datasets`` module
#: and name that holds it.
_EVENT_READERS = {
    "dvs128-gesture": ("spikingjelly.datasets", "load_aedat_v3"),  # AEDAT 3.1, polarity packets
    "n-mnist": ("spikingjelly.datasets", "load_ATIS_bin"),  # ATIS 40-bit events
}


def _load_cifar10_dvs(module, path: str) -> dict:
    """``CIFAR10DVS.load_origin_data`` (AEDAT 2.0) of ``module`` (``spikingjelly.datasets.cifar10_dvs``)
    with its one removed NumPy call replaced: 0.0.0.0.14 reads the words with ``np.fromstring``,
    whose binary mode NumPy 2.4 removed; its header skip, address parsing and axes are used as they are."""
    with open(path, "rb") as f:
        f.seek(module.skip_header(f))
        words = np.frombuffer(f.read(), dtype=">u4")
    if len(words) % 2:
        raise ValueError(f"{len(words)} 32-bit words: not address/time-stamp pairs")
    kwargs = dict(x_mask=0xFE, x_shift=1, y_mask=0x7F00, y_shift=8, polarity_mask=1, polarity_shift=None)
    x, y, p = module.parse_raw_address(words[::2], **kwargs)  # the arguments load_origin_data passes
    return {"t": words[1::2], "x": 127 - y, "y": 127 - x, "p": 1 - p.astype(int)}  # and its axes


def _datasets_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:  # 2.x's datasets need a working torchaudio, say
        raise ImportError(
            f"SpikingJelly {VERSION}'s event readers cannot be imported ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from None


def event_reader(dataset: str):
    """SpikingJelly's reader of ``dataset``'s original event files: a function of a path that
    returns ``{"t", "x", "y", "p"}`` arrays. ImportError, in one line, where it cannot be loaded."""
    if dataset == "cifar10-dvs":
        return functools.partial(_load_cifar10_dvs, _datasets_module("spikingjelly.datasets.cifar10_dvs"))
    module, name = _EVENT_READERS[dataset]
    return getattr(_datasets_module(module), name)


def integrate_frames(events, split_by: str, frames: int, height: int, width: int):
    """SpikingJelly's integration of ``events`` into ``frames`` frames ``[T, 2, H, W]`` of event
    counts (channel = polarity), split into equal event counts (``"number"``) or equal times."""
    integrate = _datasets_module("spikingjelly.datasets").integrate_events_by_fixed_frames_number
    return integrate(events, split_by, frames, height, width)
