"""LATS under Adam and AdamW: a per-weight threshold ``λ·Σ η_t/(√v̂_t + ε)``.

Oracles: Adam's first step written out from the gradient, the optimizer's own moment estimates
read by the test and summed by hand, scikit-learn's Lasso, and an uninterrupted run.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn_lats.pruning import SoftThresholdPruner

pytestmark = pytest.mark.usefixtures("one_thread")

ADAMS = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.0),
    "adam-amsgrad": lambda params, lr: torch.optim.Adam(params, lr=lr, amsgrad=True, betas=(0.5, 0.9)),
}


def lasso_problem(n=200, p=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    w_true = torch.zeros(p, dtype=torch.float64)
    w_true[:5] = torch.tensor([2.0, -1.5, 1.0, 0.5, -0.3], dtype=torch.float64)
    return X, X @ w_true + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)


def half_mse(layer, X, y):
    """(1/2n)·‖y − Xw‖²: the smooth part of scikit-learn's Lasso objective."""
    return 0.5 * ((y - layer(X).squeeze(1)) ** 2).mean()


def test_the_first_adam_step_is_a_preconditioned_proximal_step():
    """Step 1 of Adam has m̂ = g and v̂ = g², so it moves weight i by η·g_i/(|g_i| + ε); LATS must
    then soft-threshold it by λ·η/(|g_i| + ε): the proximal step of L + λ‖w‖₁ in Adam's metric."""
    X, y = lasso_problem(n=50, p=10)
    eta, l1, eps = 0.05, 0.3, 1e-8
    layer = nn.Linear(10, 1, bias=False, dtype=torch.float64)
    w0 = layer.weight.detach().clone().squeeze(0)
    optimizer = torch.optim.Adam(layer.parameters(), lr=eta, eps=eps)
    pruner = SoftThresholdPruner(layer, optimizer, "lats", l1=l1)
    half_mse(layer, X, y).backward()
    g = layer.parametrizations.weight.original.grad.detach().clone().squeeze(0)
    optimizer.step()
    pruner.step()
    step = eta / (g.abs() + eps)
    v = w0 - step * g
    expected = torch.sign(v) * torch.clamp(v.abs() - l1 * step, min=0)
    torch.testing.assert_close(layer.weight.detach().squeeze(0), expected, rtol=0, atol=1e-12)
    assert 0 < int((expected == 0).sum()) < 10  # some weights pruned by the first step, not all


@pytest.mark.parametrize("name", list(ADAMS))
def test_each_weight_threshold_is_lambda_times_the_sum_of_adam_steps(name):
    """The threshold of every weight, summed by the test from the optimizer's state after each
    step (``η_t/(√(v_t/(1−β₂^t)) + ε)``, amsgrad's running max of v), under a decaying lr."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = ADAMS[name](model.parameters(), 0.02)
    l1 = 0.05
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=l1, start_step=2)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.9)
    sums = {key: torch.zeros_like(m.weight, dtype=torch.float64) for key, m in pruner.layers.items()}
    group = optimizer.param_groups[0]
    beta2 = group["betas"][1]
    for t in range(8):
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        eta = group["lr"]
        optimizer.step()
        for key, module in pruner.layers.items():
            state = optimizer.state[module.parametrizations.weight.original]
            v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
            if t >= 2:  # the window starts at step 2
                sums[key] += eta / ((v.double() / (1 - beta2 ** (t + 1))).sqrt() + group["eps"])
        scheduler.step()
        pruner.step()
    for key, module in pruner.layers.items():
        theta = module.parametrizations.weight.original.detach().double()
        expected = torch.sign(theta) * torch.clamp(theta.abs() - l1 * sums[key], min=0)
        torch.testing.assert_close(module.weight.detach().double(), expected, rtol=0, atol=1e-6)
    assert 0 < pruner.sparsity().global_sparsity < 1


@pytest.mark.parametrize("name", list(ADAMS))
def test_lats_under_adam_solves_the_lasso_found_by_scikit_learn(name, capsys):
    """At a stationary point of Adam m̂ = g, so an unpruned weight has g = −λ·sign w and a pruned
    one |g| ≤ λ: the LASSO's conditions for Lasso(α = λ), whatever β₁, β₂ and the lr schedule."""
    from sklearn.linear_model import Lasso

    X, y = lasso_problem()
    l1, steps = 0.1, 6000
    reference = Lasso(alpha=l1, fit_intercept=False, tol=1e-14, max_iter=10**6).fit(X.numpy(), y.numpy()).coef_
    torch.manual_seed(0)
    layer = nn.Linear(X.shape[1], 1, bias=False, dtype=torch.float64)
    nn.init.normal_(layer.weight, std=0.1)
    optimizer = ADAMS[name](layer.parameters(), 0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=1e-5)
    pruner = SoftThresholdPruner(layer, optimizer, "lats", l1=l1)
    for _ in range(steps):
        optimizer.zero_grad()
        half_mse(layer, X, y).backward()
        optimizer.step()
        scheduler.step()
        pruner.step()
    w = layer.weight.detach().squeeze(0).numpy()
    error = float(np.abs(w - reference).max())
    with capsys.disabled():
        print(f"\nLASSO n=200 p=30 λ={l1} under {name}: max |w − w_sklearn| = {error:.2e}")
    assert 0 < np.count_nonzero(reference) < len(reference)
    assert np.array_equal(w != 0, reference != 0)
    assert error < 1e-6  # 4e-14 under Adam and AdamW, 2e-8 with amsgrad, when written


def test_a_scalar_threshold_under_adam_would_miss_the_lasso():
    """The reason for per-weight thresholds: ``d = λ·Σ η`` under Adam solves no LASSO (most
    weights stay nonzero at this λ); the test forces the scalar path to show the difference."""
    from sklearn.linear_model import Lasso

    X, y = lasso_problem()
    reference = Lasso(alpha=0.1, fit_intercept=False, tol=1e-14, max_iter=10**6).fit(X.numpy(), y.numpy()).coef_
    torch.manual_seed(0)
    layer = nn.Linear(X.shape[1], 1, bias=False, dtype=torch.float64)
    nn.init.normal_(layer.weight, std=0.1)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
    pruner = SoftThresholdPruner(layer, optimizer, "lats", l1=0.1)
    pruner._preconditioned = False
    for _ in range(2000):
        optimizer.zero_grad()
        half_mse(layer, X, y).backward()
        optimizer.step()
        pruner.step()
    assert np.abs(layer.weight.detach().squeeze(0).numpy() - reference).max() > 0.05


def digits_net_and_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return model, torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("target", [0.8, 0.95])
def test_target_sparsity_lands_under_adamw(target):
    model, X, y = digits_net_and_data()
    steps, lr = 120, 3e-3
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)

    def planned(t):
        return lr * (1 + math.cos(math.pi * t / steps)) / 2

    pruner = SoftThresholdPruner(
        model, optimizer, "lats", target_sparsity=target, end_step=90, lr_schedule=planned, retarget_every=10
    )
    g = torch.Generator().manual_seed(0)
    for t in range(steps):
        batch = torch.randint(0, len(X), (128,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(X[batch]), y[batch]).backward()
        optimizer.step()
        scheduler.step()
        pruner.step()
        if t == 89:
            at_window_end = pruner.sparsity().global_sparsity
    assert at_window_end == pytest.approx(target, abs=2e-3)
    assert pruner.sparsity().global_sparsity == pytest.approx(target, abs=2e-3)  # the mask holds
    with torch.no_grad():
        accuracy = float((model(X).argmax(1) == y).float().mean())
    assert accuracy > 0.5  # not collapsed (dense: 0.92; 80 %: 0.80, 95 %: 0.61; chance: 0.1)


def adam_run(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.02)
    return model, optimizer, pruner


def train(model, optimizer, pruner, start, stop):
    for t in range(start, stop):
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()


def test_an_adam_run_resumes_exactly_from_a_weights_only_checkpoint():
    """The per-weight preconditioners travel in ``model.state_dict()``: a fresh model, optimizer
    and pruner loaded at step 7 end at step 15 exactly where an uninterrupted run does."""
    straight = adam_run(0)
    train(*straight, 0, 15)
    first = adam_run(0)
    train(*first, 0, 7)
    buffer = io.BytesIO()
    torch.save({"model": first[0].state_dict(), "opt": first[1].state_dict(), "pruner": first[2].state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert any(key.endswith("preconditioner") for key in saved["model"])
    resumed = adam_run(1)  # other initial weights: everything must come from the checkpoint
    resumed[0].load_state_dict(saved["model"])
    resumed[1].load_state_dict(saved["opt"])
    resumed[2].load_state_dict(saved["pruner"])
    train(*resumed, 7, 15)
    for a, b in zip(straight[0].state_dict().values(), resumed[0].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_mask_frozen_after_the_window_keeps_the_per_weight_zeros():
    model, X, y = digits_net_and_data()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=2e-3, end_step=30)
    for t in range(40):
        optimizer.zero_grad()
        F.cross_entropy(model(X[:256]), y[:256]).backward()
        optimizer.step()
        pruner.step()
        if t == 29:
            zeros = {k: (m.weight == 0).clone() for k, m in pruner.layers.items()}
    assert any(z.any() for z in zeros.values())
    for key, module in pruner.layers.items():
        assert torch.equal(module.weight == 0, zeros[key])


def test_schedules_that_ignore_the_lr_keep_one_threshold_per_layer_under_adam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pruner = SoftThresholdPruner(model, optimizer, "stds-sine", final_threshold=0.05, end_step=10)
    train(model, optimizer, pruner, 0, 5)
    assert all(pruner._params[k].preconditioner is None for k in pruner.layers)
