"""Deployment formats (snn_lats.deploy), checked against outside oracles.

- BatchNorm folding: the folded convolution against the unfolded conv then BN (eval mode).
- NIR: every node's parameters against NIR's equations read as forward Euler with step dt; the
  file read back with ``nir.read``; and the whole graph *run by other simulators* against the
  toolkit's own forward of the unfolded network: Norse's IF/LIF cells and its node translation
  (through nirtorch's graph interpreter), and snnTorch's ``import_from_nir``.
- Sparse files: decoding against the dense tensors, size against the closed form, and the network
  loaded from it against the network loaded from the dense file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nir_simulators import TOLERANCE, norse_simulator
from safetensors.torch import save as safetensors_bytes
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from snn_lats import networks
from snn_lats.deploy import NIRExportError, decode_sparse, encode_sparse, fold_batchnorm, load_sparse, save_sparse

DT = 1e-4
ROOT = Path(__file__).resolve().parents[1]


def _prune(model: nn.Module, sparsity: float, seed: int = 0) -> None:
    """Zero the smallest-magnitude fraction ``sparsity`` of every conv and linear weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                w.add_(1e-3 * torch.randn(w.shape, generator=generator))  # no ties
                k = int(sparsity * w.numel())
                if k:
                    w[w.abs() <= w.abs().flatten().kthvalue(k).values] = 0


def _calibrate(model: nn.Module, x: torch.Tensor, beta: float = 0.3) -> None:
    """Give every BatchNorm the statistics of ``x`` and a positive shift, so that every layer fires
    (random weights would leave the deeper layers silent and the comparison vacuous)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # running statistics = those of the batch
            nn.init.ones_(m.weight)
            nn.init.constant_(m.bias, beta)
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _firing_rates(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    rates, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, sj_neuron.BaseNode):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: rates.__setitem__(name, float(o.mean()))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return rates


# ---------------------------------------------------------------------------------------------
# BatchNorm folding


@pytest.mark.parametrize("bias, stride, groups", [(False, 1, 1), (True, 2, 1), (False, 1, 2)])
def test_folded_conv_equals_conv_then_batchnorm_in_eval_mode(bias, stride, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1, bias=bias, groups=groups)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():
        conv.weight[torch.rand_like(conv.weight) < 0.7] = 0  # pruned synapses
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.1, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    weight, folded_bias = fold_batchnorm(conv, bn)
    x = torch.randn(3, 4, 9, 9)
    with torch.no_grad():
        expected = bn(conv(x))
        folded = nn.functional.conv2d(x, weight, folded_bias, stride=stride, padding=1, groups=groups)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(weight == 0, conv.weight == 0)  # pruned synapses stay exactly zero (all γ != 0)
    assert weight.dtype == conv.weight.dtype


def test_folding_needs_running_statistics():
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))


# ---------------------------------------------------------------------------------------------
# NIR: node parameters, structure, refusals


def _network(stem="cifar", cnf="ADD", neuron="if", size=16, seed=0, calibrate=True, arch="sew_resnet18", **kwargs):
    """A pruned SEW ResNet of width 8 (4 for a bottleneck one) and T = 4, and 8 images that make
    every layer fire."""
    torch.manual_seed(seed)
    width = 4 if arch == "sew_resnet50" else 8
    net = networks.create(arch, num_classes=10, T=4, width=width, stem=stem, cnf=cnf, neuron=neuron, **kwargs)
    _prune(net, 0.6, seed)
    x = torch.rand(8, 3, size, size) * 2
    if calibrate:
        _calibrate(net, x)
    return net.eval(), x


def test_neuron_parameters_are_nir_equations_read_as_euler_steps_of_dt():
    nir = pytest.importorskip("nir")
    from snn_lats.deploy import to_nir

    # IF: v += dt·R·I = I needs R = 1/dt. LIF: v += dt/τ·(v_leak - v + R·I) is SpikingJelly's
    # H = V + (X - V)/τ_SJ for τ = τ_SJ·dt, R = 1, and H = V - V/τ_SJ + X for R = τ_SJ.
    net, _ = _network(neuron="if", calibrate=False)
    graph = to_nir(net, (3, 16, 16), dt=DT)
    sn1 = graph.nodes["sn1"]
    assert isinstance(sn1, nir.IF) and sn1.r.shape == (8, 16, 16)
    np.testing.assert_allclose(sn1.r, 1 / DT)
    assert np.all(sn1.v_threshold == 1.0) and np.all(sn1.v_reset == 0.0)

    for decay_input, r in ((True, 1.0), (False, 3.0)):
        net, _ = _network(neuron="lif", calibrate=False, neuron_kwargs={"tau": 3.0, "decay_input": decay_input})
        node = to_nir(net, (3, 16, 16), dt=DT).nodes["layer2.0.sn1"]
        assert isinstance(node, nir.LIF) and node.tau.shape == (16, 8, 8)
        np.testing.assert_allclose(node.tau, 3.0 * DT, rtol=1e-6)
        np.testing.assert_allclose(node.r, r)
        assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0) and np.all(node.v_threshold == 1)

    net, _ = _network(neuron="plif", calibrate=False)
    w = float(net.sn1.w.detach())
    np.testing.assert_allclose(to_nir(net, (3, 16, 16), dt=DT).nodes["sn1"].tau, DT / (1 / (1 + np.exp(-w))), rtol=1e-5)


def test_graph_structure_folded_weights_and_sew_add_as_edge_fan_in():
    nir = pytest.importorskip("nir")
    from snn_lats.deploy import to_nir

    net, _ = _network(stem="imagenet", size=32, calibrate=False)
    graph = to_nir(net, (3, 32, 32), dt=DT)
    edges = set(graph.edges)
    # Stem: conv1 (+bn1) -> sn1 -> max-pool as sum-pool and threshold.
    assert {("input", "conv1"), ("conv1", "sn1"), ("sn1", "maxpool.sum"), ("maxpool.sum", "maxpool")} <= edges
    assert isinstance(graph.nodes["maxpool.sum"], nir.SumPool2d) and isinstance(graph.nodes["maxpool"], nir.Threshold)
    # ADD: layer1.0's output is the sum of its sn2 and its identity (the max-pool): layer1.1's conv1
    # and layer1.1's own identity both receive both; layer1.1's output then sums three sources.
    assert {("layer1.0.sn2", "layer1.1.conv1"), ("maxpool", "layer1.1.conv1")} <= edges
    assert {(s, "layer2.0.conv1") for s in ("layer1.1.sn2", "layer1.0.sn2", "maxpool")} <= edges
    assert {(s, "layer2.0.downsample.0") for s in ("layer1.1.sn2", "layer1.0.sn2", "maxpool")} <= edges
    assert {("layer4.1.sn2", "avgpool"), ("layer4.0.downsample_sn", "avgpool"), ("layer4.0.sn2", "avgpool")} <= edges
    assert {("avgpool", "flatten"), ("flatten", "fc"), ("fc", "output")} <= edges
    # Every conv is its BatchNorm folded in; pruned synapses are exact zeros in the graph.
    for name, bn_name in (
        ("conv1", "bn1"),
        ("layer1.0.conv2", "layer1.0.bn2"),
        ("layer3.0.downsample.0", "layer3.0.downsample.1"),
    ):
        conv, bn = net.get_submodule(name), net.get_submodule(bn_name)
        node = graph.nodes[name]
        weight, bias = fold_batchnorm(conv, bn)
        np.testing.assert_array_equal(node.weight, weight.numpy())
        np.testing.assert_array_equal(node.bias, bias.numpy())
        assert np.array_equal(node.weight == 0, (conv.weight == 0).numpy()) and (node.weight == 0).mean() > 0.5
    np.testing.assert_array_equal(graph.nodes["fc"].weight, net.fc.weight.detach().numpy())
    assert graph.metadata["T"] == 4 and graph.metadata["dt"] == DT


def test_nir_file_reads_back_with_nir_read(tmp_path):
    nir = pytest.importorskip("nir")
    from snn_lats.deploy import to_nir

    net, _ = _network(cnf="IAND", calibrate=False)
    graph = to_nir(net, (3, 16, 16), dt=DT)
    nir.write(tmp_path / "net.nir", graph)
    back = nir.read(tmp_path / "net.nir")
    assert set(back.nodes) == set(graph.nodes) and sorted(back.edges) == sorted(graph.edges)
    for name, node in graph.nodes.items():
        assert type(back.nodes[name]) is type(node)
        for field in ("weight", "bias", "r", "tau", "v_threshold", "v_reset", "threshold", "scale"):
            if hasattr(node, field):
                np.testing.assert_array_equal(getattr(back.nodes[name], field), getattr(node, field))
    assert back.metadata["readout"] == "logits = mean over the T steps of the output"


@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_spikingjelly_2_reads_the_nir_graph_back_and_computes_the_same_logits(neuron):
    """SpikingJelly 2.x's own NIR importer (nir_exchange, nirtorch underneath) runs the exported
    graph step by step; the mean of its T outputs equals our network's logits. It maps Conv2d,
    Affine, AvgPool2d, Flatten, IF and LIF, and sums a node's incoming edges: the cifar stem with
    ADD joins. The max-pool of the ImageNet stem (SumPool2d, Threshold) and AND/IAND joins are
    nodes it has no mapping for."""
    exchange = pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="SpikingJelly 2.x only")
    from snn_lats.deploy import to_nir

    net, x = _network(neuron=neuron, cnf="ADD")
    assert min(_firing_rates(net, x).values()) > 0  # every layer fires: the comparison is not vacuous
    graph = to_nir(net, (3, 16, 16), dt=DT)
    imported = exchange.import_from_nir(graph, dt=DT)
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(net.T):
            out, state = imported(x, state)
            outputs.append(out)
        torch.testing.assert_close(torch.stack(outputs).mean(0), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change, module, reason",
    [
        ("ann", "the model", "ANN"),
        ("soft_reset", "sn1", "soft reset"),
        ("v_reset", "layer1.0.sn1", "v_reset=-0.5"),
        ("mixed_cnf", "layer1.1", "sum of an ADD join"),
        ("ceil_mode", "maxpool", "ceil_mode"),
        ("no_running_stats", "layer2.0.bn2", "running statistics"),
        ("other_neuron", "layer3.0.sn2", "only IF, LIF and PLIF"),
        ("neuron_subclass", "layer3.0.sn2", "not subclasses"),
    ],
)
def test_what_nir_cannot_express_is_refused_naming_the_module(change, module, reason):
    pytest.importorskip("nir")
    from snn_lats.deploy import to_nir

    net, _ = _network(stem="imagenet", size=32, calibrate=False)
    if change == "ann":
        net = networks.create("resnet18", num_classes=10, width=8, stem="cifar")
    elif change == "soft_reset":
        net.sn1.v_reset = None
    elif change == "v_reset":
        net.layer1[0].sn1.v_reset = -0.5
    elif change == "mixed_cnf":
        net.layer1[1].cnf = "AND"  # its identity is layer1.0's ADD output: counts 0, 1, 2
    elif change == "ceil_mode":
        net.maxpool.ceil_mode = True
    elif change == "no_running_stats":
        net.layer2[0].bn2 = nn.BatchNorm2d(16, track_running_stats=False)
    elif change == "other_neuron":
        net.layer3[0].sn2 = sj_neuron.QIFNode(step_mode="m")
    elif change == "neuron_subclass":  # a user's LIFNode with its own dynamics (as SpikingJelly's LIAFNode is)

        class CustomLIF(sj_neuron.LIFNode):
            def neuronal_charge(self, x):
                self.v = self.v + x * x

        net.layer3[0].sn2 = CustomLIF(step_mode="m")
    with pytest.raises(NIRExportError, match=reason) as error:
        to_nir(net, (3, 32, 32), dt=DT)
    assert str(error.value).startswith(f"cannot export {module} (")
    assert error.value.module == module


def test_bad_arguments_of_to_nir():
    pytest.importorskip("nir")
    from snn_lats.deploy import to_nir

    net, _ = _network(calibrate=False)
    with pytest.raises(ValueError, match="dt must be > 0"):
        to_nir(net, (3, 16, 16), dt=0)
    with pytest.raises(ValueError, match="input_shape must be"):
        to_nir(net, (16, 16), dt=DT)
    with pytest.raises(ValueError, match="2 channels, the network takes 3"):
        to_nir(net, (2, 16, 16), dt=DT)


# ---------------------------------------------------------------------------------------------
# NIR: the second simulators


@pytest.mark.parametrize(
    "arch, stem, cnf, neuron, size, options, dt",
    [
        ("sew_resnet18", "cifar", "ADD", "if", 16, None, DT),  # the CIFAR-stem SEW ResNet
        ("sew_resnet18", "imagenet", "ADD", "if", 48, None, DT),  # the demo's stem: max-pool of spikes
        ("sew_resnet18", "cifar", "AND", "if", 16, None, DT),
        ("sew_resnet18", "cifar", "IAND", "lif", 16, None, DT),
        ("sew_resnet18", "cifar", "ADD", "plif", 16, None, DT),
        ("sew_resnet50", "cifar", "ADD", "if", 16, None, DT),  # bottleneck blocks
        # a threshold other than 1 and another dt (R = τ, decay_input=False: Norse's LIF import
        # ignores r, so that case is snnTorch's, below)
        ("sew_resnet18", "cifar", "ADD", "lif", 16, {"v_threshold": 0.7}, 1e-3),
    ],
)
def test_norse_reproduces_the_toolkit_forward(tmp_path, arch, stem, cnf, neuron, size, options, dt):
    nir = pytest.importorskip("nir")
    from snn_lats.deploy import to_nir

    net, x = _network(stem=stem, cnf=cnf, neuron=neuron, size=size, arch=arch, neuron_kwargs=options)
    rates = _firing_rates(net, x)
    neurons = sum(isinstance(m, sj_neuron.BaseNode) for m in net.modules())
    assert len(rates) == neurons == {"sew_resnet18": 20, "sew_resnet50": 53}[arch]
    assert all(0.01 < r < 0.99 for r in rates.values()), rates  # every layer spikes
    nir.write(tmp_path / "net.nir", to_nir(net, (3, size, size), dt=dt))
    graph = nir.read(tmp_path / "net.nir")
    inputs = x[:3]
    with torch.no_grad():
        expected = net(inputs)
        torch.testing.assert_close(norse_simulator(graph, dt)(inputs, net.T), expected, **TOLERANCE)
        if any(isinstance(node, nir.Threshold) for node in graph.nodes.values()):
            # The same logits from a simulator whose Threshold fires on >= (as integer hardware may).
            fire_on_equal = norse_simulator(graph, dt, fire_on_equal=True)
            torch.testing.assert_close(fire_on_equal(inputs, net.T), expected, **TOLERANCE)
    assert expected.std(0).max() > 1e-2  # the inputs give different logits


@pytest.mark.parametrize(
    "options", [None, {"decay_input": False, "v_threshold": 0.7}], ids=["decay_input", "R=tau,threshold-0.7"]
)
def test_snntorch_reproduces_the_toolkit_forward_of_a_lif_network(tmp_path, options):
    """snnTorch's own importer (snntorch.import_nir.import_from_nir, NIR's dt fixed at 1e-4 s).
    Only LIF networks: snnTorch 1.0.0 imports NIR's IF as a leaky neuron with beta = 0.9
    (snntorch#416), and it maps no SumPool2d, Threshold or Scale node. It reads NIR's r
    (``decay_input=False`` exports R = τ), where Norse's LIF import ignores it."""
    nir = pytest.importorskip("nir")
    import_nir = pytest.importorskip("snntorch.import_nir")
    snn_utils = pytest.importorskip("snntorch.utils")
    from snn_lats.deploy import to_nir

    net, x = _network(neuron="lif", neuron_kwargs=options)
    assert all(0.01 < r < 0.99 for r in _firing_rates(net, x).values())
    nir.write(tmp_path / "net.nir", to_nir(net, (3, 16, 16), dt=1e-4))
    module = import_nir.import_from_nir(nir.read(tmp_path / "net.nir"))
    logits = []
    with torch.no_grad():
        expected = net(x[:3])
        for image in x[:3]:
            snn_utils.reset(module)  # snnTorch keeps the membranes in the modules (init_hidden)
            total = 0.0
            for _ in range(net.T):
                out, _ = module(image)
                total = total + out
            logits.append(total / net.T)
    torch.testing.assert_close(torch.stack(logits), expected, **TOLERANCE)


# ---------------------------------------------------------------------------------------------
# Sparse files


def _demo_network() -> nn.Module:
    import yaml

    from snn_lats.engine.model import build_model
    from snn_lats.engine.recipe import TrainConfig

    recipe = yaml.safe_load((ROOT / "models" / "demo_digits.yaml").read_text(encoding="utf-8"))
    return build_model(TrainConfig(**recipe), num_classes=10)


def test_sparse_file_is_8x_smaller_at_95_percent_on_the_demo_network(tmp_path):
    net = _demo_network()
    _prune(net, 0.95)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights) == pytest.approx(0.95, abs=1e-3)

    dense = len(safetensors_bytes(state))
    size = save_sparse(state, tmp_path / "model.sparse.safetensors")
    assert size == (tmp_path / "model.sparse.safetensors").stat().st_size
    assert dense / size >= 8, (dense, size)
    # Closed form: a bit per element and the nonzeros of each pruned weight, every other tensor as
    # it is, after the safetensors header (an 8-byte length, then that many bytes of JSON).
    payload = 0
    for v in state.values():
        nonzero, bits = int(torch.count_nonzero(v)), (v.numel() + 7) // 8
        as_sparse = bits + nonzero * v.element_size()
        payload += as_sparse if v.is_floating_point() and as_sparse < v.numel() * v.element_size() else v.nbytes
    header = int.from_bytes((tmp_path / "model.sparse.safetensors").read_bytes()[:8], "little")
    assert size == 8 + header + payload

    # It loads strictly into the unpruned architecture and computes the same, bit for bit.
    plain = _demo_network()
    plain.load_state_dict(load_sparse(tmp_path / "model.sparse.safetensors"), strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), net.eval()(x))


def test_sparse_decoding_is_exact_for_any_tensor():
    torch.manual_seed(0)
    w = torch.randn(7, 5, 3)
    w[torch.rand_like(w) < 0.9] = 0
    state = {
        "pruned": w,
        "dense": torch.randn(11),
        "half": torch.where(torch.rand(40) < 0.95, 0, torch.randn(40)).half(),
        "count": torch.tensor(3),
        "empty": torch.zeros(0),
    }
    back = decode_sparse(encode_sparse(state, metadata={"model": "x"}))
    assert back.keys() == state.keys()
    for k, v in state.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_load_sparse_refuses_other_files(tmp_path):
    (tmp_path / "dense.safetensors").write_bytes(safetensors_bytes({"a": torch.ones(2)}))
    with pytest.raises(ValueError, match="not a snn-lats-sparse file"):
        load_sparse(tmp_path / "dense.safetensors")
    (tmp_path / "junk").write_bytes(b"\x00" * 50)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_sparse(tmp_path / "junk")
    header = {"format": "snn-lats-sparse", "format_version": "1", "sparse": json.dumps({"w": [100]})}
    short_mask = {"w::mask": torch.zeros(3, dtype=torch.uint8), "w::values": torch.zeros(0)}
    with pytest.raises(ValueError, match="a mask of 3 bytes for 100 elements"):
        decode_sparse(safetensors_bytes(short_mask, metadata=header))
    with pytest.raises(ValueError, match="reserves"):
        encode_sparse({"a::mask": torch.zeros(1)})


@pytest.mark.parametrize(
    "sparse, tensors, message",
    [
        (None, {"w": torch.ones(2)}, "bad 'sparse' entry"),  # no shapes at all
        ([[4]], {"w::mask": torch.zeros(1, dtype=torch.uint8)}, "bad 'sparse' entry"),  # a list, not a mapping
        ({"w": [-4]}, {"w::mask": torch.zeros(1, dtype=torch.uint8)}, "bad 'sparse' entry"),  # a negative size
        ({"w": [8]}, {"w::mask": torch.zeros(1), "w::values": torch.zeros(0)}, "1-D uint8 mask"),  # a float mask
        ({"w": [8]}, {"w::values": torch.zeros(0)}, "its mask or values are missing"),
    ],
)
def test_a_malformed_sparse_file_is_a_value_error(sparse, tensors, message):
    header = {"format": "snn-lats-sparse", "format_version": "1"}
    if sparse is not None:
        header["sparse"] = json.dumps(sparse)
    with pytest.raises(ValueError, match=message):
        decode_sparse(safetensors_bytes(tensors, metadata=header))
