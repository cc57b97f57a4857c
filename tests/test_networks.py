"""The networks: registry, published sizes, SpikingJelly/torchvision interoperability, time handling.

Oracles: SpikingJelly 0.0.0.0.14's own ``sew_resnet`` models, torchvision's ResNets, published
parameter counts, hand-derived shapes, and the semantics of the contract (a static image equals
its repetition over T; a fresh model equals a used one).
"""

import copy
import importlib
import subprocess
import sys

import pytest
import torch
from torch import nn

from snn_lats import networks
from snn_lats._torchvision import models as tv_models  # before spikingjelly.model imports torchvision
from snn_lats.networks import registry
from snn_lats.networks import sew_resnet as ours_sew

# isort: split
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet as sj_sew

pytestmark = pytest.mark.usefixtures("one_thread")


EVENT_NETS = ("sew_7b_net", "sew_wide_7b_net")  # 128x128 frames of 2 polarities
TRANSFORMER_PREFIXES = ("spikformer_", "sdt_", "qkformer_")  # tests/test_networks_transformers.py
TRANSFORMER_NAMES = [
    "spikformer_8_384",
    "spikformer_8_512",
    "spikformer_8_768",
    "spikformer_4_384_cifar",
    "sdt_8_384",
    "sdt_8_512",
    "sdt_8_768",
    "sdt_2_512_cifar",
    "qkformer_10_384",
    "qkformer_10_512",
    "qkformer_10_768",
]


def is_spiking(name):
    return name.startswith(("sew_", *TRANSFORMER_PREFIXES))


def tiny_input(name, n=3):
    """A batch of ``n`` inputs of the size :func:`tiny_kwargs` networks take."""
    return torch.rand(n, 2, 128, 128) if name in EVENT_NETS else torch.rand(n, 3, 16, 16)


def tiny_kwargs(name):
    """Smallest configuration of each family: 16x16 images (event nets: 128x128) train in milliseconds."""
    if name in EVENT_NETS:
        return {"num_classes": 5, "T": 2, "width": 4}
    kwargs = {"num_classes": 5, "stem": "cifar"}
    if name.startswith(TRANSFORMER_PREFIXES):
        # Threshold 0.3 (the attention neurons keep 0.5): every layer of so small a transformer spikes.
        depth = 4 if name.startswith("qkformer_") else 2
        kwargs.update(T=2, width=32, depth=depth, num_heads=2, neuron_kwargs={"v_threshold": 0.3})
        return kwargs
    if name.startswith("sew_"):
        kwargs.update(T=2, width=8)
    elif name.startswith("resnet"):
        kwargs.update(width=8)
    else:
        kwargs.update(width_mult=0.25)
    return kwargs


def spikingjelly_sew(arch, cnf):
    """SpikingJelly's own SEW ResNet with the settings of this project (IF, ATan, detach_reset, 'm')."""
    model = getattr(sj_sew, arch)(
        cnf=cnf, spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True
    )
    functional.set_step_mode(model, "m")
    return model


def calibrate_batchnorm(model, T=4, batches=2):
    """Give every BN the running statistics of real activations, so that every layer spikes in eval mode
    (with the initial mean 0 / variance 1, spikes die out after a few layers and outputs are trivial)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(batches):
            functional.reset_net(model)
            model(torch.rand(T, 8, 3, 32, 32))
    return model


def firing_rates(model, x):
    rates = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: rates.append(o.mean().item()))
        for m in model.modules()
        if isinstance(m, neuron.BaseNode)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return rates


# ---------------------------------------------------------------- registry and sizes


def test_registry_lists_every_family_and_rejects_unknown_names():
    assert set(networks.names()) == {
        "sew_resnet18",
        "sew_resnet34",
        "sew_resnet50",
        "sew_resnet101",
        "sew_resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "mobilenet_v1",
        "sew_7b_net",
        "sew_wide_7b_net",
        *TRANSFORMER_NAMES,
    }
    assert isinstance(networks.create("resnet18", num_classes=3, width=4), networks.ResNet)
    with pytest.raises(ValueError, match="sew_resnet18.*mobilenet_v1|mobilenet_v1.*sew_resnet18") as error:
        networks.create("vgg16")
    assert "vgg16" in str(error.value)


def test_families_register_their_constructors_in_import_order_and_names_are_unique(monkeypatch):
    assert networks.names() == [
        "sew_resnet18",
        "sew_resnet34",
        "sew_resnet50",
        "sew_resnet101",
        "sew_resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "mobilenet_v1",
        "sew_7b_net",
        "sew_wide_7b_net",
        *TRANSFORMER_NAMES,
    ]
    for family in registry.FAMILIES:  # imported before the patch, so that their registrations stay
        importlib.import_module(f"snn_lats.networks.{family}")
    monkeypatch.setattr(registry, "_NETWORKS", dict(registry._NETWORKS))  # registrations below are undone

    @networks.register()
    def tiny_resnet(**kwargs):
        return networks.resnet18(width=4, **kwargs)

    assert networks.names()[-1] == "tiny_resnet"
    assert isinstance(networks.create("tiny_resnet", num_classes=3), networks.ResNet)
    assert networks.register("alias")(tiny_resnet) is tiny_resnet  # the decorator returns the constructor
    assert networks.create("alias", num_classes=3).fc.out_features == 3
    with pytest.raises(
        ValueError, match=r"'resnet18' is already registered \(by snn_lats\.networks\.resnet\.resnet18\)"
    ):
        networks.register()(networks.resnet18)
    with pytest.raises(ValueError, match="'tiny_resnet' is already registered"):
        networks.register("tiny_resnet")(networks.resnet34)
    assert registry._NETWORKS["tiny_resnet"] is tiny_resnet


def test_each_family_registers_exactly_the_names_the_registry_lists_for_it():
    """names() answers from FAMILIES without importing a family (so without torch); what the
    families' @register() decorators do must agree with it, name for name and in order."""
    for family in registry.FAMILIES:
        importlib.import_module(f"snn_lats.networks.{family}")
    registered: dict[str, list[str]] = {}
    for name, constructor in registry._NETWORKS.items():
        registered.setdefault(constructor.__module__.removeprefix("snn_lats.networks."), []).append(name)
    assert registered == {family: list(members) for family, members in registry.FAMILIES.items()}


def test_a_familys_name_is_taken_before_the_family_is_imported():
    script = (
        "from snn_lats import networks\n"
        "def resnet18(**kwargs):\n    return None\n"
        "try:\n    networks.register()(resnet18)\nexcept ValueError as error:\n    print(error)\n"
        "import sys\nprint('snn_lats.networks.resnet' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "network name 'resnet18' is already registered (by snn_lats.networks.resnet.resnet18)",
        "False",
    ]


def test_create_imports_only_the_family_it_builds():
    script = (
        "import sys\nfrom snn_lats import networks\n"
        "networks.create('mobilenet_v1', num_classes=3, stem='cifar')\n"
        "print(*(m.removeprefix('snn_lats.networks.') for m in sys.modules if m.startswith('snn_lats.networks.')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert set(done.stdout.split()) & set(registry.FAMILIES) == {"mobilenet"}


@pytest.mark.parametrize(
    "name, millions", [("sew_resnet18", 11.69), ("resnet18", 11.69), ("resnet50", 25.56), ("mobilenet_v1", 4.23)]
)
def test_parameter_counts_match_the_published_ones(name, millions):
    with torch.device("meta"):  # no memory, no initialisation cost
        model = networks.create(name, num_classes=1000)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_parameter_counts_equal_torchvision_and_spikingjelly_exactly():
    with torch.device("meta"):
        pairs = [
            (networks.resnet50(), tv_models.resnet50()),
            (networks.resnet34(), tv_models.resnet34()),
            (networks.sew_resnet34(), spikingjelly_sew("sew_resnet34", "ADD")),
        ]
        for ours, theirs in pairs:
            assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


# ---------------------------------------------------------------- every network, CPU, eager


@pytest.mark.parametrize("name", networks.names())
def test_every_network_trains_on_cpu_forward_and_backward(name):
    torch.manual_seed(0)
    model = networks.create(name, **tiny_kwargs(name))
    assert isinstance(model.T, int) and model.T == (2 if is_spiking(name) else 1)
    assert model.spiking == is_spiking(name)
    logits = model(tiny_input(name))
    assert logits.shape == (3, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 4])).backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
    synaptic = [k for k, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    if name in EVENT_NETS:
        first, last = "stages.0.widen.conv", "fc"
    elif name.startswith(TRANSFORMER_PREFIXES):
        first, last = ("patch_embed1.proj_conv" if name.startswith("qkformer_") else "patch_embed.proj_conv"), "head"
    else:
        first, last = "conv1", "fc"
    assert synaptic[0] == first and synaptic[-1] == last
    assert float(model.get_submodule(last).weight.grad.abs().sum()) > 0
    first = model.get_submodule(synaptic[0]).weight
    assert float(first.grad.abs().sum()) > 0  # gradients reach the first layer


# ---------------------------------------------------------------- SpikingJelly interoperability


@pytest.mark.parametrize("arch", ["sew_resnet18", "sew_resnet34", "sew_resnet50", "sew_resnet101", "sew_resnet152"])
def test_sew_state_dict_keys_and_shapes_equal_spikingjelly(arch):
    with torch.device("meta"):
        ours = getattr(networks, arch)(cnf="ADD").state_dict()
        theirs = spikingjelly_sew(arch, "ADD").state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


@pytest.mark.parametrize(
    "arch, cnf", [("sew_resnet18", "ADD"), ("sew_resnet18", "AND"), ("sew_resnet18", "IAND"), ("sew_resnet50", "ADD")]
)
def test_sew_loads_spikingjelly_weights_and_gives_identical_outputs(arch, cnf):
    torch.manual_seed(1)
    theirs = calibrate_batchnorm(spikingjelly_sew(arch, cnf)).double().eval()
    ours = getattr(networks, arch)(cnf=cnf).double().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    rates = firing_rates(ours, x)
    assert min(rates[-4:]) > 0.01  # the last stage spikes: the comparison is not of empty outputs
    with torch.no_grad():
        functional.reset_net(theirs)
        expected = theirs(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)).mean(0)
        actual = ours(x)
    assert expected.std() > 1e-3
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)
    # A sequence (event data) goes through the stem step by step, as in SpikingJelly.
    x_seq = torch.rand(4, 2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        functional.reset_net(theirs)
        torch.testing.assert_close(ours(x_seq), theirs(x_seq).mean(0), rtol=1e-10, atol=1e-10)


def test_sew_training_step_equals_spikingjelly_outputs_and_gradients():
    torch.manual_seed(2)
    theirs = spikingjelly_sew("sew_resnet18", "ADD").double().train()
    ours = networks.sew_resnet18(cnf="ADD").double().train()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    target = torch.tensor([3, 7])
    functional.reset_net(theirs)
    expected = theirs(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)).mean(0)
    actual = ours(x)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10)
    nn.functional.cross_entropy(expected, target).backward()
    nn.functional.cross_entropy(actual, target).backward()
    theirs_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs_params[key].grad, rtol=1e-7, atol=1e-10, msg=key)
    assert float(ours.conv1.weight.grad.abs().sum()) > 0
    # Batch statistics of the repeated encoding equal those of the static batch.
    torch.testing.assert_close(ours.bn1.running_mean, theirs.bn1.running_mean)


def test_bottleneck_and_equals_spikingjelly_and_iand_is_the_papers():
    """SEW paper: IAND(A, S) = (1 - A) * S, A the residual branch, S the identity. Oracle built from
    SpikingJelly's Bottleneck with AND (A * S): IAND = S - AND. (SpikingJelly's own Bottleneck IAND
    computes (1 - S) * A instead.)"""
    torch.manual_seed(3)
    theirs = sj_sew.Bottleneck(
        32, 8, cnf="AND", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True
    )
    functional.set_step_mode(theirs, "m")
    for bn in (theirs.bn1, theirs.bn2, theirs.bn3):
        bn.bias.data.fill_(0.8)  # about half of the neurons spike
    theirs.eval()
    blocks = {
        cnf: ours_sew.Bottleneck(32, 8, 1, None, cnf, lambda: networks.make_neuron("if", "torch")).eval()
        for cnf in ("AND", "IAND")
    }
    for block in blocks.values():
        block.load_state_dict(theirs.state_dict(), strict=True)
    spikes = (torch.rand(4, 2, 32, 6, 6) < 0.5).float()
    with torch.no_grad():
        functional.reset_net(theirs)
        anded = theirs(spikes)
        ours_and, ours_iand = blocks["AND"](spikes), blocks["IAND"](spikes)
    assert 0.05 < float(anded.mean()) < float(spikes.mean())
    torch.testing.assert_close(ours_and, anded)
    torch.testing.assert_close(ours_iand, spikes - anded)


# ---------------------------------------------------------------- torchvision interoperability


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_loads_torchvision_weights_and_gives_identical_outputs(arch):
    torch.manual_seed(4)
    theirs = getattr(tv_models, arch)(weights=None)
    for m in theirs.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    theirs.eval()
    ours = getattr(networks, arch)().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        torch.testing.assert_close(ours(x), expected)
        torch.testing.assert_close(ours(x.unsqueeze(0)), expected)  # the [1, N, C, H, W] convention


def test_small_sew_resnet_and_its_matching_ann_share_every_weight_shape():
    sew = networks.sew_resnet18(num_classes=10, width=16, stem="cifar", in_channels=1)
    ann = networks.resnet18(num_classes=10, width=16, stem="cifar", in_channels=1)
    ann.load_state_dict(sew.state_dict(), strict=True)  # IF neurons have no parameters
    assert sew.conv1.weight.shape == (16, 1, 3, 3) and isinstance(sew.maxpool, nn.Identity)
    assert sew.fc.in_features == 8 * 16
    features = []
    sew.layer1.register_forward_hook(lambda m, i, o: features.append(o.shape))
    sew(torch.rand(2, 1, 32, 32))
    assert features == [(4, 2, 16, 32, 32)]  # [T=4, N, width, H, W]: stride 1, no pooling


# ---------------------------------------------------------------- time steps


def test_stateless_layers_run_once_per_forward_on_the_folded_sequence():
    model = networks.sew_resnet18(T=3, width=8, num_classes=4)
    calls = {}

    def record(name):
        return lambda m, args, out: calls.setdefault(name, []).append(tuple(args[0].shape))

    stateless = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)
    for name, m in model.named_modules():
        if isinstance(m, stateless) or isinstance(m, neuron.BaseNode):
            m.register_forward_hook(record(name))
    model(torch.rand(2, 3, 32, 32))
    assert all(len(shapes) == 1 for shapes in calls.values())  # once per forward, never per step
    assert calls["conv1"] == [(1, 2, 3, 32, 32)] and calls["bn1"][0][:2] == (1, 2)  # encoded once
    assert calls["sn1"][0][:2] == (3, 2)
    assert calls["fc"] == [(2, 64)]  # the time-mean of the pooled features
    for name, shapes in calls.items():
        if name not in ("conv1", "bn1", "fc"):
            assert shapes[0][:2] == (3, 2), name


@pytest.mark.parametrize("train", [False, True])
def test_static_image_equals_the_image_repeated_over_time(train):
    torch.manual_seed(5)
    model = networks.sew_resnet18(T=3, width=8, num_classes=4, cnf="IAND").train(train)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(0).repeat(3, 1, 1, 1, 1)))


def test_no_neuron_state_leaks_between_batches():
    torch.manual_seed(6)
    model = networks.sew_resnet18(T=3, width=8, num_classes=4, neuron="lif")
    fresh = copy.deepcopy(model)
    x1, x2 = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        model(x1)
        leftover = [m.v for m in model.modules() if isinstance(m, neuron.BaseNode)]
        assert any(isinstance(v, torch.Tensor) and v.abs().sum() > 0 for v in leftover)  # there is state to leak
        after_x1 = model(x2)
        functional.reset_net(model)  # harmless
        after_reset = model(x2)
        torch.testing.assert_close(after_x1, fresh(x2), rtol=0, atol=0)
        torch.testing.assert_close(after_reset, after_x1, rtol=0, atol=0)


# ---------------------------------------------------------------- bad input


def test_anns_take_one_time_step_only():
    model = networks.resnet18(width=4, num_classes=3, stem="cifar").eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x.unsqueeze(0)), model(x))
    with pytest.raises(ValueError, match="T=1"):
        model(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("sew_resnet18", {"T": 0}, "T must be an integer >= 1"),
        ("sew_resnet18", {"T": 2.5}, "T must be an integer"),
        ("sew_resnet18", {"cnf": "OR"}, r"cnf must be one of \('ADD', 'AND', 'IAND'\)"),
        ("sew_resnet18", {"neuron": "izhikevich"}, r"neuron must be one of \('if', 'lif', 'plif'\)"),
        ("sew_resnet18", {"backend": "lava"}, r"backend must be one of \(.auto., "),
        ("sew_resnet18", {"stem": "tiny"}, r"stem must be one of \('imagenet', 'cifar'\)"),
        ("sew_resnet18", {"num_classes": 0}, "num_classes must be an integer >= 1"),
        ("resnet50", {"num_classes": 0}, "num_classes must be an integer >= 1"),
        ("resnet18", {"width": 0}, "width must be an integer >= 1"),
        ("mobilenet_v1", {"width_mult": 0}, "width_mult must be a number > 0"),
        ("mobilenet_v1", {"num_classes": -1}, "num_classes must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_accepted_values(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        networks.create(name, **kwargs)


@pytest.mark.parametrize("name", ["sew_resnet18", "resnet18", "mobilenet_v1"])
@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 16, 16), r"x must have shape \[N, C, H, W\]"),
        ((1, 2, 2, 3, 16, 16), r"x must have shape \[N, C, H, W\]"),
        ((2, 1, 16, 16), "in_channels=3"),
        ((5, 2, 3, 16, 16), "T=[12] time steps"),
    ],
)
def test_bad_input_shapes_are_rejected_with_the_expected_layout(name, shape, match):
    model = networks.create(name, **tiny_kwargs(name))
    with pytest.raises(ValueError, match=match):
        model(torch.rand(shape))


def test_an_unknown_connect_function_is_rejected_not_taken_for_iand():
    spikes = (torch.rand(2, 1, 4, 3, 3) < 0.5).float()
    with pytest.raises(ValueError, match=r"cnf must be one of \('ADD', 'AND', 'IAND'\), got 'OR'"):
        ours_sew.sew_function(spikes, spikes, "OR")
    block = ours_sew.BasicBlock(4, 4, 1, None, "IAND", lambda: networks.make_neuron("if", "torch"))
    block.cnf = "iand"  # set after the constructor's check
    with pytest.raises(ValueError, match="got 'iand'"):
        block(spikes)


# ---------------------------------------------------------------- the SEW paper's event networks


def authors_layout(stage_channels, num_classes):
    """The 7B-Nets as the SEW paper's code lays them out (``ResNetN`` of its ``smodels.py``), from
    SpikingJelly's own modules: a conv+BN folded over time, a multi-step PLIF (init tau 2, reset
    detached), SEW blocks adding their input, max-pools, and a linear readout of the time-mean."""

    def conv_bn_plif(c_in, c_out, k):
        return [
            layer.SeqToANNContainer(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)),
            neuron.ParametricLIFNode(
                init_tau=2.0, detach_reset=True, surrogate_function=surrogate.ATan(), step_mode="m"
            ),
        ]

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Sequential(*conv_bn_plif(c, c, 3), *conv_bn_plif(c, c, 3))

        def forward(self, x):
            return self.conv(x) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            modules, c_in = [], 2
            for c in stage_channels:
                if c != c_in:
                    modules += conv_bn_plif(c_in, c, 1)
                modules += [Block(c), layer.SeqToANNContainer(nn.MaxPool2d(2, 2))]
                c_in = c
            self.conv = nn.Sequential(*modules, nn.Flatten(2))
            self.out = nn.Linear(c_in, num_classes)

        def forward(self, x):  # x: [T, N, 2, 128, 128]
            return self.out(self.conv(x).mean(0))

    return Net()


@pytest.mark.parametrize(
    "name, published, classes", [("sew_7b_net", [32] * 7, 11), ("sew_wide_7b_net", [64] * 4 + [128] * 3, 10)]
)
def test_event_networks_equal_the_authors_layout_and_its_parameter_count(name, published, classes):
    # Parameters by hand: a conv-BN-PLIF layer has c_in*c_out*k*k + 2*c_out + 1; a block two 3x3
    # ones; the readout c*classes + classes.
    def layer_params(c_in, c_out, k):
        return c_in * c_out * k * k + 2 * c_out + 1

    expected, c_in = 0, 2
    for c in published:
        expected += (layer_params(c_in, c, 1) if c != c_in else 0) + 2 * layer_params(c, c, 3)
        c_in = c
    expected += c_in * classes + classes
    with torch.device("meta"):
        assert sum(p.numel() for p in networks.create(name).parameters()) == expected

    # Outputs and gradients against the authors' layout built from SpikingJelly's modules, at width 4.
    torch.manual_seed(0)
    ours = networks.create(name, T=3, width=4)
    channels = [c * 4 // published[0] for c in published]
    theirs = authors_layout(channels, classes)
    theirs.load_state_dict(dict(zip(theirs.state_dict(), ours.state_dict().values())), strict=True)
    x = (torch.rand(3, 2, 2, 128, 128) < 0.05).float() * torch.randint(1, 4, (3, 2, 2, 128, 128))  # event counts
    for train in (True, False):
        ours.train(train), theirs.train(train)
        functional.reset_net(theirs)
        torch.testing.assert_close(ours(x), theirs(x))
    functional.reset_net(theirs)
    ours.train(), theirs.train()
    ours(x).sum().backward()
    theirs(x).sum().backward()
    for (key, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=key)
    with pytest.raises(ValueError, match="takes 128x128 frames .* got 64x64"):
        ours(torch.rand(3, 2, 2, 64, 64))
