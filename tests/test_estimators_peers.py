"""Each convention of SynapticOpCounter against the peer's own package, on the same model and input.

Oracles: NeuroBench 2.3.0 (``neurobench.metrics.workload.SynapticOperations`` driven through its
``TorchModel`` hooks), syops-counter 0.0.5 (``syops.get_model_complexity_info`` over a data
loader) and sinabs 3.1.3 (its ``sinabs.hooks`` synops hooks). Each test skips where its peer is
not installed (``pip install -e .[peers]``; ``scripts/setup_env.sh`` installs them).
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snn_lats import networks
from snn_lats.estimators import SynapticOpCounter

# isort: split
from test_estimators import prune_randomly

pytestmark = pytest.mark.usefixtures("one_thread")


def count(model, batches, convention, **kwargs):
    with torch.no_grad(), SynapticOpCounter(model, convention=convention, **kwargs) as counter:
        for x in batches:
            model(x)
    return counter.report()


def small_sew(seed: int, pruned: float):
    torch.manual_seed(seed)
    net = networks.create("sew_resnet18", num_classes=10, T=2, width=4, stem="cifar").eval()
    if pruned:
        prune_randomly(net, pruned, torch.Generator().manual_seed(seed))
    return net


def small_cnn(seed: int, pruned: float):
    torch.manual_seed(seed)
    net = networks.create("resnet18", num_classes=10, width=4, stem="cifar").eval()
    if pruned:
        prune_randomly(net, pruned, torch.Generator().manual_seed(seed))
    return net


# --- NeuroBench -----------------------------------------------------------------------------


def neurobench_figures(net, batches):
    pytest.importorskip("neurobench")
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    model = TorchModel(net)
    model.register_hooks()
    metric = SynapticOperations()
    with torch.no_grad():
        for x in batches:
            metric(model, model(x), (x, None))
            model.reset_hooks()
    model.close_hooks()
    return metric.compute()


@pytest.mark.parametrize(
    "build, pruned",
    [(small_sew, 0.0), (small_sew, 0.6), (small_cnn, 0.0), (small_cnn, 0.6)],
    ids=["sew-dense", "sew-pruned", "cnn-dense", "cnn-pruned"],
)
def test_neurobench_convention_is_neurobench(build, pruned):
    net = build(0, pruned)
    batches = [torch.rand(3, 3, 16, 16), torch.rand(2, 3, 16, 16)]
    theirs = neurobench_figures(net, batches)
    ours = count(net, batches, "neurobench")
    assert ours.acs_per_sample == pytest.approx(theirs["Effective_ACs"], rel=1e-12)
    assert ours.macs_per_sample == pytest.approx(theirs["Effective_MACs"], rel=1e-12)
    dense = (ours.total_dense_acs + ours.total_dense_macs) / ours.samples
    assert dense == pytest.approx(theirs["Dense"], rel=1e-12)
    if build is small_sew and not pruned:
        # NeuroBench binarises: a SEW-ADD input holding a 2 makes the whole batch MACs, counted once
        # per nonzero element, where the exact rule counts it as two spikes (ACs).
        exact = count(net, batches, "exact")
        assert ours.macs_per_sample > exact.macs_per_sample
        assert ours.acs_per_sample < exact.acs_per_sample


# --- syops-counter ---------------------------------------------------------------------------


class FoldedClockDriven(nn.Module):
    """What syops hooks: plain torch layers folded over T, and clock_driven multi-step IF neurons.
    The encoding conv+BN runs once on the static image; the fc reads spikes [T, N, F]."""

    def __init__(self, T: int = 3):
        from spikingjelly.clock_driven import neuron as clock_driven

        super().__init__()
        self.T = T
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.sn1 = clock_driven.MultiStepIFNode(v_threshold=0.5)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)  # with a bias
        self.bn2 = nn.BatchNorm2d(8)
        self.sn2 = clock_driven.MultiStepIFNode(v_threshold=0.5)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        for m in (self.sn1, self.sn2):
            m.reset()
        t, n = self.T, x.shape[0]
        y = self.sn1(self.bn1(self.conv1(x)).unsqueeze(0).repeat(t, 1, 1, 1, 1))
        y = self.pool(y.flatten(0, 1))
        y = self.sn2(self.bn2(self.conv2(y)).view(t, n, 8, 4, 4))
        return self.fc(y.flatten(2)).mean(0)


def syops_figures(net, batches):
    pytest.importorskip("progress")
    syops = pytest.importorskip("syops")
    loader = [(x, torch.zeros(len(x))) for x in batches]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shape = tuple(batches[0].shape[1:])
        ops, _ = syops.get_model_complexity_info(
            net, shape, dataloader=loader, print_per_layer_stat=False, as_strings=False, ost=io.StringIO()
        )
    return ops  # per sample: [all ops, ACs, MACs, mean rate in %]


def test_syops_convention_is_syops():
    pytest.importorskip("syops")  # pins SpikingJelly 0.0.0.0.x; its clock_driven neurons are gone in 2.x
    torch.manual_seed(1)
    net = FoldedClockDriven().eval()
    with torch.no_grad():
        net.conv1.weight.mul_(3)
        prune_randomly(net, 0.5, torch.Generator().manual_seed(1))  # syops ignores the zeros
    batches = [torch.rand(4, 3, 8, 8), torch.rand(2, 3, 8, 8)]
    theirs = syops_figures(net, batches)
    ours = count(net, batches, "syops")
    assert ours.acs_per_sample == pytest.approx(theirs[1], rel=1e-6)  # syops' rate is a float32 mean
    assert ours.macs_per_sample == pytest.approx(theirs[2], rel=1e-12)
    rows = {r["name"]: r for r in ours.rows}
    assert rows["sn1"]["acs"] > 0 and rows["bn1"]["macs"] > 0 and rows["pool"]["acs"] > 0  # its extra charges


def test_syops_sees_only_exact_torch_types():
    # The traced reason for syops' figure on a SpikingJelly activation_based network: it matches
    # `type(module) in MODULES_MAPPING`, so layer.Conv2d (a subclass), layer.BatchNorm2d and the
    # activation_based neurons are skipped; only the plain nn.Linear classifier is counted.
    net = small_sew(2, 0.0)
    batches = [torch.rand(2, 3, 16, 16)]
    theirs = syops_figures(net, batches)
    fc = next(r for r in count(net, batches, "syops").rows if r["name"] == "fc")
    assert theirs[1] == 0 and theirs[2] == pytest.approx(fc["macs"] / 2 + 0, rel=1e-12)


# --- sinabs ----------------------------------------------------------------------------------


class FoldedSEW(nn.Module):
    """SeqToANNContainer convs (4-D inputs: what sinabs' hooks take), a SEW-ADD, a readout on the time-mean."""

    T = 3

    def __init__(self):
        super().__init__()
        self.conv1 = layer.SeqToANNContainer(nn.Conv2d(3, 8, 3, padding=1, bias=False))
        self.sn1 = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.conv2 = layer.SeqToANNContainer(nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False))
        self.sn2 = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.conv3 = layer.SeqToANNContainer(nn.Conv2d(8, 8, 3, padding=1, bias=False))
        self.sn3 = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        functional.reset_net(self)
        y = self.sn1(self.conv1(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)))
        y = self.sn2(self.conv2(y))
        y = y + self.sn3(self.conv3(y))  # counts up to 2
        return self.fc(y.flatten(2).mean(0))


def test_sinabs_convention_is_sinabs():
    sinabs_hooks = pytest.importorskip("sinabs.hooks")
    torch.manual_seed(3)
    net = FoldedSEW().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(3)
        prune_randomly(net, 0.5, torch.Generator().manual_seed(3))  # sinabs counts pruned synapses
    batches = [torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8)]
    theirs: dict[str, float] = {}
    names = {m: n for n, m in net.named_modules()}

    def recorder(hook):
        def record(module, inputs, output):
            hook(module, inputs, output)  # synops per time step: the mean over the rows of the batch
            per_row = float(module.hook_data["layer_synops_per_timestep"])
            theirs[names[module]] = theirs.get(names[module], 0.0) + per_row * inputs[0].shape[0]

        return record

    conv_hook, linear_hook = sinabs_hooks.conv_layer_synops_hook, sinabs_hooks.linear_layer_synops_hook
    handles = [
        m.register_forward_hook(recorder(conv_hook if isinstance(m, nn.Conv2d) else linear_hook))
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        for x in batches:
            net(x)
    for h in handles:
        h.remove()
    rows = {r["name"]: r for r in count(net, batches, "sinabs").rows}
    assert set(theirs) == {"conv1.0", "conv2.0", "conv3.0", "fc"}
    for name, synops in theirs.items():
        assert rows[name]["acs"] == pytest.approx(synops, rel=1e-6), name  # sinabs sums in float32
    exact = {r["name"]: r for r in count(net, batches, "exact").rows}
    assert exact["conv3.0"]["acs"] < rows["conv3.0"]["acs"]  # the pruned synapses sinabs counts


def test_sinabs_convention_on_an_ann():
    # sinabs takes real values for spike counts: an ANN's synops are sum_i x_i g_i (signed).
    sinabs_hooks = pytest.importorskip("sinabs.hooks")
    net = small_cnn(4, 0.5)
    x = torch.randn(2, 3, 16, 16)
    theirs = {}
    names = {m: n for n, m in net.named_modules()}

    def record(module, inputs, output):
        hook = sinabs_hooks.conv_layer_synops_hook if isinstance(module, nn.Conv2d) else None
        (hook or sinabs_hooks.linear_layer_synops_hook)(module, inputs, output)
        theirs[names[module]] = float(module.hook_data["layer_synops_per_timestep"]) * inputs[0].shape[0]

    handles = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    rows = {r["name"]: r for r in count(net, [x], "sinabs").rows}
    for name, synops in theirs.items():
        assert rows[name]["acs"] == pytest.approx(synops, rel=1e-5, abs=1e-2), name


# --- SpikingJelly 2.x's op_counter ----------------------------------------------------------


@pytest.mark.parametrize("cnf", ["AND", "ADD"])
def test_spikingjelly_op_counter_counts_zero_weights_and_only_binary_inputs(cnf):
    """SpikingJelly 2.x's SynOpCounter charges a spike for every weight of its fan-out, zero or
    not: per layer it equals our dense_acs, and our acs leave the pruned synapses out. It counts
    only 0/1 tensors as spikes: a SEW-ADD sum of 2 is no spike to it (that layer counts 0), where
    we count two. Real-valued inputs (the encoding conv, the classifier) are MACs: 0 SynOps."""
    op_counter = pytest.importorskip("spikingjelly.activation_based.op_counter", reason="SpikingJelly 2.x only")
    torch.manual_seed(4)
    net = networks.create("sew_resnet18", num_classes=10, T=2, width=4, stem="cifar", cnf=cnf).eval()
    prune_randomly(net, 0.5, torch.Generator().manual_seed(4))
    x = 8 * torch.rand(3, 3, 16, 16)
    theirs = op_counter.SynOpCounter()
    with torch.no_grad(), op_counter.DispatchCounterMode([theirs]):
        net(x)
    per_layer = {name.removeprefix("SEWResNet."): sum(ops.values()) for name, ops in theirs.get_counts().items()}
    ours = count(net, [x], "exact")
    binary = {name for name, r in recorded_inputs(net, x).items() if ((r == 0) | (r == 1)).all()}
    rows = ours.synaptic_rows()
    assert {r["name"] for r in rows} <= set(per_layer)
    for r in rows:
        if r["macs"] or r["dense_macs"]:
            assert per_layer[r["name"]] == 0, r["name"]
        elif r["name"] in binary:
            assert per_layer[r["name"]] == r["dense_acs"] >= r["acs"], r["name"]
        else:
            assert cnf == "ADD" and per_layer[r["name"]] == 0 < r["acs"], r["name"]
    summed = [r for r in rows if r["name"] not in binary and not (r["macs"] or r["dense_macs"])]
    assert bool(summed) == (cnf == "ADD")  # ADD feeds some layers 2s
    assert theirs.get_total() == sum(r["dense_acs"] for r in rows if r["name"] in binary)
    assert sum(r["acs"] for r in rows if r["name"] in binary) < theirs.get_total() / 1.5  # half the synapses pruned


def recorded_inputs(net, x):
    """The input of every Conv2d/Linear of ``net`` on ``x``."""
    inputs, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(lambda m, a, out, name=name: inputs.__setitem__(name, a[0])))
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return inputs
