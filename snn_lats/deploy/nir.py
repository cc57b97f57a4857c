"""A finalized SEW ResNet as a NIR graph (Neuromorphic Intermediate Representation, ``nir`` 1.0).

NIR describes a network in continuous time; a SpikingJelly network runs in discrete steps. The
graph written here is the forward-Euler reading of NIR's equations with one step of ``dt``
seconds, under which it computes exactly what SpikingJelly computes (``neurons`` below):

- ``IF`` (NIR: ``dv/dt = R I``): ``v += dt·R·I``; with ``R = 1/dt`` that is SpikingJelly's
  ``H = V + X``.
- ``LIF`` (NIR: ``τ dv/dt = (v_leak - v) + R I``): ``v += dt/τ · (v_leak - v + R·I)``; with
  ``τ = τ_SJ·dt`` and ``v_leak = v_reset = 0`` that is ``H = V + (X - V)/τ_SJ`` for
  ``decay_input=True`` (``R = 1``) and ``H = V - V/τ_SJ + X`` for ``decay_input=False``
  (``R = τ_SJ``). A PLIF neuron is a LIF with its learned ``τ_SJ = 1/sigmoid(w)``.
- Spike and reset: NIR fires where ``v > v_threshold`` and then sets ``v = v_reset`` (the reset
  potential of NIR 1.0, added by neuromorphs/NIR#129): SpikingJelly's hard reset with
  ``v_reset = 0``. SpikingJelly fires where ``v >= v_threshold``: the two differ only when a
  membrane potential equals the threshold exactly.

Nodes and edges, named after the modules (``layer1.0.conv1``, ...):

- every conv with the BatchNorm after it folded in (:func:`~snn_lats.deploy.fold.fold_batchnorm`):
  one ``Conv2d`` with a bias; the classifier: ``Affine``;
- the stem's 3x3 max-pool (ImageNet stem) acts on spikes, where a max is an OR:
  ``max(s) = [Σ s > 0.5]``, a ``SumPool2d`` then a ``Threshold`` at 0.5 (exact for 0/1 inputs);
- SEW connect functions g(A, S), A the residual branch's spikes, S the identity's: ADD is NIR's
  edge fan-in (a node's input is the sum of its incoming edges, so A + S needs no node of its own,
  and its 0, 1, 2, ... spike counts flow on as they are); AND ``A·S = [A + S > 1.5]`` is a
  ``Threshold`` at 1.5; IAND ``(1 - A)·S = [S - A > 0.5]`` a ``Scale`` by -1 of A and a ``Threshold``
  at 0.5 (exact for 0/1 spikes; thresholds halfway between integers hold under > and >=);
- the global average pool: ``AvgPool2d`` over the whole feature map, then ``Flatten`` and ``fc``.

The static image is the graph's input at every one of the T steps (the stem's conv sees the same
image each step, as SpikingJelly's repeated encoding does), and the network's logits are the mean
over the T steps of the graph's output (the ``fc`` is linear: ``fc(mean_t x) = mean_t fc(x)``).
Graph metadata records T, dt and this readout.

Refused, with :class:`NIRExportError` naming the module and the reason: networks that are not SEW
ResNets (an ANN's ReLU has no NIR node), soft-reset neurons (``v_reset=None``: NIR resets to
``v_reset``, and in discrete time reset by subtraction is another neuron), ``v_reset != 0`` (NIR
has no initial state; SpikingJelly starts the membrane at ``v_reset``), neurons of other kinds,
AND/IAND on a non-binary identity, max-pooling with dilation or ``ceil_mode``, an adaptive pool to
anything but 1x1, and BatchNorms without running statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from snn_lats._spikingjelly import neuron as sj_neuron
from snn_lats.deploy.fold import fold_batchnorm
from snn_lats.deploy.formats import DEFAULT_DT
from snn_lats.networks import QKFormer, SpikeDrivenTransformer, Spikformer
from snn_lats.networks.sew_resnet import BasicBlock, Bottleneck, SEWResNet

__all__ = ["NIRExportError", "require_nir", "to_nir"]

Shape = tuple[int, ...]


class NIRExportError(ValueError):
    """A module of the network has no exact NIR form; the message names it and says why."""

    def __init__(self, module: str, kind: str, reason: str):
        super().__init__(f"cannot export {module} ({kind}) to NIR: {reason}")
        self.module = module
        self.reason = reason


def require_nir():
    """The ``nir`` module; ImportError saying how to install it when it is missing or too old."""
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the nir package: pip install 'snn-lats[nir]'") from None
    # nir < 1.0.6 has no reset potential on IF/LIF (NIR#129) nor node metadata; sinabs 3.1.3 pins
    # nir <= 1.0.4, so an environment with sinabs may hold one.
    if "v_reset" not in getattr(nir.IF, "__dataclass_fields__", {}):
        version = getattr(nir, "__version__", "unknown")
        raise ImportError(
            f"NIR export needs nir >= 1.0.8 (IF/LIF with v_reset), this environment has {version}: "
            "pip install 'nir>=1.0.8' (sinabs pins nir<=1.0.4: install sinabs with --no-deps)"
        )
    return nir


def _array(value: torch.Tensor | float, shape: Shape = ()) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float32).numpy().copy()
    return np.full(shape, value, dtype=np.float32)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _pooled(shape: Shape, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> Shape:
    c, h, w = shape
    return (c, (h + 2 * padding[0] - kernel[0]) // stride[0] + 1, (w + 2 * padding[1] - kernel[1]) // stride[1] + 1)


class _Graph:
    """Nodes and edges under construction. A signal is the list of nodes whose outputs sum to it."""

    def __init__(self, nir, dt: float):
        self.nir = nir
        self.dt = dt
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node, sources: Sequence[str], module: str | None = None) -> list[str]:
        node.metadata = {"module": module if module is not None else name, **node.metadata}
        self.nodes[name] = node
        self.edges.extend((source, name) for source in sources)
        return [name]

    def conv(
        self, name: str, conv: nn.Module, bn_name: str, bn: nn.Module, x: list[str], shape: Shape
    ) -> tuple[list[str], Shape]:
        if not isinstance(conv, nn.Conv2d):
            raise NIRExportError(name, type(conv).__name__, "expected a Conv2d")
        if not isinstance(bn, nn.BatchNorm2d):
            raise NIRExportError(bn_name, type(bn).__name__, f"expected the BatchNorm2d after {name}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise NIRExportError(name, "Conv2d", f"padding {conv.padding!r}/{conv.padding_mode!r}: NIR pads with zeros")
        try:
            weight, bias = fold_batchnorm(conv, bn)
        except ValueError as error:
            raise NIRExportError(bn_name, type(bn).__name__, f"folding it into {name}: {error}") from None
        node = self.nir.Conv2d(
            input_shape=shape[1:],
            weight=_array(weight),
            stride=_pair(conv.stride),
            padding=_pair(conv.padding),
            dilation=_pair(conv.dilation),
            groups=conv.groups,
            bias=_array(bias),
        )
        node.metadata = {"folded_batchnorm": bn_name}
        out_shape = tuple(int(v) for v in node.output_type["output"])
        return self.add(name, node, x), out_shape

    def neuron(self, name: str, node: nn.Module, x: list[str], shape: Shape) -> list[str]:
        kind = type(node).__name__
        # The exact types: a subclass (SpikingJelly's LIAFNode is a LIFNode that emits analog
        # values) may compute something else under the same parameters.
        if type(node) not in (sj_neuron.IFNode, sj_neuron.LIFNode, sj_neuron.ParametricLIFNode):
            raise NIRExportError(name, kind, "only IF, LIF and PLIF neurons (not subclasses) have a NIR form here")
        if node.v_reset is None:
            raise NIRExportError(
                name,
                kind,
                "soft reset (v_reset=None, v -= v_threshold after a spike): NIR's IF/LIF reset to v_reset, "
                "and in discrete time reset by subtraction is a different neuron",
            )
        if float(node.v_reset) != 0.0:
            raise NIRExportError(
                name,
                kind,
                f"v_reset={float(node.v_reset)}: SpikingJelly starts the membrane at v_reset, "
                "and NIR has no initial state (simulators start at 0)",
            )
        threshold = _array(float(node.v_threshold), shape)
        zeros = _array(0.0, shape)
        if isinstance(node, sj_neuron.IFNode):
            nir_node = self.nir.IF(r=_array(1.0 / self.dt, shape), v_threshold=threshold, v_reset=zeros)
        else:
            if isinstance(node, sj_neuron.ParametricLIFNode):
                tau = 1.0 / float(node.w.detach().sigmoid())
            else:
                tau = float(node.tau)
            nir_node = self.nir.LIF(
                tau=_array(tau * self.dt, shape),
                r=_array(1.0 if node.decay_input else tau, shape),
                v_leak=zeros,
                v_threshold=threshold,
                v_reset=zeros.copy(),
            )
            nir_node.metadata = {"tau_steps": tau}
        return self.add(name, nir_node, x)


def _max_pool(graph: _Graph, name: str, pool: nn.Module, x: list[str], shape: Shape) -> tuple[list[str], Shape]:
    """``max`` over 0/1 spikes as ``[Σ > 0.5]``: SumPool2d, then Threshold at 0.5."""
    kind = type(pool).__name__
    if pool.ceil_mode or _pair(pool.dilation) != (1, 1) or pool.return_indices:
        raise NIRExportError(name, kind, "NIR's SumPool2d has no dilation or ceil_mode")
    kernel, padding = _pair(pool.kernel_size), _pair(pool.padding)
    stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
    out = _pooled(shape, kernel, stride, padding)
    nir = graph.nir
    summed = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
    summed.input_type = {"input": np.array(shape)}
    summed.output_type = {"output": np.array(out)}
    total = graph.add(f"{name}.sum", summed, x, module=name)
    # Thresholds halfway between integers: exact for integer inputs whether a simulator fires on
    # > (NIR's definition) or on >= (common on integer hardware).
    threshold = nir.Threshold(threshold=_array(0.5, out))
    threshold.metadata = {"computes": "max-pool of 0/1 spikes = [sum-pool > 0.5]"}
    return graph.add(name, threshold, total), out


def _block(graph: _Graph, prefix: str, block: nn.Module, x: list[str], shape: Shape) -> tuple[list[str], Shape]:
    kind = type(block).__name__
    if not isinstance(block, (BasicBlock, Bottleneck)):
        raise NIRExportError(prefix, kind, "expected a SEW BasicBlock or Bottleneck")
    layers = 3 if isinstance(block, Bottleneck) else 2
    out, out_shape = x, shape
    for i in range(1, layers + 1):
        conv, bn = getattr(block, f"conv{i}"), getattr(block, f"bn{i}")
        out, out_shape = graph.conv(f"{prefix}.conv{i}", conv, f"{prefix}.bn{i}", bn, out, out_shape)
        out = graph.neuron(f"{prefix}.sn{i}", getattr(block, f"sn{i}"), out, out_shape)
    identity = x
    if block.downsample is not None:
        if not isinstance(block.downsample, nn.Sequential) or len(block.downsample) != 2:
            raise NIRExportError(f"{prefix}.downsample", type(block.downsample).__name__, "expected conv1x1 + BN")
        conv, bn = block.downsample
        identity, _ = graph.conv(f"{prefix}.downsample.0", conv, f"{prefix}.downsample.1", bn, x, shape)
        identity = graph.neuron(f"{prefix}.downsample_sn", block.downsample_sn, identity, out_shape)
    if block.cnf == "ADD":  # edge fan-in: the consumers of this block sum A and S
        return out + identity, out_shape
    if len(identity) != 1 or len(out) != 1:
        raise NIRExportError(
            prefix,
            f"{kind}, cnf={block.cnf}",
            "its identity is the sum of an ADD join (spike counts, not 0/1 spikes): the product has no exact NIR form",
        )
    nir = graph.nir
    name = f"{prefix}.cnf"
    if block.cnf == "AND":
        node = nir.Threshold(threshold=_array(1.5, out_shape))
        node.metadata = {"computes": "SEW AND: A*S = [A + S > 1.5] for 0/1 spikes"}
        return graph.add(name, node, out + identity, module=prefix), out_shape
    if block.cnf == "IAND":
        negated = graph.add(f"{name}.negate", nir.Scale(scale=_array(-1.0, out_shape)), out, module=prefix)
        node = nir.Threshold(threshold=_array(0.5, out_shape))
        node.metadata = {"computes": "SEW IAND: (1 - A)*S = [S - A > 0.5] for 0/1 spikes"}
        return graph.add(name, node, negated + identity, module=prefix), out_shape
    raise NIRExportError(prefix, kind, f"unknown connect function {block.cnf!r}")


@torch.no_grad()
def to_nir(model: nn.Module, input_shape: Sequence[int], *, dt: float = DEFAULT_DT):
    """The NIR graph (``nir.NIRGraph``) of a SEW ResNet, for inputs of ``input_shape = (C, H, W)``.

    Reads the weights as they are (``module.weight``: the pruned ``S_d(θ)`` of a parametrized
    layer, so pruned synapses are exact zeros in the graph) and the BatchNorms' running statistics,
    whatever the model's train/eval mode. ``dt`` is the duration of one time step in seconds (see
    the module docstring for how it enters the neuron parameters). Raises :class:`NIRExportError`
    for what NIR cannot express, naming the module and the reason.
    """
    nir = require_nir()
    if not (dt > 0):
        raise ValueError(f"dt must be > 0 seconds, got {dt!r}")
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) of positive sizes, got {input_shape}")
    if not isinstance(model, SEWResNet):
        if not getattr(model, "spiking", False):
            reason = "an ANN (T = 1, real-valued ReLU activations): NIR describes spiking networks and has no ReLU node"
        elif isinstance(model, (Spikformer, SpikeDrivenTransformer, QKFormer)):
            reason = (
                "its spike attention multiplies two activations (Q Kᵀ, K ⊙ V), and NIR's nodes multiply an input "
                "by fixed weights only"
            )
        else:
            reason = "NIR export knows the SEW ResNet structure (snn_lats.networks.SEWResNet) only"
        raise NIRExportError("the model", type(model).__name__, reason)
    if input_shape[0] != model.in_channels:
        raise ValueError(f"input_shape has {input_shape[0]} channels, the network takes {model.in_channels}")

    graph = _Graph(nir, dt)
    x = graph.add("input", nir.Input(input_type={"input": np.array(input_shape)}), [], module="")
    x, shape = graph.conv("conv1", model.conv1, "bn1", model.bn1, x, input_shape)
    x = graph.neuron("sn1", model.sn1, x, shape)
    if isinstance(model.maxpool, nn.MaxPool2d):
        x, shape = _max_pool(graph, "maxpool", model.maxpool, x, shape)
    elif not isinstance(model.maxpool, nn.Identity):
        raise NIRExportError("maxpool", type(model.maxpool).__name__, "expected MaxPool2d or Identity")
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, stage)):
            x, shape = _block(graph, f"{stage}.{i}", block, x, shape)

    pool = model.avgpool
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or _pair(pool.output_size) != (1, 1):
        raise NIRExportError("avgpool", type(pool).__name__, "expected a global average pool (adaptive, to 1x1)")
    window = (shape[1], shape[2])
    avg = nir.AvgPool2d(kernel_size=np.array(window), stride=np.array(window), padding=np.array((0, 0)))
    avg.input_type = {"input": np.array(shape)}
    shape = (shape[0], 1, 1)
    avg.output_type = {"output": np.array(shape)}
    avg.metadata = {"computes": "global average pool: AdaptiveAvgPool2d((1, 1)) of the whole feature map"}
    x = graph.add("avgpool", avg, x)
    x = graph.add("flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1), x)
    fc = model.fc
    if not isinstance(fc, nn.Linear):
        raise NIRExportError("fc", type(fc).__name__, "expected a Linear classifier")
    weight = _array(fc.weight)
    x = graph.add(
        "fc", nir.Affine(weight=weight, bias=_array(fc.bias)) if fc.bias is not None else nir.Linear(weight=weight), x
    )
    graph.add("output", nir.Output(output_type={"output": np.array([fc.out_features])}), x, module="")

    metadata = {
        "source": "snn-lats",
        "network": type(model).__name__,
        "T": int(model.T),
        "dt": float(dt),
        "discretisation": "forward Euler, one step of dt seconds per time step",
        "input": "the input of each of the T steps; a static image is presented at every step",
        "readout": "logits = mean over the T steps of the output",
        "spike": "v > v_threshold, then v = v_reset (SpikingJelly fires on v >= v_threshold)",
    }
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata, type_check=True)
