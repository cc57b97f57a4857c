"""Soft-threshold reparameterisation: values, gradients, layers, selection, state, finalize, errors.

Oracles: hand-computed tensors, and plain (unpruned) layers given the hand-computed pruned weight.
"""

from __future__ import annotations

import copy
import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snn_lats.pruning.pruner
from snn_lats.engine.distributed import cleanup_distributed
from snn_lats.pruning import (
    SoftThresholdPruner,
    SparsityReport,
    attach,
    finalize,
    pgh_fraction,
    slats_fraction,
    soft_threshold,
    sparsity_report,
)

THETA = torch.tensor([0.75, -0.25, 0.5, -1.5, 0.0, 2.0])  # dyadic: every result below is exact
D = 0.5
W_EXPECTED = torch.tensor([0.25, 0.0, 0.0, -1.0, 0.0, 1.5])  # |θ| <= d -> 0, else θ - d·sign(θ)
UPSTREAM = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
GRAD_EXACT = torch.tensor([1.0, 0.0, 0.0, 4.0, 0.0, 6.0])  # dL/dw · 1[|θ| > d]


pytestmark = pytest.mark.usefixtures("one_thread")


def by_hand(theta: torch.Tensor, d: float) -> torch.Tensor:
    """S_d(θ) straight from the definition sign(θ)·max(|θ| − d, 0)."""
    return torch.sign(theta) * torch.clamp(theta.abs() - d, min=0)


def layer_theta(module: nn.Module) -> nn.Parameter:
    return module.parametrizations.weight.original


def layer_st(module: nn.Module):
    return module.parametrizations.weight[0]


class Custom(nn.Module):
    """A user's own layer: just a ``weight`` Parameter."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n))

    def forward(self, x):
        return x * self.weight


# --- values and gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("gradient, expected_grad", [("straight-through", UPSTREAM), ("exact", GRAD_EXACT)])
def test_functional_values_and_gradients(gradient, expected_grad):
    theta = THETA.clone().requires_grad_()
    w = soft_threshold(theta, D, gradient)
    assert torch.equal(w, W_EXPECTED)
    w.backward(UPSTREAM)
    assert torch.equal(theta.grad, expected_grad)


@pytest.mark.parametrize("gradient, expected_grad", [("straight-through", UPSTREAM), ("exact", GRAD_EXACT)])
def test_parametrization_values_and_gradients(gradient, expected_grad):
    layer = Custom(6)
    attach(layer, include=Custom, gradient=gradient)
    with torch.no_grad():
        layer_theta(layer).copy_(THETA)
    layer_st(layer).set_threshold(D)
    assert torch.equal(layer.weight, W_EXPECTED)
    (layer(torch.ones(6)) * UPSTREAM).sum().backward()
    assert torch.equal(layer_theta(layer).grad, expected_grad)


@pytest.mark.parametrize("gradient", ["straight-through", "exact"])
def test_learnable_threshold_gradient(gradient):
    # d = sigmoid(s); dL/dd = −Σ g·sign(θ)·1[|θ| > d] = −(1·1 + 4·(−1) + 6·1) = −3 for d = 0.5 (s = 0).
    layer = Custom(6)
    attach(layer, include=Custom, gradient=gradient, learnable=True, s_init=0.0)
    with torch.no_grad():
        layer_theta(layer).copy_(THETA)
    assert torch.equal(layer.weight, W_EXPECTED)
    (layer(torch.ones(6)) * UPSTREAM).sum().backward()
    expected = UPSTREAM if gradient == "straight-through" else GRAD_EXACT
    assert torch.equal(layer_theta(layer).grad, expected)
    assert layer_st(layer).threshold_logit.grad.item() == pytest.approx(-3.0 * 0.25)  # σ'(0) = 1/4


def test_cache_follows_theta_threshold_and_state():
    torch.manual_seed(0)
    layer = nn.Linear(5, 4, bias=False)
    attach(layer)
    theta, st = layer_theta(layer), layer_st(layer)
    st.set_threshold(0.2)
    assert torch.equal(layer.weight, by_hand(theta.detach(), 0.2))
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(torch.randn(3, 5)).pow(2).sum().backward()
    opt.step()  # θ changes in place
    assert torch.equal(layer.weight, by_hand(theta.detach(), 0.2))
    st.set_threshold(0.3)
    assert torch.equal(layer.weight, by_hand(theta.detach(), 0.3))
    other = nn.Linear(5, 4, bias=False)
    attach(other)
    other.load_state_dict(layer.state_dict())  # carries θ and the threshold buffer
    assert layer_st(other).current_threshold() == pytest.approx(0.3)
    assert torch.equal(other.weight, layer.weight)
    with torch.no_grad():
        layer_theta(other).mul_(2)
    assert torch.equal(other.weight, by_hand(theta.detach() * 2, 0.3))
    twin = copy.deepcopy(layer)
    assert torch.equal(twin.weight, layer.weight)
    with torch.no_grad():
        layer_theta(twin).zero_()
    assert not torch.equal(twin.weight, layer.weight) and twin.weight.abs().sum() == 0
    wide = layer.to(torch.float64)
    assert wide.weight.dtype == torch.float64
    assert torch.equal(wide.weight, by_hand(layer_theta(wide).detach(), 0.3))


def test_no_grad_inference_mode_then_training():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    attach(net)
    for m in (net[0], net[2]):
        layer_st(m).set_threshold(0.1)
    x = torch.randn(4, 6)
    with torch.no_grad():
        a = net(x)
    with torch.inference_mode():
        b = net(x)
    c = net(x)
    c.sum().backward()  # the inference-mode cache must not leak into autograd
    assert torch.equal(a, b) and torch.equal(a, c.detach())
    assert layer_theta(net[0]).grad is not None


# --- any layer -------------------------------------------------------------------------------
LAYERS = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (2, 3, 7)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 3, padding=1), (1, 2, 4, 4, 4)),
    "depthwise": (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4), (2, 4, 5, 5)),
    "linear": (lambda: nn.Linear(6, 3), (4, 6)),
    "custom": (lambda: Custom(6), (3, 6)),
}


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("gradient", ["straight-through", "exact"])
def test_any_layer_matches_a_plain_layer_with_the_pruned_weight(kind, gradient):
    make, shape = LAYERS[kind]
    torch.manual_seed(1)
    pruned = make()
    plain = copy.deepcopy(pruned)
    layers = attach(pruned, include=Custom if kind == "custom" else None, gradient=gradient)
    assert list(layers) == [""]
    theta = layer_theta(pruned).detach().clone()
    d = float(theta.abs().median())  # about half the weights pruned
    layer_st(pruned).set_threshold(d)
    with torch.no_grad():
        plain.weight.copy_(by_hand(theta, d))
    x = torch.randn(shape)
    y_pruned, y_plain = pruned(x), plain(x)
    assert torch.allclose(y_pruned, y_plain, atol=1e-6)
    upstream = torch.randn_like(y_plain)
    (y_pruned * upstream).sum().backward()
    (y_plain * upstream).sum().backward()
    expected = plain.weight.grad if gradient == "straight-through" else plain.weight.grad * (theta.abs() > d)
    assert torch.allclose(layer_theta(pruned).grad, expected, atol=1e-6)
    assert (pruned.weight == 0).float().mean() >= 0.4


# --- which weights -------------------------------------------------------------------------------
def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def test_selection_include_exclude_dense_first_last():
    assert list(attach(small_net())) == ["0", "3.0", "6"]  # convs and linear, not batch norm
    assert list(attach(small_net(), dense_first_last=True)) == ["3.0"]
    assert list(attach(small_net(), include="3.*")) == ["3.0"]
    assert list(attach(small_net(), include=nn.Linear)) == ["6"]
    assert list(attach(small_net(), exclude=[nn.Linear, "0"])) == ["3.0"]
    assert list(attach(small_net(), include=[nn.BatchNorm2d], exclude="1")) == ["3.1"]
    with pytest.raises(TypeError, match="include"):
        attach(small_net(), include=[3])


def test_state_dict_carries_theta_and_threshold():
    torch.manual_seed(0)
    net = small_net()
    attach(net)
    for i, m in enumerate((net[0], net[3][0], net[6])):
        layer_st(m).set_threshold(0.05 * (i + 1))
    state = net.state_dict()
    assert "3.0.parametrizations.weight.original" in state
    assert state["3.0.parametrizations.weight.0.threshold"].item() == pytest.approx(0.1)
    fresh = small_net()
    attach(fresh)
    fresh.load_state_dict(state)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fresh.eval()(x), net.eval()(x))


def test_finalize_strict_loads_into_the_plain_architecture():
    torch.manual_seed(0)
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(net, opt, "stds-linear", final_threshold=0.15, end_step=1)
    x = torch.randn(2, 3, 8, 8)
    F.cross_entropy(net(x), torch.tensor([0, 2])).backward()
    opt.step()
    pruner.step()
    net.eval()
    before = net(x)
    zeros = {n: int((m.weight == 0).sum()) for n, m in pruner.layers.items()}
    assert sum(zeros.values()) > 0
    pruner.finalize()
    plain = small_net().eval()
    plain.load_state_dict(net.state_dict(), strict=True)
    assert type(net[0]) is nn.Conv2d
    assert torch.equal(plain(x), before)
    modules = dict(plain.named_modules())
    assert {n: int((modules[n].weight == 0).sum()) for n in zeros} == zeros
    assert sparsity_report(plain).totals["zeros"] == sum(zeros.values())
    with pytest.raises(RuntimeError, match="finalized"):
        pruner.step()


def test_module_level_finalize():
    net = small_net()
    attach(net)
    layer_st(net[6]).set_threshold(10.0)
    finalize(net)
    assert net[6].weight.abs().sum() == 0 and "6.weight" in net.state_dict()
    with pytest.raises(ValueError, match="no soft-threshold"):
        finalize(net)


def test_sparsity_report_counts_and_serialises():
    layer = Custom(6)
    attach(layer, include=Custom)
    with torch.no_grad():
        layer_theta(layer).copy_(THETA)
    layer_st(layer).set_threshold(D)
    report = sparsity_report(layer)
    assert isinstance(report, SparsityReport)
    assert report.global_sparsity == pytest.approx(3 / 6)  # the three zeros of W_EXPECTED
    row = report.rows[0]
    assert (row["shape"], row["numel"], row["zeros"], row["threshold"]) == ((6,), 6, 3, D)
    assert row["density"] == pytest.approx(3 / 6)
    assert (
        SparsityReport.from_dict(__import__("json").loads(report.to_json())).global_sparsity == report.global_sparsity
    )
    assert "density" in report.table()


def test_sparsity_report_names_the_layers_pruned_away():
    net = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))
    attach(net)
    with torch.no_grad():
        for i in (0, 1):
            layer_theta(net[i]).copy_(torch.full_like(layer_theta(net[i]), 0.25))
    layer_st(net[0]).set_threshold(0.1)
    layer_st(net[1]).set_threshold(0.25)  # S_d(θ) = 0 iff |θ| <= d: every weight of net[1]
    report = sparsity_report(net)
    assert report.empty_layers == ["1"]
    assert "every weight is pruned in 1;" in report.warning()
    layer_st(net[1]).set_threshold(0.2)  # d < |θ|: no zero in net[1], nothing to warn about
    assert sparsity_report(net).empty_layers == [] and sparsity_report(net).warning() is None


# --- AMP, DDP ----------------------------------------------------------------------------------
def test_autocast_bfloat16():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 3, 6, 6))
    attach(net)
    layer_st(net[0]).set_threshold(0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 3, 6, 6))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    grad = layer_theta(net[0]).grad
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()


def test_ddp_gradients_match_single_process(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    net = small_net()
    twin = copy.deepcopy(net)
    for m in (net, twin):
        attach(m)
        for layer in (m[0], m[3][0], m[6]):
            layer_st(layer).set_threshold(0.1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(net)
        x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2])
        F.cross_entropy(ddp(x), y).backward()
        F.cross_entropy(twin(x), y).backward()
    finally:
        cleanup_distributed(synchronize=True)  # the barrier first: without it this can hang (see there)
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


# --- the docstring example, and bad input ----------------------------------------------------------
def test_pruner_docstring_example():
    result = doctest.testmod(snn_lats.pruning.pruner, verbose=False)
    assert result.attempted >= 10 and result.failed == 0


def make_pruner(schedule="lats", model=None, **kwargs):
    model = model if model is not None else small_net()
    return SoftThresholdPruner(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule, **kwargs)


LR = [0.1] * 10
BAD = [
    (
        dict(schedule="lats"),
        ValueError,
        "schedule 'lats' needs l1 or final_threshold or target_sparsity or target_sops or target_energy",
    ),
    (dict(schedule="lats", l1=1e-3, final_threshold=0.1), ValueError, "not l1 and final_threshold"),
    (dict(schedule="pgh", beta=0.5), ValueError, "schedule 'pgh' needs l1 or final_threshold"),
    (dict(schedule="lats", l1=-1.0), ValueError, "l1 must be"),
    (dict(schedule="lats", l1="big"), TypeError, "l1 must be a number"),
    (dict(schedule="lats", final_threshold=-0.1, lr_schedule=LR), ValueError, "final_threshold must be"),
    (dict(schedule="stds-sine", final_threshold=-0.1, end_step=5), ValueError, "final_threshold must be"),
    (dict(schedule="lats", final_threshold=0.1), ValueError, "needs lr_schedule"),
    (dict(schedule="lats", final_threshold=0.1, lr_schedule=LR, total_steps=20), ValueError, "lr_schedule has 10"),
    (dict(schedule="lats", final_threshold=0.1, lr_schedule=7), TypeError, "lr_schedule must be"),
    (dict(schedule="pgh", final_threshold=0.1, lr_schedule=LR, beta=0.0), ValueError, "beta must be"),
    (dict(schedule="pgh", final_threshold=0.1, lr_schedule=LR, beta=-2.0), ValueError, "beta must be"),
    (dict(schedule="pgh", final_threshold=0.1, lr_schedule=LR), ValueError, "needs beta"),
    (dict(schedule="lats", l1=1e-3, beta=0.5), ValueError, "beta applies"),
    (dict(schedule="ista"), ValueError, "schedule must be one of"),
    (dict(schedule="slats", final_threshold=0.1), ValueError, "end_step or total_steps"),
    (
        dict(schedule="slats", final_threshold=0.1, start_step=5, end_step=5),
        ValueError,
        r"end \(5\) must be > start \(5\)",
    ),
    (dict(schedule="slats", l1=0.1, end_step=5), ValueError, "l1 does not apply to schedule 'slats'"),
    (dict(schedule="constant"), ValueError, "needs final_threshold"),
    (dict(schedule="constant", final_threshold=0.1, start_step=3), ValueError, "no pruning window"),
    (dict(schedule="learnable", l1=0.1), ValueError, "l1 does not apply to schedule 'learnable'"),
    (dict(schedule="lats", l1=0.1, gradient="ste"), ValueError, "gradient must be one of"),
    (dict(schedule="lats", l1=0.1, layer_scale={"nope": 2.0}), ValueError, "layer_scale names"),
    (dict(schedule="lats", l1=0.1, layer_scale=lambda n: -1.0), ValueError, "layer_scale"),
    (dict(schedule="lats", l1=0.1, start_step=-1), ValueError, "start must be >= 0"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_arguments(kwargs, error, message):
    net = small_net()
    state = copy.deepcopy(net.state_dict())
    with pytest.raises(error, match=message):
        make_pruner(model=net, **kwargs)
    assert list(net.state_dict()) == list(state)  # nothing was attached


def test_bad_models_optimizers_and_misuse():
    with pytest.raises(ValueError, match="nothing to prune"):
        make_pruner(model=nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), l1=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        SoftThresholdPruner(small_net(), "sgd", l1=0.1)
    net = small_net()
    with pytest.raises(ValueError, match="not trained by the optimizer"):
        SoftThresholdPruner(net, torch.optim.SGD(net[6].parameters(), lr=0.1), l1=0.1)
    pruner = make_pruner(l1=0.1)
    with pytest.raises(RuntimeError, match="before any optimizer.step"):
        pruner.step()
    with pytest.raises(ValueError, match="already has a soft threshold"):
        attach(pruner.model)
    with pytest.raises(ValueError, match="beta"):
        pgh_fraction(0.5, 0.0)
    with pytest.raises(ValueError, match="progress"):
        slats_fraction(1.5)


def test_training_forward_computes_the_pruned_weight_once_per_change():
    layer = nn.Linear(4, 3, bias=False)
    attach(layer)
    layer_st(layer).set_threshold(0.1)
    first, second = layer.weight, layer.weight  # a second read before θ changes reuses it
    assert first.data_ptr() == second.data_ptr()
    with torch.no_grad():
        layer_theta(layer).add_(1.0)
    assert layer.weight.data_ptr() != first.data_ptr()
    assert torch.equal(layer.weight, by_hand(layer_theta(layer).detach(), 0.1))
