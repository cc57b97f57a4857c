"""Synaptic-operation counting: exact, mask-aware, checked against independent oracles.

Oracles: hand-computed fan-outs of tiny layers; the brute force ``sum(conv(x, 1[w != 0]))``
(``sum(conv(1[x != 0], 1[w != 0]))`` for MACs) evaluated separately with torch.nn.functional on the
inputs each layer really received; and, for dense layers with binary inputs, firing rate x dense MACs.
"""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn
from torch.nn.utils import parametrize

from snn_lats.estimators import SynapticOpCounter, is_spiking

pytestmark = pytest.mark.usefixtures("one_thread")


# --- helpers: recording inputs, the brute-force oracle, pruning by hand -----------------------


class Recorder:
    """Records (a copy of) every input of every synaptic layer and every output of every neuron."""

    def __init__(self, model: nn.Module, neuron_types=(neuron.BaseNode,)):
        self.inputs: dict[str, list[torch.Tensor]] = {}
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                self.handles.append(
                    m.register_forward_pre_hook(
                        lambda mod, args, name=name: self.inputs.setdefault(name, []).append(args[0].detach().clone())
                    )
                )
            elif isinstance(m, neuron_types):
                self.handles.append(
                    m.register_forward_hook(
                        lambda mod, args, out, name=name: self.outputs.setdefault(name, []).append(out.detach().clone())
                    )
                )

    def remove(self):
        for h in self.handles:
            h.remove()


def brute_force(module: nn.Module, x: torch.Tensor, count_spikes: bool) -> int:
    """sum(layer(x', 1[w != 0])) with x' = x (spike counts) or 1[x != 0] (MACs), in float64."""
    mask = (module.weight.detach() != 0).double()
    if isinstance(module, nn.Linear):
        xs = x.reshape(-1, x.shape[-1]).double()
        xs = xs if count_spikes else (xs != 0).double()
        return int(F.linear(xs, mask).sum().round())
    nd = len(module.kernel_size)
    xs = x.reshape(-1, *x.shape[-(nd + 1) :]).double()
    xs = xs if count_spikes else (xs != 0).double()
    padding = module.padding
    if module.padding_mode != "zeros":
        pads = [p for p in reversed(module.padding) for _ in range(2)]
        xs = F.pad(xs, pads, mode=module.padding_mode)
        padding = 0
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return int(conv(xs, mask, None, module.stride, padding, module.dilation, module.groups).sum().round())


def prune_randomly(model: nn.Module, fraction: float, generator: torch.Generator) -> None:
    """Zero about ``fraction`` of every synaptic weight tensor (in place, under no_grad)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                m.weight[torch.rand(m.weight.shape, generator=generator) < fraction] = 0


def rows_by_name(report):
    return {r["name"]: r for r in report.rows}


# --- hand-built spiking networks: SEW-style blocks on SpikingJelly multi-step layers ----------


def IF():
    return neuron.IFNode(v_threshold=0.5, step_mode="m", detach_reset=True)


class SEWBlock(nn.Module):
    """conv-IF-conv-IF with a spike-element-wise shortcut g(out, identity) (ADD, AND, IAND)."""

    def __init__(self, cin: int, cout: int, cnf: str, stride: int = 1, groups: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = layer.SeqToANNContainer(
            nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)
        )
        self.sn1 = IF()
        self.conv2 = layer.Conv2d(cout, cout, 3, padding=1, bias=False, step_mode="m")  # sees [T, N, C, H, W]
        self.sn2 = IF()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = layer.SeqToANNContainer(nn.Conv2d(cin, cout, 1, stride, bias=False))
            self.down_sn = IF()
        self.cnf = cnf

    def forward(self, x):
        out = self.sn2(self.conv2(self.sn1(self.conv1(x))))
        identity = x if self.down is None else self.down_sn(self.down(x))
        if self.cnf == "ADD":
            return out + identity
        if self.cnf == "AND":
            return out * identity
        return (1.0 - out) * identity


class TinySEW(nn.Module):
    """Encoder conv on the real image (MACs), SEW blocks (ACs: spikes, ADD counts up to 3),
    a depthwise conv, a circular-padded conv, then time-mean pooling and a Linear (MACs)."""

    def __init__(self, cnf: str, T: int = 3, classes: int = 5):
        super().__init__()
        self.T = T
        self.encoder = layer.SeqToANNContainer(nn.Conv2d(2, 6, 3, padding=1, bias=False))
        self.sn0 = IF()
        self.block1 = SEWBlock(6, 6, cnf)
        self.block2 = SEWBlock(6, 6, cnf)  # ADD: its identity may already hold 2s: outputs up to 3
        self.block3 = SEWBlock(6, 8, cnf, stride=2, groups=2, dilation=2)
        self.depthwise = layer.SeqToANNContainer(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False))
        self.sn_dw = IF()
        self.circular = layer.SeqToANNContainer(nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular", bias=False))
        self.sn_c = IF()
        self.spike_fc = layer.Linear(8 * 2 * 2, 12, bias=False, step_mode="m")  # flattened spikes: ACs
        self.sn_fc = IF()
        self.fc = nn.Linear(12, classes)  # time-mean of spikes: real-valued, MACs

    def forward(self, x):  # x: [N, C, H, W], repeated over T (a static image)
        functional.reset_net(self)
        x = self.sn0(self.encoder(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)))
        x = self.block3(self.block2(self.block1(x)))
        x = self.sn_c(self.circular(self.sn_dw(self.depthwise(x))))
        x = self.sn_fc(self.spike_fc(x.flatten(2)))
        return self.fc(x.mean(0))


def init_spiking(model: nn.Module, seed: int) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 6.0 / math.sqrt(fan_in))
    return g


# --- hand-computed specifications ---------------------------------------------------------


def test_single_channel_conv_by_hand():
    # 1-channel 3x3 conv, padding 1, on a 4x4 map. Only the top-left tap w[0, 0] is nonzero (the
    # other 8 are pruned). Output o reads input o - 1 through that tap, so input (i, j) reaches one
    # output if i <= 2 and j <= 2, and none on the last row or column.
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 0.7
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1  # fan-out 1
    x[0, 0, 1, 2] = 2  # a SEW-ADD count of 2: two spikes, fan-out 1 each
    x[0, 0, 3, 1] = 1  # last row: fan-out 0
    x[0, 0, 2, 3] = 1  # last column: fan-out 0
    model = nn.Sequential(conv)
    model.spiking = True
    with SynapticOpCounter(model) as counter:
        model(x)
    row = counter.report().rows[0]
    assert row["acs"] == 1 + 2
    assert row["macs"] == 0
    # Unpruned, fan-out is the number of outputs whose 3x3 window covers the input:
    # corner (0,0): 4; (1,2) interior: 9 (x2 spikes); (3,1) edge: 6; (2,3) edge: 6.
    assert row["dense_acs"] == 4 + 2 * 9 + 6 + 6
    assert row["params"] == 9 and row["nonzero_params"] == 1
    assert row["input_event_rate"] == pytest.approx(5 / 16)


def test_linear_by_hand():
    # fan_out[i] = nonzero weights in column i: columns of W hold 2, 0 and 1 nonzeros.
    fc = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.5, 0.0, -1.0], [2.0, 0.0, 0.0]]))
    model = nn.Sequential(fc)
    model.spiking = True
    x = torch.tensor([[1.0, 1.0, 1.0], [0.0, 3.0, 2.0]])  # integer counts: ACs
    with SynapticOpCounter(model) as counter:
        model(x)
    row = counter.report().rows[0]
    assert row["acs"] == (1 * 2 + 1 * 0 + 1 * 1) + (0 * 2 + 3 * 0 + 2 * 1)
    assert row["dense_acs"] == 2 * (1 + 1 + 1 + 0 + 3 + 2)
    # A real-valued input counts MACs: nonzero inputs x fan-out, whatever their value.
    with SynapticOpCounter(model) as counter:
        model(torch.tensor([[0.5, -2.0, 0.0]]))
    row = counter.report().rows[0]
    assert (row["acs"], row["macs"], row["dense_macs"]) == (0, 2 * 1 + 0 * 1, 2 + 2)


def test_strided_conv_by_hand():
    # 1x1 conv with stride 2 on a 1-channel 5-sample signal: outputs read inputs 0, 2, 4 only.
    conv = nn.Conv1d(1, 3, 1, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, -1.0]).view(3, 1, 1))  # 2 of 3 output channels live
    model = nn.Sequential(conv)
    model.spiking = True
    x = torch.tensor([[[1.0, 1.0, 0.0, 1.0, 1.0]]])  # spikes at 0, 1, 3, 4
    with SynapticOpCounter(model) as counter:
        model(x)
    row = counter.report().rows[0]
    assert row["acs"] == 2 * 2  # inputs 0 and 4, two nonzero weights each; 1 and 3 are skipped
    assert row["dense_acs"] == 2 * 3


# --- brute force on random pruned spiking networks ----------------------------------------


def is_counts(x: torch.Tensor) -> bool:
    """The spec's rule: a non-negative, integer-valued input is spikes (ACs), anything else MACs."""
    return bool((x >= 0).all() and (x == x.round()).all())


def expected_ops(module: nn.Module, inputs: list[torch.Tensor]) -> tuple[int, int]:
    """(ACs, MACs) by brute force over the recorded inputs of one layer."""
    acs = sum(brute_force(module, x, count_spikes=True) for x in inputs if is_counts(x))
    macs = sum(brute_force(module, x, count_spikes=False) for x in inputs if not is_counts(x))
    return acs, macs


def counted_sew(cnf: str = "ADD", seed: int = 0):
    """A 50 %-pruned TinySEW counted on two batches (2 and 3 samples), its inputs and outputs
    recorded: ``(model, counter, recorder, batches)``."""
    model = TinySEW(cnf, T=3).eval()
    g = init_spiking(model, seed=seed)
    prune_randomly(model, 0.5, g)
    batches = [torch.randn(2, 2, 8, 8, generator=g), torch.randn(3, 2, 8, 8, generator=g)]
    recorder = Recorder(model)
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        for x in batches:
            model(x)
    recorder.remove()
    return model, counter, recorder, batches


@pytest.mark.parametrize("cnf", ["ADD", "AND", "IAND"])
def test_pruned_spiking_network_matches_brute_force(cnf):
    model, counter, recorder, _ = counted_sew(cnf, seed={"ADD": 0, "AND": 1, "IAND": 2}[cnf])
    report = counter.report()
    rows = rows_by_name(report)

    synaptic = [r for r in report.rows if r["kind"] == "synaptic"]
    assert [r["name"] for r in synaptic] == list(recorder.inputs)  # every synaptic layer, in order
    modules = dict(model.named_modules())
    assert not any(is_counts(x) for x in recorder.inputs["encoder.0"])  # the real-valued image: MACs
    assert all(is_counts(x) for x in recorder.inputs["block1.conv1.0"])  # spikes: ACs
    for name, inputs in recorder.inputs.items():
        assert (rows[name]["acs"], rows[name]["macs"]) == expected_ops(modules[name], inputs), name
        assert rows[name]["nonzero_params"] == int((modules[name].weight != 0).sum())
        assert rows[name]["params"] == modules[name].weight.numel()
        events = sum(float(x.sum() if is_counts(x) else (x != 0).sum()) for x in inputs)
        assert rows[name]["input_event_rate"] == pytest.approx(events / sum(x.numel() for x in inputs))
    for name, outputs in recorder.outputs.items():
        spikes = sum(float(y.sum()) for y in outputs)
        assert rows[name]["firing_rate"] == pytest.approx(spikes / sum(y.numel() for y in outputs))
        assert 0 < rows[name]["firing_rate"] < 1, name  # the network is neither silent nor saturated

    if cnf == "ADD":  # the multiplicity rule is exercised: counts of 2 and 3 reach a conv
        assert max(float(x.max()) for x in recorder.inputs["block3.conv1.0"]) >= 3
        assert any("k spikes" in note for note in report.notes)
    assert report.total_acs == sum(rows[n]["acs"] for n in recorder.inputs)
    assert report.total_macs == sum(rows[n]["macs"] for n in recorder.inputs)
    assert report.samples == 5
    assert report.acs_per_sample == report.total_acs / 5
    assert report.acs_per_step == report.total_acs / (5 * 3)
    # Pruning saved operations, and the dense counts are the same layers with every weight kept.
    assert report.total_dense_acs > report.total_acs > 0


def test_dense_counts_are_brute_force_with_unpruned_weights():
    model = TinySEW("ADD", T=2).eval()
    g = init_spiking(model, seed=3)
    dense_copy = TinySEW("ADD", T=2).eval()
    dense_copy.load_state_dict(model.state_dict())
    prune_randomly(model, 0.6, g)
    x = torch.randn(2, 2, 8, 8, generator=g)
    recorder = Recorder(model)
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
    recorder.remove()
    rows = rows_by_name(counter.report())
    modules = dict(dense_copy.named_modules())
    for name, inputs in recorder.inputs.items():
        assert (rows[name]["dense_acs"], rows[name]["dense_macs"]) == expected_ops(modules[name], inputs), name


def test_conv1d_and_conv3d_spiking():
    for conv, shape in (
        (nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, bias=False), (4, 3, 11)),
        (nn.Conv3d(2, 4, (2, 3, 3), stride=(1, 2, 1), padding=(0, 1, 1), groups=2, bias=False), (4, 2, 3, 5, 5)),
    ):
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            conv.weight[torch.rand(conv.weight.shape, generator=g) < 0.5] = 0
        model = nn.Sequential(conv)
        model.spiking = True
        x = torch.randint(0, 3, shape, generator=g).float()  # counts 0, 1, 2
        with SynapticOpCounter(model) as counter:
            model(x)
        row = counter.report().rows[0]
        assert row["acs"] == brute_force(conv, x, count_spikes=True)


# --- ANNs: MACs of nonzero activation x nonzero weight ------------------------------------


class TinyANN(nn.Module):
    T = 1
    spiking = False

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, padding_mode="reflect")
        self.act = nn.ReLU6()
        self.pw = nn.Conv2d(8, 6, 1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(6 * 4 * 4, 4)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.pw(self.act(self.dw(x))))
        return self.fc(x.flatten(1))


def test_pruned_ann_matches_brute_force():
    torch.manual_seed(5)
    model = TinyANN().eval()
    g = torch.Generator().manual_seed(5)
    prune_randomly(model, 0.5, g)
    recorder = Recorder(model, neuron_types=(nn.ReLU, nn.ReLU6))
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(torch.randn(3, 3, 8, 8))
        model(torch.rand(2, 3, 8, 8).round())  # integer-valued input: still MACs in an ANN
    recorder.remove()
    report = counter.report()
    rows = rows_by_name(report)
    modules = dict(model.named_modules())
    assert report.total_acs == 0
    for name, inputs in recorder.inputs.items():
        assert rows[name]["macs"] == sum(brute_force(modules[name], x, count_spikes=False) for x in inputs), name
    for name, outputs in recorder.outputs.items():  # "firing rate": fraction of nonzero activations
        nonzero = sum(int((y != 0).sum()) for y in outputs)
        assert rows[name]["firing_rate"] == pytest.approx(nonzero / sum(y.numel() for y in outputs))
    assert [r["name"] for r in report.rows if r["kind"] == "neuron"] == ["relu1", "act", "relu2"]
    assert report.samples == 5 and report.totals["time_steps"] == 1


# --- dense layers, binary inputs: ACs = firing rate x dense MACs --------------------------


def test_dense_binary_counts_equal_rate_times_dense_macs():
    # Layers where every input element has the same fan-out (Linear; non-overlapping convs
    # covering the input), so ACs = (input firing rate) x (dense MACs of the layer).
    T, N = 4, 3
    model = nn.Sequential(
        IF(),
        layer.Linear(10, 7, step_mode="m"),
        IF(),
    )
    convs = nn.Sequential(
        IF(),
        layer.Conv2d(2, 5, 1, step_mode="m"),
        IF(),
        layer.Conv2d(5, 3, 2, stride=2, step_mode="m"),
    )
    for net, x, dense_macs in (
        (model, torch.randn(T, N, 10) * 2, {"1": T * N * 10 * 7}),
        (convs, torch.randn(T, N, 2, 6, 6) * 2, {"1": T * N * (6 * 6) * 2 * 5, "3": T * N * (3 * 3) * 5 * 3 * 2 * 2}),
    ):
        net.spiking, net.T = True, T
        rec = Recorder(net)
        with torch.no_grad(), SynapticOpCounter(net) as counter:
            net(x)
        rec.remove()
        functional.reset_net(net)
        rows = rows_by_name(counter.report())
        for name, macs in dense_macs.items():
            (spikes,) = rec.inputs[name]
            rate = float(spikes.mean())  # firing rate of the neuron layer feeding it
            assert 0 < rate < 1
            assert rows[name]["acs"] == round(rate * macs) == rows[name]["dense_acs"]


# --- accumulation, samples and time steps -------------------------------------------------


def test_accumulates_over_batches_and_counts_samples():
    model = TinySEW("ADD", T=2).eval()
    g = init_spiking(model, seed=6)
    prune_randomly(model, 0.3, g)
    xs = [torch.randn(n, 2, 8, 8, generator=g) for n in (1, 2, 4)]
    singles = []
    for x in xs:
        with torch.no_grad(), SynapticOpCounter(model) as c:
            model(x)
        singles.append(c.report())
    with torch.no_grad(), SynapticOpCounter(model) as c:
        for x in xs:
            model(x)
    total = c.report()
    assert total.samples == 7 and total.totals["sample_steps"] == 14
    assert total.total_acs == sum(r.total_acs for r in singles)
    assert total.total_macs == sum(r.total_macs for r in singles)
    assert total.macs_per_step == total.total_macs / 14


def test_sequence_input_sets_samples_and_steps():
    # A [T, N, ...] sequence: N samples of T steps each, whatever model.T says.
    net = nn.Sequential(layer.Conv2d(2, 3, 3, step_mode="m"), IF())
    net.T = 1
    with torch.no_grad(), SynapticOpCounter(net) as counter:
        net((torch.rand(5, 4, 2, 6, 6) < 0.3).float())
    report = counter.report()
    assert (report.samples, report.totals["time_steps"]) == (4, 5)
    assert report.acs_per_step == report.total_acs / 20


def test_counts_are_kept_when_weights_change_between_batches():
    # The cached fan-out follows the weight: prune more between two batches.
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    model = nn.Sequential(conv)
    model.spiking = True
    x1, x2 = (torch.rand(2, 3, 5, 5) < 0.5).float(), (torch.rand(2, 3, 5, 5) < 0.5).float()
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x1)
        first = brute_force(conv, x1, count_spikes=True)
        conv.weight[:, :2] = 0  # prune two input channels
        model(x2)
        second = brute_force(conv, x2, count_spikes=True)
        assert counter.report().rows[0]["acs"] == first + second
        assert counter.report().rows[0]["nonzero_params"] == int((conv.weight != 0).sum())


class HalfShrink(nn.Module):
    """A parametrization written here (independent of snn_lats.pruning): softshrink by a buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(0.0))

    def forward(self, theta):
        return F.softshrink(theta, float(self.threshold))


def test_parametrized_weight_and_threshold_change():
    torch.manual_seed(8)
    fc = nn.Linear(20, 10, bias=False)
    parametrize.register_parametrization(fc, "weight", HalfShrink())
    model = nn.Sequential(fc)
    model.spiking = True
    x = (torch.rand(6, 20) < 0.5).float()
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
        dense = brute_force(fc, x, count_spikes=True)
        fc.parametrizations.weight[0].threshold.fill_(0.15)  # an in-place threshold update
        model(x)
        pruned = brute_force(fc, x, count_spikes=True)
    assert pruned < dense
    assert counter.report().rows[0]["acs"] == dense + pruned


def test_inference_mode_and_training_gradients_unchanged():
    model = TinySEW("ADD", T=2)
    init_spiking(model, seed=9)
    x = torch.randn(2, 2, 8, 8)
    with torch.inference_mode(), SynapticOpCounter(model) as c1:
        model(x)
    loss = model(x).square().sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with SynapticOpCounter(model) as c2:
        loss = model(x).square().sum()
    grads_counted = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_counted))
    assert c1.report().total_acs == c2.report().total_acs > 0


def test_keeps_no_activations():
    model = TinySEW("ADD", T=2).eval()
    init_spiking(model, seed=10)
    refs = []
    handles = [
        m.register_forward_pre_hook(lambda mod, args: refs.append(weakref.ref(args[0])))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(torch.randn(2, 2, 8, 8))
        gc.collect()
        alive = [r for r in refs if r() is not None]  # while still attached
    for h in handles:
        h.remove()
    assert refs and not alive
    assert counter.report().total_acs > 0


def test_is_spiking_rule():
    plain = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    spiking = nn.Sequential(nn.Linear(2, 2), neuron.IFNode())
    assert not is_spiking(plain) and is_spiking(spiking)
    spiking.spiking = False  # the attribute wins
    assert not is_spiking(spiking)


def test_half_precision_inputs_count_exactly():
    # bfloat16 holds integers exactly only up to 256: 257 spikes summed over the batch, times a
    # fan-out of 3, must not be rounded.
    fc = nn.Linear(2, 3, bias=False).to(torch.bfloat16)
    model = nn.Sequential(fc)
    model.spiking = True
    x = torch.zeros(257, 2, dtype=torch.bfloat16)
    x[:, 0] = 1
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
    assert counter.report().rows[0]["acs"] == 257 * 3


class TwoReaders(nn.Module):
    """Two convs read the same tensor; the second after an in-place edit of it."""

    spiking = True

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, bias=False)
        self.b = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.c = nn.Conv2d(1, 2, 1, bias=False)

    def forward(self, x):
        self.a(x)
        self.b(x)  # the same tensor, unchanged
        x.mul_(2)  # in place: every spike count doubles
        return self.c(x)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_shared_and_inplace_edited_inputs(mode):
    model = TwoReaders()
    x = (torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(11)) < 0.5).float()
    expected = {
        "a": brute_force(model.a, x, True),
        "b": brute_force(model.b, x, True),
        "c": brute_force(model.c, 2 * x, True),
    }
    context = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with context, SynapticOpCounter(model) as counter:
        model(x.clone())
    assert {r["name"]: r["acs"] for r in counter.report().rows} == expected


def test_integer_decision_follows_each_batch():
    # A spiking model's layer sees spikes, then real values: each batch is counted by its own kind.
    fc = nn.Linear(2, 3, bias=False)
    model = nn.Sequential(fc)
    model.spiking = True
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))  # fan-out 2 and 2
    spikes = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    real = torch.tensor([[0.5, 0.25], [0.0, 1.5]])  # non-integer column sums
    halves = torch.tensor([[0.5, 1.0], [0.5, 1.0]])  # non-integers whose columns add up to integers
    with SynapticOpCounter(model) as counter:
        model(spikes)
        model(real)
    row = counter.report().rows[0]
    assert (row["acs"], row["macs"]) == ((1 + 2 + 1) * 2, 3 * 2)
    with SynapticOpCounter(model) as counter:  # first batch of this layer: tested element by element
        model(halves)
    row = counter.report().rows[0]
    assert (row["acs"], row["macs"]) == (0, 4 * 2)


class KeepFirstColumns(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, w):
        return torch.cat((w[:, : self.n], torch.zeros_like(w[:, self.n :])), dim=1)


def test_weight_replacements_are_seen():
    # Between batches: a new weight Parameter, then a parametrization attached, then its
    # threshold buffer replaced by a new tensor (not edited in place).
    torch.manual_seed(12)
    fc = nn.Linear(30, 8, bias=False)
    model = nn.Sequential(fc)
    model.spiking = True
    x = (torch.rand(4, 30) < 0.5).float()
    expected = 0
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
        expected += brute_force(fc, x, True)
        w = torch.randn(8, 30)
        w[:, :10] = 0
        fc.weight = nn.Parameter(w)
        model(x)
        expected += brute_force(fc, x, True)
        parametrize.register_parametrization(fc, "weight", HalfShrink())
        fc.parametrizations.weight[0].threshold = torch.tensor(0.5)
        model(x)
        expected += brute_force(fc, x, True)
        fc.parametrizations.weight[0].threshold = torch.tensor(1.0)
        model(x)
        expected += brute_force(fc, x, True)
        parametrize.register_parametrization(fc, "weight", KeepFirstColumns(15))  # stacked on top
        model(x)
        expected += brute_force(fc, x, True)
    assert counter.report().rows[0]["acs"] == expected
