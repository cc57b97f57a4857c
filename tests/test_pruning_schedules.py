"""Threshold schedules, the ISTA identity, a LASSO solved by LATS, and exact resumption.

Oracles: numeric integration (scipy.integrate.quad), formulas written out here, the learning
rates read from the optimizer by the test itself, scikit-learn's Lasso, and an uninterrupted run.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import quad
from torch import nn

from snn_lats.pruning import (
    SCHEDULES,
    PruningSpec,
    SoftThresholdPruner,
    pgh_fraction,
    slats_fraction,
    stds_linear_fraction,
    stds_sine_fraction,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def theta(module: nn.Module) -> torch.Tensor:
    return module.parametrizations.weight.original


def cosine(lr0: float, steps: int):
    return lambda t: lr0 * (1 + math.cos(math.pi * t / steps)) / 2


# --- closed forms ---------------------------------------------------------------------------
def normalised_integral(f, x):
    return quad(f, 0, x, epsabs=1e-14, epsrel=1e-13)[0] / quad(f, 0, 1, epsabs=1e-14, epsrel=1e-13)[0]


@pytest.mark.parametrize("x", np.linspace(0, 1, 11))
def test_closed_forms_match_numeric_integration(x):
    # d(x)/D = ∫_0^x η(s)λ(s) ds / ∫_0^1 η(s)λ(s) ds, with η ∝ 1 + cos πs for S-LATS and PGH.
    assert slats_fraction(x) == pytest.approx(normalised_integral(lambda s: 1 + math.cos(math.pi * s), x), abs=1e-12)
    assert stds_sine_fraction(x) == pytest.approx(normalised_integral(lambda s: math.sin(math.pi * s), x), abs=1e-12)
    assert stds_linear_fraction(x) == pytest.approx(normalised_integral(lambda s: 1.0, x), abs=1e-12)
    for beta in (1e-3, 0.2, 1 - 1e-9, 1.0, 1 + 1e-9, 5.0):
        expected = normalised_integral(lambda s, beta=beta: (1 + math.cos(math.pi * s)) * beta**s, x)
        assert pgh_fraction(x, beta) == pytest.approx(expected, abs=1e-11), beta
    assert pgh_fraction(x, 1.0) == pytest.approx(slats_fraction(x), abs=1e-15)


# --- LATS: the lr the optimizer applied ------------------------------------------------------------
WARMUP, STEPS, LR0, D = 5, 40, 0.1, 0.03


def warmup_cosine(optimizer):
    lr = torch.optim.lr_scheduler
    return lr.SequentialLR(
        optimizer,
        [
            lr.LinearLR(optimizer, 0.1, 1.0, total_iters=WARMUP),
            lr.CosineAnnealingLR(optimizer, STEPS - WARMUP, eta_min=1e-3),
        ],
        milestones=[WARMUP],
    )


def planned_warmup_cosine(t):
    """The same schedule written out: linear warm-up from 0.1·lr0, then cosine to 1e-3."""
    if t < WARMUP:
        return LR0 * (0.1 + 0.9 * t / WARMUP)
    return 1e-3 + (LR0 - 1e-3) * (1 + math.cos(math.pi * (t - WARMUP) / (STEPS - WARMUP))) / 2


def run_lats(lr_schedule, scheduler_first=False, steps=STEPS):
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", final_threshold=D, total_steps=STEPS, lr_schedule=lr_schedule
    )
    scheduler = warmup_cosine(optimizer)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    applied, thresholds, implied = [], [], []
    for _ in range(steps):
        applied.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if scheduler_first:
            scheduler.step()
        assert pruner.step()
        if not scheduler_first:
            scheduler.step()
        thresholds.append(pruner.threshold)
        implied.append(pruner.implied_l1())
    return pruner, applied, thresholds, implied


def test_lats_under_warmup_cosine_keeps_l1_constant_and_reaches_the_final_threshold():
    pruner, applied, thresholds, implied = run_lats(planned_warmup_cosine)
    l1 = D / sum(planned_warmup_cosine(t) for t in range(STEPS))  # λ = D / Σ planned η
    assert pruner.l1 == pytest.approx(l1, rel=1e-12)
    previous = 0.0
    for t in range(STEPS):
        assert abs(implied[t] / l1 - 1) < 1e-6, t
        assert abs((thresholds[t] - previous) / applied[t] / l1 - 1) < 1e-6, t  # Δd / η, read here
        previous = thresholds[t]
    assert thresholds[-1] == pytest.approx(D, rel=1e-12)
    assert all(abs(v - thresholds[-1]) < 1e-15 for v in pruner.thresholds().values())


def test_lats_reaches_the_final_threshold_exactly_when_the_planned_lrs_are_the_applied_ones():
    _, applied, _, _ = run_lats(planned_warmup_cosine)  # a dry run records the applied lrs
    pruner, _, thresholds, _ = run_lats(applied)
    assert thresholds[-1] == D
    # The scheduler may step before or after pruner.step(): the applied lr is what counts.
    _, _, thresholds_first, _ = run_lats(applied, scheduler_first=True)
    assert thresholds_first == thresholds


@pytest.mark.parametrize(
    "make_scheduler",
    [
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=7, T_mult=2, eta_min=0.01),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=9, gamma=0.3),
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=40),
    ],
    ids=["restarts", "step-decay", "one-cycle"],
)
def test_lats_threshold_is_l1_times_the_sum_of_applied_lrs_under_any_scheduler(make_scheduler):
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.25)
    scheduler = make_scheduler(optimizer)
    applied = 0.0
    for _ in range(40):
        applied += optimizer.param_groups[0]["lr"]  # read before the step: the lr it applies
        optimizer.step()
        scheduler.step()
        pruner.step()
        assert pruner.threshold == pytest.approx(0.25 * applied, rel=1e-12)


def test_lats_under_a_cosine_lr_follows_the_slats_closed_form():
    steps, l1 = 400, 0.2
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=l1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    total = l1 * sum(cosine(0.1, steps)(t) for t in range(steps))
    for t in range(steps):
        optimizer.step()  # no gradients: θ stays, but the step (and its lr) is applied
        scheduler.step()
        pruner.step()
        x = (t + 1) / steps
        assert pruner.threshold / total == pytest.approx(x + math.sin(math.pi * x) / math.pi, abs=2 / steps)


def test_progress_schedules_follow_their_formulas_in_the_window():
    formulas = {
        "slats": lambda x: x + math.sin(math.pi * x) / math.pi,
        "stds-sine": lambda x: (1 - math.cos(math.pi * x)) / 2,
        "stds-linear": lambda x: x,
    }
    start, end = 3, 13
    for schedule, f in formulas.items():
        model = net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        pruner = SoftThresholdPruner(model, optimizer, schedule, final_threshold=D, start_step=start, end_step=end)
        for k in range(1, 17):  # after k optimizer steps
            optimizer.step()
            pruner.step()
            x = min(max((k - start) / (end - start), 0.0), 1.0)
            assert pruner.threshold == pytest.approx(D * f(x), abs=1e-15), (schedule, k)
        assert pruner.threshold == D


def test_pgh_is_lr_driven_geometric_and_equals_lats_at_beta_one():
    steps, beta = 200, 0.2
    planned = cosine(0.1, steps)

    def run(schedule, **kwargs):
        model = net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        pruner = SoftThresholdPruner(
            model, optimizer, schedule, final_threshold=D, total_steps=steps, lr_schedule=planned, **kwargs
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        out = []
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
            pruner.step()
            out.append((pruner.threshold, pruner.implied_l1()))
        return pruner, out

    pruner, trace = run("pgh", beta=beta)
    l0 = D / sum(beta ** (t / steps) * planned(t) for t in range(steps))
    assert pruner.l1 == pytest.approx(l0, rel=1e-12)
    for t, (d, implied) in enumerate(trace):
        assert implied / (l0 * beta ** (t / steps)) == pytest.approx(1, abs=1e-6), t  # λ_t = λ0·β^x
        assert d / D == pytest.approx(pgh_fraction((t + 1) / steps, beta), abs=2 / steps), t
    assert trace[-1][0] == pytest.approx(D, rel=1e-12)
    _, pgh_one = run("pgh", beta=1.0)
    _, lats = run("lats")
    assert pgh_one == lats


def test_start_and_end_of_the_window_param_groups_and_layer_scale():
    model = net()
    optimizer = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[2].parameters(), "lr": 0.01},
        ]
    )
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.5, start_step=2, end_step=6, layer_scale={"2": 3.0})
    for k in range(1, 10):
        optimizer.step()
        pruner.step()
        grown = min(max(k - 2, 0), 4)  # steps 2, 3, 4, 5 add λη each
        assert pruner.thresholds()["0"] == pytest.approx(0.5 * 0.1 * grown, abs=1e-15)
        assert pruner.thresholds()["2"] == pytest.approx(3.0 * 0.5 * 0.01 * grown, abs=1e-15)
    callable_scale = SoftThresholdPruner(
        net(),
        torch.optim.SGD(net().parameters(), lr=0.1),
        "constant",
        final_threshold=0.2,
        layer_scale=lambda name: 2.0 if name == "0" else 1.0,
    )
    assert callable_scale.thresholds() == pytest.approx({"0": 0.4, "2": 0.2})


def test_a_param_group_added_after_the_pruner_is_ignored():
    # A group added later (a new head, an unfrozen backbone) holds no pruned weight: d grows by λη
    # of the pruned layers' own group, whatever the new group's lr.
    model, head = net(), nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.5)
    optimizer.step()
    pruner.step()
    optimizer.add_param_group({"params": head.parameters(), "lr": 7.0})
    for _ in range(3):
        optimizer.step()
        assert pruner.step()
    assert pruner.threshold == pytest.approx(0.5 * 0.1 * 4, abs=1e-15)
    assert pruner.implied_l1() == pytest.approx(0.5)
    pruner.load_state_dict(pruner.state_dict())  # the state still matches the pruner's groups


def test_several_optimizer_steps_per_pruner_step_all_count():
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.5)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.3
    optimizer.step()
    assert pruner.has_pending_step and pruner.step() and not pruner.has_pending_step
    assert pruner.threshold == pytest.approx(0.5 * (0.1 + 0.3))
    assert pruner.implied_l1() == pytest.approx(0.5)
    assert pruner.step() is False  # nothing new


def test_a_step_skipped_by_grad_scaler_does_not_advance_the_threshold():
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.5)
    scaler = torch.amp.GradScaler("cpu")
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for poison in (False, True):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y) * (math.inf if poison else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        assert pruner.has_pending_step is (not poison)
        assert pruner.step() is (not poison)
    assert pruner.step_count == 1
    assert pruner.threshold == pytest.approx(0.5 * 0.1)


def test_constant_prunes_from_step_zero_without_changing_the_initial_function():
    model = net()
    w0 = {name: model.get_submodule(name).weight.detach().clone() for name in ("0", "2")}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "constant", final_threshold=0.1)
    assert pruner.threshold == 0.1
    for name, w in w0.items():
        module = model.get_submodule(name)
        assert torch.allclose(theta(module), torch.sign(w) * (w.abs() + 0.1))  # θ0 = sign(w0)(|w0| + D)
        assert torch.allclose(module.weight, w, atol=1e-7)
    optimizer.step()
    pruner.step()
    assert pruner.threshold == 0.1 and pruner.implied_l1() == 0.0


def test_learnable_thresholds_are_trained_by_the_optimizer():
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    pruner = SoftThresholdPruner(model, optimizer, "learnable", s_init=-3.0, gradient="exact")
    assert len(optimizer.param_groups) == 2
    logits = [model.get_submodule(n).parametrizations.weight[0].threshold_logit for n in ("0", "2")]
    assert optimizer.param_groups[1]["params"] == logits
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()
    assert all(float(s.detach()) != -3.0 for s in logits)
    expected = {n: float(torch.sigmoid(s.detach())) for n, s in zip(("0", "2"), logits, strict=True)}
    assert pruner.thresholds() == pytest.approx(expected)
    assert model.state_dict()["0.parametrizations.weight.0.threshold"].item() == pytest.approx(expected["0"])


# --- a schedule and its settings as one spec --------------------------------------------------
def test_a_spec_in_epochs_becomes_steps_and_every_schedule_builds_a_pruner_from_it():
    strengths = {
        "lats": dict(final_threshold=0.1),
        "slats": dict(final_threshold=0.1),
        "pgh": dict(final_threshold=0.1, beta=0.3),
        "stds-sine": dict(final_threshold=0.1),
        "stds-linear": dict(final_threshold=0.1),
        "constant": dict(final_threshold=0.1),
        "learnable": dict(gradient="exact"),
        "gmp": dict(target_sparsity=0.5),
    }
    assert set(strengths) == set(SCHEDULES)
    planned = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # handed over whatever the schedule: used where it plans with it
    for schedule, strength in strengths.items():
        windowless = schedule in ("constant", "learnable")
        window = {} if windowless else dict(start=1, end=3)
        spec = PruningSpec(schedule=schedule, unit="epochs", **window, **strength)
        steps = spec.in_steps(2)
        # epochs 1..3 at 2 steps an epoch are steps 2..6; a windowless spec stays without a window
        assert (steps.start, steps.end, steps.unit) == ((0, None) if windowless else (2, 6)) + ("steps",)
        assert steps.in_steps(5) is steps
        model = net()
        pruner = SoftThresholdPruner(
            model, torch.optim.SGD(model.parameters(), lr=0.1), spec=steps, lr_schedule=planned
        )
        assert (pruner.spec, pruner.schedule, pruner.start_step, pruner.end_step) == (
            steps,
            schedule,
            steps.start,
            steps.end,
        )
    with pytest.raises(ValueError, match="not a spec in epochs"):
        SoftThresholdPruner(net(), torch.optim.SGD(net().parameters(), lr=0.1), spec=PruningSpec(l1=0.1, unit="epochs"))
    model = net()
    with pytest.raises(TypeError, match=r"give spec or the pruning arguments it holds, not both \(l1\)"):
        SoftThresholdPruner(model, torch.optim.SGD(model.parameters(), lr=0.1), l1=0.1, spec=PruningSpec(l1=0.1))


def test_a_spec_records_plain_values():
    spec = PruningSpec(
        schedule="lats", target_energy=2e6, energy_preset="45nm-fp16", include="layer*, Conv2d", exclude=[nn.Linear]
    )
    record = spec.to_dict()
    assert record["include"] == ["layer*", "Conv2d"] and record["exclude"] == ["Linear"]
    assert spec.include == ["layer*", nn.Conv2d]  # the text form is parsed: a torch.nn type name is the type
    assert (record["target_energy"], record["energy_preset"], record["cost_weighting"]) == (2e6, "45nm-fp16", "sqrt")
    assert (spec.measure, spec.target, spec.controlled) == ("energy", 2e6, True)
    assert PruningSpec(schedule="gmp", target_sparsity=0.9, end=10).measure is None  # GMP needs no controller


# --- ISTA and LASSO -------------------------------------------------------------------------------
def least_squares_problem(n=60, p=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    w_true = torch.zeros(p, dtype=torch.float64)
    w_true[:3] = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    y = X @ w_true + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def loss_fn(layer, X, y):
    """(1/2n)·‖y − Xw‖²: the smooth part of scikit-learn's Lasso objective."""
    return 0.5 * ((y - layer(X).squeeze(1)) ** 2).mean()


def prox_gradient_step(w, X, y, eta, l1):
    """One ISTA step on (1/2n)‖y − Xw‖² + λ‖w‖₁, written out: S_{ηλ}(w − η·Xᵀ(Xw − y)/n)."""
    v = w - eta * X.T @ (X @ w - y) / len(y)
    return torch.sign(v) * torch.clamp(v.abs() - eta * l1, min=0)


def test_one_lats_sgd_step_is_a_proximal_gradient_step():
    X, y = least_squares_problem()
    eta, l1 = 0.3, 0.05
    layer = nn.Linear(X.shape[1], 1, bias=False, dtype=torch.float64)
    optimizer = torch.optim.SGD(layer.parameters(), lr=eta)
    pruner = SoftThresholdPruner(layer, optimizer, "lats", l1=l1)
    for t in range(6):
        w_before = layer.weight.detach().clone().squeeze(0)
        optimizer.zero_grad()
        loss_fn(layer, X, y).backward()
        optimizer.step()
        pruner.step()
        w_after = layer.weight.detach().squeeze(0)
        expected = prox_gradient_step(w_before, X, y, eta, l1)
        if t == 0:  # d starts at 0, so the first step is ISTA for every weight
            torch.testing.assert_close(w_after, expected, rtol=0, atol=1e-14)
        stays = (w_before != 0) & (w_after != 0) & (torch.sign(w_before) == torch.sign(w_after))
        assert stays.any()
        torch.testing.assert_close(w_after[stays], expected[stays], rtol=0, atol=1e-13)


def test_lats_solves_the_lasso_found_by_scikit_learn(capsys):
    from sklearn.linear_model import Lasso

    X, y = least_squares_problem(n=100, p=12, seed=1)
    l1, eta, steps = 0.1, 0.4, 1500
    reference = Lasso(alpha=l1, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(X.numpy(), y.numpy()).coef_
    layer = nn.Linear(X.shape[1], 1, bias=False, dtype=torch.float64)
    nn.init.zeros_(layer.weight)
    optimizer = torch.optim.SGD(layer.parameters(), lr=eta)  # full batch, plain SGD, constant λ
    pruner = SoftThresholdPruner(layer, optimizer, "lats", l1=l1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(layer, X, y).backward()
        optimizer.step()
        pruner.step()
    w = layer.weight.detach().squeeze(0).numpy()
    error = float(np.abs(w - reference).max())
    with capsys.disabled():
        print(
            f"\nLASSO n=100 p=12 λ={l1}: support LATS {np.flatnonzero(w).tolist()} "
            f"sklearn {np.flatnonzero(reference).tolist()}, max |w − w_sklearn| = {error:.2e}"
        )
    assert 0 < np.count_nonzero(reference) < len(reference)  # a real sparse solution
    assert np.array_equal(w != 0, reference != 0)
    assert error < 1e-8


# --- exact resumption ------------------------------------------------------------------------------
def conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, groups=4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def build(schedule, seed):
    torch.manual_seed(seed)
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    kwargs = {
        "lats": dict(final_threshold=D, total_steps=STEPS, lr_schedule=planned_warmup_cosine),
        "pgh": dict(final_threshold=D, total_steps=STEPS, lr_schedule=planned_warmup_cosine, beta=0.3),
        "stds-sine": dict(final_threshold=D, end_step=STEPS // 2),
        "learnable": dict(s_init=-4.0),
        "lats-target": dict(target_sparsity=0.6, end_step=10, lr_schedule=planned_warmup_cosine, retarget_every=3),
    }[schedule]
    pruner = SoftThresholdPruner(model, optimizer, schedule.removesuffix("-target"), **kwargs)
    return model, optimizer, pruner, warmup_cosine(optimizer)


def train(model, optimizer, pruner, scheduler, steps, start):
    for t in range(start, start + steps):
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(4, 2, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        pruner.step()


@pytest.mark.parametrize("schedule", ["lats", "pgh", "stds-sine", "learnable", "lats-target"])
def test_resume_from_a_checkpoint_is_exact(schedule):
    total, stop = 12, 5
    uninterrupted = build(schedule, seed=0)
    train(*uninterrupted, total, 0)

    first = build(schedule, seed=0)
    train(*first, stop, 0)
    model, optimizer, pruner, scheduler = first
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "pruner": pruner.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = build(schedule, seed=123)  # different initial weights: everything must come from the file
    model, optimizer, pruner, scheduler = resumed
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    pruner.load_state_dict(checkpoint["pruner"])
    train(*resumed, total - stop, stop)

    a, b = uninterrupted[0].state_dict(), resumed[0].state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed[2].thresholds() == uninterrupted[2].thresholds()
    assert resumed[2].threshold == uninterrupted[2].threshold and resumed[2].step_count == total
    assert resumed[2].sparsity().global_sparsity == uninterrupted[2].sparsity().global_sparsity
