"""The kinds of layers the counter tells apart: synaptic layers, neurons (SpikingJelly's, or an
ANN's activations), normalisation and pooling; and whether a model spikes."""

from __future__ import annotations

from torch import nn

from snn_lats._spikingjelly import CLOCK_DRIVEN_NODE, BaseNode
from snn_lats._spikingjelly import neuron as sj_neuron

__all__ = [
    "ANN_ACTIVATIONS",
    "BINARY_NEURONS",
    "NEURONS",
    "NORM_LAYERS",
    "POOL_LAYERS",
    "SYNAPTIC_LAYERS",
    "is_spiking",
    "sample_ndim",
]

SYNAPTIC_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)

# The neuron layers of an ANN: element-wise activation modules. Their "firing rate" is the
# fraction of nonzero outputs (activation sparsity); functional activations (F.relu) are not seen.
ANN_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
POOL_LAYERS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


# SpikingJelly's neurons: activation_based, and clock_driven (the API syops hooks) where present.
NEURONS = (BaseNode,) if CLOCK_DRIVEN_NODE is None else (BaseNode, CLOCK_DRIVEN_NODE)

# Their outputs are Heaviside(v - threshold): 0/1 by construction with a spiking surrogate.
BINARY_NEURONS = tuple(
    getattr(sj_neuron, n)
    for n in ("IFNode", "LIFNode", "ParametricLIFNode", "QIFNode", "EIFNode", "IzhikevichNode")
    if hasattr(sj_neuron, n)
)

_F32_EXACT = 2**24  # float32 represents every integer below this exactly


def is_spiking(model: nn.Module) -> bool:
    """``model.spiking`` when present, else whether the model holds a SpikingJelly neuron."""
    spiking = getattr(model, "spiking", None)
    if spiking is not None:
        return bool(spiking)
    return any(isinstance(m, NEURONS) for m in model.modules())


def sample_ndim(module: nn.Module) -> int:
    """Dimensions of one row's input to a synaptic layer: (C, *spatial) or (features,)."""
    return 1 if isinstance(module, nn.Linear) else len(module.kernel_size) + 1
