"""SOP- and energy-aware LATS: the cost-weighted L1 term, landing on a budget, momentum, resume, bad input.

Oracles: the exact count of ``SynapticOpCounter`` (itself checked against brute force) over the
whole training set; the weighted proximal step, written out; scikit-learn's ``Lasso`` of the
rescaled problem, at ``α = λ(1 − μ)/(1 − τ)`` under heavy-ball momentum μ (dampening τ).
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import resume_train
from spikingjelly.activation_based import functional as sj_functional
from torch import nn

from snn_lats.estimators import ENERGY_PRESETS, EnergyPreset, SynapticOpCounter
from snn_lats.networks import make_neuron
from snn_lats.pruning import SoftThresholdPruner

pytestmark = pytest.mark.usefixtures("one_thread")

WARMUP, LR0 = 5, 0.2


def planned(steps):
    def lr(t):
        if t < WARMUP:
            return LR0 * (0.1 + 0.9 * t / WARMUP)
        return LR0 * (1 + math.cos(math.pi * (t - WARMUP) / (steps - WARMUP))) / 2

    return lr


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    return X[:1400], y[:1400], X[1400:], y[1400:]


class SpikingMLP(nn.Module):
    """The image (real values: MACs) into IF neurons over T steps, spikes (ACs) into the next layers."""

    spiking = True
    T = 4

    def __init__(self):
        super().__init__()
        self.fc1, self.sn1 = nn.Linear(64, 128), make_neuron("if")
        self.fc2, self.sn2 = nn.Linear(128, 64), make_neuron("if")
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        sj_functional.reset_net(self)
        x = x.unsqueeze(0).repeat(self.T, 1, 1)
        return self.fc3(self.sn2(self.fc2(self.sn1(self.fc1(x))))).mean(0)


def network(kind: str) -> nn.Module:
    if kind == "snn":
        return SpikingMLP()
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def exact_count(model, X, preset=None) -> float:
    """SOPs (or pJ, under ``preset``) per sample over the whole of ``X``."""
    with torch.no_grad(), SynapticOpCounter(model) as counter:
        model(X)
    report = counter.report()
    return report.acs_per_sample + report.macs_per_sample if preset is None else report.energy_pj(preset)


def train(model, X, y, steps, seed=0, trace=None, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    lr = planned(steps)
    pruner = SoftThresholdPruner(model, optimizer, "lats", total_steps=steps, lr_schedule=lr, **kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr(t) / LR0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(X), (128,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(X[batch]), y[batch]).backward()
        optimizer.step()
        scheduler.step()
        in_force = pruner.l1
        pruner.step()
        if trace is not None:
            trace.append((pruner.step_count, in_force, pruner.implied_l1(), pruner.thresholds()))
    return pruner


LANDINGS = [("ann", None, 0.1), ("ann", "45nm-fp32", 0.05), ("snn", None, 0.1), ("snn", "45nm-fp32", 0.2)]


@pytest.mark.parametrize("kind, preset, fraction", LANDINGS, ids=["ann-sops", "ann-energy", "snn-sops", "snn-energy"])
def test_the_training_data_count_lands_within_2_percent_of_the_target(kind, preset, fraction, digits, capsys):
    X, y, X_test, _ = digits
    torch.manual_seed(0)
    model = network(kind)
    target = fraction * exact_count(model, X, preset)
    strength = {"target_sops": target} if preset is None else {"target_energy": target, "energy_preset": preset}
    trace = []
    pruner = train(model, X, y, 150, trace=trace, **strength)
    reached, held_out = exact_count(model, X, preset), exact_count(model, X_test, preset)
    assert reached == pytest.approx(target, rel=0.02)
    # One λ per stretch (each step's Δd/η is the λ in force), never < 0, and thresholds that never
    # shrink until the settle point, one stretch before the end.
    settle = 150 - pruner.retarget_every
    for step, in_force, implied, _ in trace:
        assert in_force >= 0
        if step < settle:
            assert implied == pytest.approx(in_force, rel=1e-9, abs=1e-12), step
    assert len({in_force for step, in_force, _, _ in trace if step < settle}) <= settle // pruner.retarget_every + 2
    for (_, _, _, before), (step, _, _, after) in zip(trace, trace[1:]):
        if step < settle:
            assert all(after[n] >= before[n] for n in before), step
    assert pruner.cost == ("sops" if preset is None else "energy")
    assert pruner.sparsity().global_sparsity > 0.3
    with capsys.disabled():
        unit = "SOPs" if preset is None else "pJ"
        print(
            f"\n{kind} {unit}: target {target:.1f}; training data {reached:.1f} "
            f"({100 * (reached / target - 1):+.2f} %); "
            f"held out {held_out:.1f} ({100 * (held_out / target - 1):+.2f} %); sparsity "
            f"{pruner.sparsity().global_sparsity:.3f}"
        )


def test_costs_weight_each_layer_by_what_its_weights_cost(digits):
    """c_l is the mean over layer l's weights of what each adds to the count: in the first layer
    of the MLP, the nonzero rate of the input pixels (MACs)."""
    X, y, _, _ = digits
    torch.manual_seed(0)
    model = network("ann")
    pruner = train(model, X, y, 64, target_sops=0.3 * exact_count(model, X))
    costs = pruner.layer_costs()
    estimate = pruner.cost_estimate
    assert set(costs) == {"0", "2", "4"}
    assert estimate["step"] == 64 and estimate["samples"] == 2 * 128  # the last stretch: 2 batches of 128
    assert estimate["dense"] > 3 * estimate["pruned"] > 0
    # the first layer's inputs are the images: w[o, i] costs P(pixel i != 0) per sample, a
    # rate that the measured batches estimate; its threshold grows with the square root of it
    assert costs["0"] == pytest.approx(math.sqrt(float((X != 0).double().mean())), rel=0.05)


# --- the identity: one step of SGD is one weighted proximal step --------------------------------


class TwoBlocks(nn.Module):
    """A linear model whose features are split between two layers: w_a on x[:, :pa], w_b on the rest."""

    def __init__(self, pa: int, pb: int):
        super().__init__()
        self.pa = pa
        self.a, self.b = nn.Linear(pa, 1, bias=False), nn.Linear(pb, 1, bias=False)

    def forward(self, x):
        return (self.a(x[:, : self.pa]) + self.b(x[:, self.pa :])).squeeze(1)


def lasso_problem(n=300, pa=15, pb=15, seed=0):
    """Features of two sparsities (half and a tenth of them zero), a sparse truth, noise."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, pa + pb, generator=g, dtype=torch.float64)
    X[:, :pa] *= torch.rand(n, pa, generator=g) < 0.5
    X[:, pa:] *= torch.rand(n, pb, generator=g) < 0.9
    truth = torch.zeros(pa + pb, dtype=torch.float64)
    truth[[0, 3, 7, 16, 20, 28]] = torch.tensor([2.0, -1.5, 1.0, -2.0, 1.2, 0.8], dtype=torch.float64)
    return X, X @ truth + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)


def layer_costs_by_hand(X, pa):
    """c_l = mean over the layer's weights of P(x_i != 0): a MAC per nonzero input, per sample."""
    rate = (X != 0).double().mean(0)
    return float(rate[:pa].mean()), float(rate[pa:].mean())


@pytest.mark.parametrize("weighting, power", [("linear", 1.0), ("sqrt", 0.5), ("uniform", 0.0)])
def test_one_sgd_step_is_a_weighted_proximal_step_for_the_unpruned_weights(weighting, power):
    """c_l = e_l^p, e_l the layer's mean cost per weight: the prox step of L + λ Σ_l c_l ‖w_l‖₁."""
    X, y = lasso_problem()
    torch.manual_seed(0)
    model = TwoBlocks(15, 15).double()
    lam, lr = 0.05, 0.3
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", l1=lam, cost="sops", cost_weighting=weighting, retarget_every=8
    )
    c = {name: e**power for name, e in zip("ab", layer_costs_by_hand(X, 15))}

    def loss():
        return 0.5 * ((model(X) - y) ** 2).mean()

    checked = 0
    for step in range(40):
        optimizer.zero_grad()
        loss().backward()
        before = {n: (m.weight.detach().clone(), m.parametrizations.weight.original.grad.clone()) for n, m in
                  pruner.layers.items()}  # fmt: skip
        d_before = pruner.thresholds()
        due = pruner._controller.due(step + 1)  # a re-estimate at the end of this step changes c_l
        optimizer.step()
        pruner.step()
        if due or step == 0:
            continue
        assert pruner.layer_costs() == pytest.approx(c, rel=1e-12)
        for name, module in pruner.layers.items():
            w, g = before[name]
            after = module.weight.detach()
            assert pruner.thresholds()[name] - d_before[name] == pytest.approx(lam * c[name] * lr, rel=1e-9)
            kept = (w != 0) & (after != 0) & (torch.sign(w) == torch.sign(after))
            step_w = w - lr * (g + lam * c[name] * torch.sign(w))  # prox step on L + λ Σ c_l |w|
            assert torch.allclose(after[kept], step_w[kept], rtol=0, atol=1e-12)
            checked += int(kept.sum())
    assert checked > 300  # (weights x steps)


# --- fixed points: the LASSO, plain and weighted, with and without momentum ------------------------


@pytest.mark.parametrize(
    "momentum, dampening, cost",
    [(0.0, 0.0, None), (0.9, 0.0, None), (0.9, 0.5, None), (0.0, 0.0, "sops"), (0.9, 0.0, "sops")],
    ids=["plain", "momentum", "momentum-dampening", "weighted", "weighted-momentum"],
)
def test_lats_converges_to_the_lasso_of_lambda_times_one_minus_momentum(momentum, dampening, cost):
    """Heavy ball: at a stationary unpruned weight the buffer is b = (1 − τ)g/(1 − μ) and the step
    is −η(b + λ c sign w) = 0, so g = −λ c (1 − μ)/(1 − τ) sign w: the KKT conditions of
    L + α Σ c_l ‖w_l‖₁ with α = λ(1 − μ)/(1 − τ). With costs, w_l = u_l / c_l turns it into a
    plain LASSO on the rescaled features x / c_l, solved by scikit-learn."""
    from sklearn.linear_model import Lasso

    X, y = lasso_problem()
    torch.manual_seed(0)
    model = TwoBlocks(15, 15).double()
    lam = 0.05
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2 if momentum else 0.5, momentum=momentum, dampening=dampening)
    kwargs = {} if cost is None else {"cost": cost, "cost_weighting": "linear", "retarget_every": 50}
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=lam, **kwargs)
    for _ in range(2500):
        optimizer.zero_grad()
        (0.5 * ((model(X) - y) ** 2).mean()).backward()
        optimizer.step()
        pruner.step()
    w = torch.cat([model.a.weight.detach().flatten(), model.b.weight.detach().flatten()])
    scale = torch.ones(30, dtype=torch.float64)
    if cost is not None:
        ca, cb = layer_costs_by_hand(X, 15)
        scale[:15], scale[15:] = ca, cb

    def lasso(alpha):
        fit = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=10**6).fit((X / scale).numpy(), y.numpy())
        return torch.tensor(fit.coef_) / scale

    expected = lasso(lam * (1 - momentum) / (1 - dampening))
    assert float((w - expected).abs().max()) < 1e-8
    assert torch.equal(w == 0, expected == 0)
    assert 0 < int((w == 0).sum()) < 30
    if momentum:  # not the LASSO of λ itself
        assert float((w - lasso(lam)).abs().max()) > 0.05


# --- resume -------------------------------------------------------------------------------


RESUME_STEPS = 40  # retarget_every 4: re-estimates at 1, 4, ..., 32, settle at 36, snap at 40


def resume_run(seed, preset):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    strength = {"target_sops": 20.0} if preset is None else {"target_energy": 60.0, "energy_preset": preset}
    lr = planned(RESUME_STEPS)
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", total_steps=RESUME_STEPS, lr_schedule=lr, retarget_every=4, **strength
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr(t) / LR0)
    return model, optimizer, pruner, scheduler


@pytest.mark.parametrize("stop", [6, 34, 38], ids=["between", "measuring-before-settling", "measuring-the-end"])
@pytest.mark.parametrize("preset", [None, "45nm-fp16"], ids=["sops", "energy"])
def test_a_run_resumes_exactly_from_its_state_dict(stop, preset):
    reference = resume_run(0, preset)
    expected = resume_train(*reference, 0, RESUME_STEPS)
    first = resume_run(0, preset)
    resume_train(*first, 0, stop)
    model, optimizer, pruner, scheduler = first
    state = pruner.state_dict()
    assert state["version"] == 4 and state["costs"] is not None
    if stop != 6:
        assert state["costs"]["meter"]["samples"] > 0  # the state holds a measurement in progress
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "pruner": state}, buffer)  # fmt: skip
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = resume_run(123, preset)
    model, optimizer, pruner, scheduler = resumed
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    pruner.load_state_dict(checkpoint["pruner"])
    trace = resume_train(*resumed, stop, RESUME_STEPS)
    for t, (got, want) in enumerate(zip(trace, expected[stop:], strict=True), start=stop):
        assert got == want, t  # float by float: thresholds, d, λ, λ_t, c_l
    # the end of the window as in the run never interrupted: the last measurement, and every θ
    assert pruner.cost_estimate == reference[2].cost_estimate
    assert pruner.cost_estimate["step"] == RESUME_STEPS
    for key, value in reference[0].state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# --- bad input ---------------------------------------------------------------------------


class Scale(nn.Module):
    """A layer with a weight that the counter does not know."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return x * self.weight


LR = [0.1] * 10
BAD = [
    (dict(target_sops=-1.0, lr_schedule=LR), ValueError, "target_sops must be a number|target_sops must be a finite"),
    (dict(target_sops=math.inf, lr_schedule=LR), ValueError, "target_sops must be a finite number > 0"),
    (dict(target_energy=0.0, lr_schedule=LR), ValueError, "target_energy must be a finite number > 0"),
    (dict(target_sops="many", lr_schedule=LR), TypeError, "target_sops must be a number"),
    (dict(target_sops=10.0, l1=0.1, lr_schedule=LR), ValueError, "not l1 and target_sops"),
    (dict(target_energy=10.0, final_threshold=0.1, lr_schedule=LR), ValueError, "not final_threshold and target_en"),
    (dict(target_sops=10.0, target_sparsity=0.5, lr_schedule=LR), ValueError, "not target_sparsity and target_sops"),
    (dict(target_sops=10.0), ValueError, "target_sops needs lr_schedule"),
    (dict(target_sops=10.0, cost="sops", lr_schedule=LR), ValueError, "weighs its own"),
    (dict(target_sops=10.0, energy_preset="45nm-fp32", lr_schedule=LR), ValueError, "energy_preset prices energy"),
    (dict(target_energy=10.0, energy_preset="7nm", lr_schedule=LR), ValueError, "preset must be one of"),
    (dict(l1=0.1, cost="flops"), ValueError, "cost must be one of"),
    (dict(final_threshold=0.1, cost="sops", lr_schedule=LR), ValueError, "explicit l1"),
    (dict(l1=0.1, cost="sops"), ValueError, "give retarget_every"),
    (dict(target_energy=10.0, energy_preset=EnergyPreset(0.9, 0.0, "AC only"), lr_schedule=LR), ValueError,
     "not spiking: every operation of it is a MAC"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, error, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_arguments_are_refused_before_anything_is_attached(kwargs, error, message):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(error, match=message):
        SoftThresholdPruner(model, torch.optim.SGD(model.parameters(), lr=0.1), "lats", **kwargs)
    assert not any("parametrizations" in key for key in model.state_dict())


def test_a_layer_or_a_model_the_counter_does_not_count_is_refused():
    model = nn.Sequential(nn.Linear(4, 4), Scale())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"does not count 1 \(Scale\)"):
        SoftThresholdPruner(model, optimizer, "lats", target_sops=5.0, lr_schedule=LR, include=[nn.Linear, Scale])
    only = nn.Sequential(Scale())
    with pytest.raises(ValueError, match=r"does not count 0 \(Scale\)"):
        SoftThresholdPruner(only, torch.optim.SGD(only.parameters(), lr=0.1), "lats", target_sops=5.0,
                            lr_schedule=LR, include=Scale)  # fmt: skip
    recurrent = nn.ModuleDict({"rnn": nn.RNN(4, 4), "fc": nn.Linear(4, 2)})
    with pytest.raises(ValueError, match="rnn: recurrent layers"):
        SoftThresholdPruner(recurrent, torch.optim.SGD(recurrent.parameters(), lr=0.1), "lats", target_sops=5.0,
                            lr_schedule=LR)  # fmt: skip
    assert not any("parametrizations" in key for key in model.state_dict())


def test_an_unreachable_target_is_refused_at_the_first_measurement(digits):
    X, y, _, _ = digits
    torch.manual_seed(0)
    model = network("ann")
    dense = exact_count(model, X)
    with pytest.raises(ValueError, match="is not below the unpruned network's .* SOPs per sample on its first 128"):
        train(model, X, y, 64, target_sops=1.5 * dense)
    torch.manual_seed(0)
    model = network("snn")
    # With the first and last layers dense, those alone cost more than 1 % of the whole network.
    dense = exact_count(model, X)
    with pytest.raises(ValueError, match="cannot be reached: the synaptic layers left out of the pruning already cost"):
        train(model, X, y, 64, target_sops=0.01 * dense, dense_first_last=True)


def test_a_window_that_ends_at_a_large_lr_does_not_prune_everything():
    """The end-of-window correction is bounded: after the settle point, weights that regrow under a
    still-large lr move the count for another reason than the settling (it once aimed at -136
    SOPs here and pruned every weight)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = 40
    pruner = SoftThresholdPruner(model, optimizer, "lats", target_sops=20.0, total_steps=steps,
                                 lr_schedule=[0.1] * steps, retarget_every=4)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):  # a loss that keeps pushing the weights out: they regrow after the settle point
        optimizer.zero_grad()
        model(torch.randn(16, 6, generator=g)).sum().backward()
        optimizer.step()
        pruner.step()
    weights = [module.weight for module in (model[0], model[2])]
    assert sum(int((w != 0).sum()) for w in weights) > 0  # not everything pruned


def test_a_model_that_is_itself_the_synaptic_layer():
    """The root module as the pruned layer (a bare nn.Linear: the LASSO case), whose counter row is
    named by its type while named_modules() names it ''."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", l1=0.05, cost="sops", cost_weighting="linear", retarget_every=4
    )
    x, y = torch.randn(32, 6).relu(), torch.randint(0, 3, (32,))
    for _ in range(12):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()
    # A weight of a Linear layer costs the nonzero inputs it multiplies, per sample: the brute force.
    expected = (x != 0).double().mean(0).mean()
    assert pruner.layer_costs()[""] == pytest.approx(float(expected))


def test_forwards_the_hooks_miss_are_a_warning_or_an_error_and_eager_ones_are_measured():
    """torch.compile ignores hooks attached after it compiled, and a forward that uses a layer's
    weight without calling the layer skips them: neither may leave the costs silently at zero."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", l1=0.05, cost="sops", cost_weighting="linear", retarget_every=4, start_step=4
    )
    compiled = torch.compile(model, backend="aot_eager")
    x, y = torch.randn(32, 6).relu(), torch.randint(0, 3, (32,))

    def step(forward):
        optimizer.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        optimizer.step()
        pruner.step()

    for _ in range(3):  # before the window, unmeasured: compiled without the hooks
        assert not pruner.measuring
        step(compiled)
    assert pruner.measuring  # the forward before the window's first re-estimate
    with pytest.warns(UserWarning, match="no training forward was measured.*through torch.compile"):
        step(compiled)
    assert pruner.cost_estimate is None
    for _ in range(4):  # the next stretch, the measured forward eager
        step(model if pruner.measuring else compiled)
    # The first layer's weights cost the nonzero inputs they multiply, per sample: the brute force.
    assert pruner.layer_costs()["0"] == pytest.approx(float((x != 0).double().mean()))
    assert pruner.cost_estimate["samples"] == 32

    class Functional(nn.Module):  # calls F.linear with the layer's weight, never the layer
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return F.linear(x, self.fc.weight, self.fc.bias)

    model = Functional()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.05, cost="sops", retarget_every=2)
    with pytest.raises(RuntimeError, match="saw 32 training samples but no call of a pruned layer"):
        for _ in range(2):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            pruner.step()


def test_an_ac_only_preset_prices_a_spiking_network():
    """An AC-only preset (mac_pj = 0: a chip that charges synaptic events only) is accepted for a
    spiking network, whose spikes cost; for an ANN it is refused (test above)."""
    model = SpikingMLP()
    preset = EnergyPreset(ENERGY_PRESETS["45nm-fp32"].ac_pj, 0.0, "ACs only")
    pruner = SoftThresholdPruner(model, torch.optim.SGD(model.parameters(), lr=0.1), "lats", target_energy=10.0,
                                 energy_preset=preset, lr_schedule=LR)  # fmt: skip
    assert pruner.energy_preset == preset and pruner.target_energy == 10.0


def test_check_target_refuses_before_training_and_leaves_the_model_and_the_rng_as_they_were():
    """The oracle: the exact count of the unpruned network on the same batch, in training mode
    (the dropout masks drawn from the same RNG state)."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    x = torch.randn(32, 6).relu()  # zeros in the input: the first layer's MACs depend on them
    for factor, refused in ((1.0, True), (0.999, False)):
        rng = torch.get_rng_state()
        oracle = copy.deepcopy(plain).train()
        with torch.no_grad(), SynapticOpCounter(oracle) as counter:
            oracle(x)
        report = counter.report()
        torch.set_rng_state(rng)
        model = copy.deepcopy(plain)
        target = factor * (report.acs_per_sample + report.macs_per_sample)
        pruner = SoftThresholdPruner(model, torch.optim.SGD(model.parameters(), lr=0.1), "lats", target_sops=target,
                                     lr_schedule=LR)  # fmt: skip
        before = {k: v.clone() for k, v in model.state_dict().items()}
        if refused:
            with pytest.raises(ValueError, match=r"is not below the unpruned network's .* on 32 training samples"):
                pruner.check_target(x)
        else:
            pruner.check_target(x)
        assert torch.equal(torch.get_rng_state(), rng)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # BatchNorm statistics too
