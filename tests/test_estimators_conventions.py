"""The report says what it counted; the paper convention, dense FLOPs, transposed convolutions,
extra columns and warnings, each against a closed form or a brute force written here."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn_lats import networks
from snn_lats.estimators import CONVENTIONS, SynapticOpCounter

# isort: split
from test_estimators import Recorder, TinySEW, brute_force, init_spiking, prune_randomly, rows_by_name

pytestmark = pytest.mark.usefixtures("one_thread")


def counted(model, batches, **kwargs):
    with torch.no_grad(), SynapticOpCounter(model, **kwargs) as counter:
        for x in batches:
            model(x)
    return counter.report()


def conv_flops_row(module: nn.Module, x_row: torch.Tensor) -> int:
    """Output elements of one row x C_in/groups x prod(kernel): the FLOPs of ptflops/thop."""
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    out = module._conv_forward(x_row.unsqueeze(0), module.weight, None).numel()  # the output's shape only
    return out * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def test_paper_convention_is_the_papers_formula():
    # SOPs = fr x T x FLOPs for every layer but the encoding one, which is T x FLOPs MACs
    # (Spikformer, Spike-driven Transformer), fr = mean input per element and step.
    model = TinySEW("ADD", T=3).eval()
    g = init_spiking(model, seed=20)
    prune_randomly(model, 0.5, g)  # the papers' FLOPs ignore pruning
    batches = [torch.randn(2, 2, 8, 8, generator=g), torch.randn(3, 2, 8, 8, generator=g)]
    recorder = Recorder(model)
    report = counted(model, batches, convention="paper")
    recorder.remove()
    rows = rows_by_name(report)
    modules = dict(model.named_modules())
    samples, T = 5, 3
    for name, inputs in recorder.inputs.items():
        module = modules[name]
        nd = 1 if isinstance(module, nn.Linear) else 3
        row = inputs[0].reshape(-1, *inputs[0].shape[-nd:])[0]
        flops = conv_flops_row(module, row)
        if name == "encoder.0":
            assert rows[name]["macs"] == pytest.approx(T * flops * samples) and rows[name]["acs"] == 0
            continue
        rate = sum(float(x.double().sum()) for x in inputs) / sum(x.numel() for x in inputs)  # fr, per step
        assert rows[name]["acs"] == pytest.approx(rate * T * flops * samples, rel=1e-9), name
        assert rows[name]["macs"] == 0
    assert report.totals["counted_encoding_layer"] == "encoder.0"


def test_paper_convention_static_equals_repeated_input():
    torch.manual_seed(21)
    net = networks.create("sew_resnet18", num_classes=10, T=4, width=4, stem="cifar").eval()
    x = torch.rand(3, 3, 16, 16)
    sequence = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)
    with torch.no_grad():
        assert torch.allclose(net(x), net(sequence), atol=1e-5)
    static, repeated = counted(net, [x], convention="paper"), counted(net, [sequence], convention="paper")
    assert static.acs_per_sample == pytest.approx(repeated.acs_per_sample, rel=1e-9)
    assert static.macs_per_sample == pytest.approx(repeated.macs_per_sample, rel=1e-9)
    # The exact count says what ran: the static stem once, the repeated one at every step.
    exact_static, exact_repeated = counted(net, [x]), counted(net, [sequence])
    stem_static = rows_by_name(exact_static)["conv1"]["macs"]
    assert rows_by_name(exact_repeated)["conv1"]["macs"] == 4 * stem_static
    assert any("conv1" in n and "once per sample" in n for n in exact_static.notes)
    assert any("conv1" in n and "every time step" in n for n in exact_repeated.notes)
    assert exact_static.acs_per_sample == exact_repeated.acs_per_sample  # the rest is the same


def test_ann_dense_flops_and_paper_macs():
    torch.manual_seed(22)
    net = networks.create("resnet18", num_classes=10, width=4, stem="cifar").eval()
    prune_randomly(net, 0.5, torch.Generator().manual_seed(22))
    x = torch.rand(2, 3, 16, 16)
    recorder = Recorder(net, neuron_types=(nn.ReLU,))
    exact = counted(net, [x])
    recorder.remove()
    paper = counted(net, [x], convention="paper")
    modules = dict(net.named_modules())
    flops = 0
    for name, inputs in recorder.inputs.items():
        nd = 1 if isinstance(modules[name], nn.Linear) else 3
        rows = inputs[0].reshape(-1, *inputs[0].shape[-nd:])
        flops += conv_flops_row(modules[name], rows[0]) * rows.shape[0]
    assert exact.totals["flops"] == flops
    assert paper.total_macs == flops and paper.total_acs == 0  # the papers charge an ANN dense MACs
    assert exact.total_macs < exact.total_dense_macs < flops  # zeros skipped; padded taps not counted


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_transpose_matches_brute_force(nd):
    # The brute force of a transposed conv: sum(conv_transpose(x', 1[w != 0])), here with output_size.
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[nd]
    conv = cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1, bias=False)
    g = torch.Generator().manual_seed(23 + nd)
    with torch.no_grad():
        conv.weight[torch.rand(conv.weight.shape, generator=g) < 0.5] = 0
    model = nn.Sequential(conv)
    model.spiking, model.T = True, 1
    x = torch.randint(0, 3, (3, 4, *([5] * nd)), generator=g).float()
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(x)
        conv(x, output_size=[9] * nd)  # output_padding 0 instead of 1 for this call
    mask = (conv.weight != 0).double()
    op = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    expected = op(x.double(), mask, None, 2, 1, 1, 2).sum() + op(x.double(), mask, None, 2, 1, 0, 2).sum()
    row = counter.report().rows[0]
    assert row["acs"] == int(expected.round())
    assert row["nonzero_params"] == int(mask.sum())


def test_time_steps_from_model_argument_or_a_warning():
    fc = nn.Linear(4, 3, bias=False)
    model = nn.Sequential(fc)
    model.spiking = True
    x = (torch.rand(5, 4) < 0.5).float()
    with pytest.warns(UserWarning, match="no attribute T"):
        unknown = counted(model, [x])
    assert unknown.totals["time_steps"] is None and unknown.acs_per_step is None
    assert unknown.acs_per_sample == brute_force(fc, x, True) / 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = counted(model, [x], T=4)
    assert given.totals["time_steps"] == 4 and given.acs_per_step == given.total_acs / 20
    assert given.totals["counted_time_steps_from"] == "T="
    with pytest.raises(ValueError, match="paper convention"):
        counted(model, [x], convention="paper")
    with pytest.raises(ValueError, match="T must be a positive int"):
        SynapticOpCounter(model, T=0)
    with pytest.raises(ValueError, match="convention must be one of"):
        SynapticOpCounter(model, T=1, convention="flops")
    assert set(CONVENTIONS) == {"exact", "neurobench", "syops", "sinabs", "paper"}


def test_extra_columns_by_hand():
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)
    )
    net.eval()
    x = torch.rand(4, 2, 4, 4)
    report = counted(net, [x], extras=True)
    rows = {r["name"]: r for r in report.rows}
    assert rows["0"]["extra_ops"] == 4 * 3 * 4 * 4  # a bias add per output element
    assert rows["1"]["extra_ops"] == 2 * 4 * 3 * 4 * 4  # BN, affine: scale and shift per element
    assert rows["3"]["extra_ops"] == 4 * 3 * 4 * 4  # pooling: every input element read once
    assert rows["5"]["extra_ops"] == 4 * 2
    assert report.totals["norm_ops_per_sample"] == 2 * 3 * 16
    assert "extra_ops" not in counted(net, [x]).rows[0]


def test_unhandled_weight_is_named():
    class WithEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.embed(x))

    with pytest.warns(UserWarning, match=r"embed \(Embedding\)"):
        SynapticOpCounter(WithEmbedding())


def test_memory_energy_by_hand():
    # Lemaire et al. 2022's counting: per AC a weight read and a potential read + write; per neuron
    # and step a potential read + write; each spike written once and read once (5 pJ per access).
    from spikingjelly.activation_based import layer, neuron

    T, N = 3, 2
    net = nn.Sequential(
        neuron.IFNode(v_threshold=0.5, step_mode="m"),
        layer.Linear(6, 4, bias=False, step_mode="m"),
        neuron.IFNode(v_threshold=0.5, step_mode="m"),
    )
    net.spiking, net.T = True, T
    x = torch.randn(T, N, 6, generator=torch.Generator().manual_seed(30)) * 2
    recorder = Recorder(net)
    report = counted(net, [x])
    recorder.remove()
    (spikes_in,) = recorder.inputs["1"]
    acs = float(spikes_in.sum()) * 4  # every input spike reaches the 4 outputs (dense weights)
    spikes = float(spikes_in.sum()) + float(recorder.outputs["2"][0].sum())
    updates = T * N * (6 + 4)
    parts = report.memory_energy_pj("45nm-fp32", memory_pj=5.0)
    assert report.total_acs == acs
    assert parts["compute"] == pytest.approx(0.9 * acs / N)
    assert parts["weights"] == pytest.approx(5.0 * acs / N)
    assert parts["potentials"] == pytest.approx(5.0 * (2 * acs + 2 * updates) / N)
    assert parts["activations"] == pytest.approx(5.0 * 2 * spikes / N)
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
