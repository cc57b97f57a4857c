"""The method shown fairly: gradual magnitude pruning as a schedule, the fixed-mask tail after the
window, BatchNorm statistics recomputed for the pruned weights, and the square-root cost weighting.

Oracles: Zhu & Gupta's cubic schedule written out; plain SGD on the kept weights, written out;
BatchNorm's batch statistics computed by hand from the layers' own operations; a brute-force
knapsack over every subset of a tiny problem.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snn_lats.pruning import SoftThresholdPruner, recalibrate_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))


def zeros_of(pruner: SoftThresholdPruner) -> dict[str, torch.Tensor]:
    return {name: (m.weight == 0).detach().clone() for name, m in pruner.layers.items()}


def count(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


def sgd_steps(model, optimizer, pruner, x, y, steps, each=None):
    for t in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()
        if each is not None:
            each(t + 1)


# --- gradual magnitude pruning -------------------------------------------------------------------


def test_gmp_raises_global_magnitude_masks_along_the_cubic_schedule_then_keeps_them():
    model = mlp()
    weights = sum(m.weight.numel() for m in model if isinstance(m, nn.Linear))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)  # no momentum: a masked θ cannot move
    start, end, every, final = 3, 23, 4, 0.9
    pruner = SoftThresholdPruner(
        model, optimizer, "gmp", target_sparsity=final, start_step=start, end_step=end, retarget_every=every
    )
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    seen = {}

    def check(step):
        zeros = zeros_of(pruner)
        k = step - start
        updates = [u for u in range(every, end - start + 1, every)] + [end - start]
        last = max([u for u in updates if u <= k], default=0)
        s = final * (1 - (1 - last / (end - start)) ** 3)  # Zhu & Gupta, written out
        assert count(zeros) == math.ceil(s * weights - 1e-9), step
        if seen:  # a pruned weight stays pruned, and its latent value stays where it was
            previous, thetas = seen["zeros"], seen["theta"]
            for name, module in pruner.layers.items():
                assert bool((zeros[name] | ~previous[name]).all()), (step, name)
                theta = module.parametrizations.weight.original.detach()
                assert torch.equal(theta[previous[name]], thetas[name][previous[name]]), (step, name)
        if k in updates:  # the weights pruned at an update were the smallest of those kept before it
            fresh = torch.cat([m.parametrizations.weight.original.detach().abs()[zeros[n] & ~seen["zeros"][n]]
                               for n, m in pruner.layers.items()])  # fmt: skip
            kept = torch.cat([m.parametrizations.weight.original.detach().abs()[~zeros[n]]
                              for n, m in pruner.layers.items()])  # fmt: skip
            assert fresh.numel() == 0 or float(fresh.max()) <= float(kept.min())
        seen["zeros"] = zeros
        seen["theta"] = {n: m.parametrizations.weight.original.detach().clone() for n, m in pruner.layers.items()}

    seen["zeros"] = zeros_of(pruner)
    seen["theta"] = {n: m.parametrizations.weight.original.detach().clone() for n, m in pruner.layers.items()}
    sgd_steps(model, optimizer, pruner, x, y, 30, check)
    assert pruner.sparsity().global_sparsity == pytest.approx(math.ceil(final * weights) / weights)


def test_gmp_needs_a_target_sparsity_and_a_window():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="schedule 'gmp' needs target_sparsity"):
        SoftThresholdPruner(model, optimizer, "gmp", end_step=10)
    with pytest.raises(ValueError, match="final_threshold does not apply to schedule 'gmp'"):
        SoftThresholdPruner(model, optimizer, "gmp", final_threshold=0.1, end_step=10)
    with pytest.raises(ValueError, match="schedule 'gmp' needs the end of the pruning window"):
        SoftThresholdPruner(model, optimizer, "gmp", target_sparsity=0.5)
    with pytest.raises(ValueError, match=r"layer_scale > 0 hold 48 of the 816"):  # 8x32 + 32x16 + 16x3
        SoftThresholdPruner(model, optimizer, "gmp", target_sparsity=0.5, end_step=10, layer_scale={"0": 0.0, "2": 0.0})


# --- the fixed-mask tail ---------------------------------------------------------------------------


def tail_run(freeze_mask: bool, steps: int = 40, end: int = 20):
    model = mlp(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    planned = [0.1] * steps
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", target_sparsity=0.8, end_step=end, lr_schedule=planned, freeze_mask=freeze_mask
    )
    return model, optimizer, pruner


def test_after_the_window_the_zeros_stay_and_the_kept_weights_train_as_plain_sgd():
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    model, optimizer, pruner = tail_run(True)
    sgd_steps(model, optimizer, pruner, x, y, 20)
    at_end = zeros_of(pruner)
    weights = sum(m.numel() for m in at_end.values())
    assert count(at_end) == math.ceil(0.8 * weights - 1e-9)  # the target, at the window's end
    thresholds = pruner.thresholds()
    for _ in range(20):
        before = {n: m.weight.detach().clone() for n, m in pruner.layers.items()}
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads = {n: m.parametrizations.weight.original.grad.clone() for n, m in pruner.layers.items()}
        optimizer.step()
        pruner.step()
        for name, module in pruner.layers.items():
            expected = (before[name] - 0.1 * grads[name]) * ~at_end[name]  # plain SGD on the kept weights
            torch.testing.assert_close(module.weight.detach(), expected, rtol=0, atol=1e-7, msg=name)
        assert all(torch.equal(zeros_of(pruner)[n], at_end[n]) for n in at_end)  # exactly the zeros of the end
    assert pruner.thresholds() == thresholds  # the thresholds reached stay on record

    # the same run without the fixed mask lets the straight-through gradient move the zeros
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    free_model, free_optimizer, free = tail_run(False, steps=80)
    sgd_steps(free_model, free_optimizer, free, x, y, 20)
    zeros_at_end = zeros_of(free)
    sgd_steps(free_model, free_optimizer, free, x, y, 60)
    regrown = sum(int((zeros_at_end[n] & ~zeros_of(free)[n]).sum()) for n in zeros_at_end)
    assert regrown > 0  # weights pruned at the window's end came back after it


def test_a_frozen_mask_is_in_the_state_dict_loads_strictly_and_finalizes():
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    model, optimizer, pruner = tail_run(True)
    sgd_steps(model, optimizer, pruner, x, y, 25)
    state = model.state_dict()
    assert {k for k in state if k.endswith(".mask")} == {f"{n}.parametrizations.weight.0.mask" for n in pruner.layers}
    # a fresh pruner of the same settings resumes: the masks come with the model's state
    other, other_optimizer, resumed = tail_run(True)
    other.load_state_dict(state)
    other_optimizer.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(pruner.state_dict())
    sgd_steps(model, optimizer, pruner, x, y, 5)
    sgd_steps(other, other_optimizer, resumed, x, y, 5)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    weights = {n: m.weight.detach().clone() for n, m in pruner.layers.items()}
    pruner.finalize()
    assert all(torch.equal(dict(model.named_modules())[n].weight, w) for n, w in weights.items())
    assert not any(k.endswith(".mask") for k in model.state_dict())


# --- BatchNorm statistics of the pruned weights ------------------------------------------------------


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 4, 3, bias=False), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))).mean((2, 3))


def test_recalibration_gives_the_plain_average_of_the_batch_statistics():
    torch.manual_seed(0)
    model = ConvBN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    SoftThresholdPruner(model, optimizer, "lats", l1=0.1)
    for module in (model.conv1, model.conv2):
        module.parametrizations.weight[0].set_threshold(0.15)  # a pruned network the statistics never saw
    model.bn1.momentum, model.bn2.momentum = 0.3, 0.2
    model.eval()
    batches = [torch.randn(5, 3, 7, 7) for _ in range(4)]

    # by hand: each batch's statistics at each BatchNorm, through the pruned weights
    means, variances = {1: [], 2: []}, {1: [], 2: []}
    gamma1, beta1 = model.bn1.weight.detach(), model.bn1.bias.detach()
    for x in batches:
        a = F.conv2d(x, model.conv1.weight.detach(), padding=1)
        m, v = a.mean((0, 2, 3)), a.var((0, 2, 3), unbiased=False)
        means[1].append(m)
        variances[1].append(a.var((0, 2, 3), unbiased=True))
        h = F.relu(
            (a - m[:, None, None]) / torch.sqrt(v[:, None, None] + 1e-5) * gamma1[:, None, None] + beta1[:, None, None]
        )
        b = F.conv2d(h, model.conv2.weight.detach())
        means[2].append(b.mean((0, 2, 3)))
        variances[2].append(b.var((0, 2, 3), unbiased=True))
    assert recalibrate_batchnorm(model, batches) == 4
    for i, bn in ((1, model.bn1), (2, model.bn2)):
        torch.testing.assert_close(bn.running_mean, torch.stack(means[i]).mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, torch.stack(variances[i]).mean(0), rtol=1e-5, atol=1e-6)
    assert (model.bn1.momentum, model.bn2.momentum, model.training) == (0.3, 0.2, False)
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batchnorm(model, [])


# --- the square-root cost weighting against a brute-force knapsack --------------------------------------


class ThreeBlocks(nn.Module):
    """A linear model whose features are split between three layers of 4 weights each."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Linear(4, 1, bias=False) for _ in range(3))

    def forward(self, x):
        return (self.a(x[:, :4]) + self.b(x[:, 4:8]) + self.c(x[:, 8:])).squeeze(1)


def best_kept(values: list[float], costs: list[float], budget: float) -> float:
    """max Σ w² over the kept subsets of cost <= budget: every subset, by brute force."""
    best = 0.0
    for keep in itertools.product((False, True), repeat=len(values)):
        cost = sum(c for c, k in zip(costs, keep) if k)
        if cost <= budget + 1e-12:
            best = max(best, sum(v * v for v, k in zip(values, keep) if k))
    return best


def test_square_root_weighting_keeps_the_knapsack_optimum_that_linear_weighting_misses():
    """Keep a weight while w² is worth its cost: an L0 budget Σ c·1[w ≠ 0] ≤ B over the importance
    Σ w². Soft thresholds ∝ √c keep exactly the weights of largest w²/c, which is optimal at the
    cost it keeps (a knapsack whose greedy prefix fills it); thresholds ∝ c are not."""
    torch.manual_seed(3)
    model = ThreeBlocks().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=1e-3, cost="sops", retarget_every=1)
    # feature densities of the three blocks: each weight costs the nonzero inputs it multiplies
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 12, generator=g, dtype=torch.float64)
    keep = torch.cat([torch.rand(400, 4, generator=g) < p for p in (0.9, 0.3, 0.1)], 1)
    x = x * keep
    y = torch.randn(400, dtype=torch.float64, generator=g)
    optimizer.zero_grad()
    (0.5 * ((model(x) - y) ** 2).mean()).backward()
    optimizer.step()
    pruner.step()  # the first re-estimate: measured costs, and c_l = √(mean cost)
    density = (x != 0).double().mean(0)
    per_layer = [float(density[i : i + 4].mean()) for i in (0, 4, 8)]
    assert list(pruner.layer_costs().values()) == pytest.approx([math.sqrt(c) for c in per_layer], rel=1e-9)

    costs = [per_layer[i // 4] for i in range(12)]  # a weight costs its layer's mean, as the thresholds take it
    factors = list(pruner.layer_costs().values())
    linear_missed = 0
    for draw in range(6):  # weights of several draws, every level of the threshold
        values = torch.randn(12, generator=torch.Generator().manual_seed(draw)).tolist()
        for level in torch.linspace(0.01, 3.0, 80).tolist():
            for weighting, factor in (("sqrt", factors), ("linear", [f * f for f in factors])):
                kept = [abs(v) > level * factor[i // 4] for i, v in enumerate(values)]
                budget = sum(c for c, k in zip(costs, kept) if k)
                importance = sum(v * v for v, k in zip(values, kept) if k)
                optimum = best_kept(values, costs, budget)
                if weighting == "sqrt":
                    assert importance == pytest.approx(optimum, rel=1e-12), (draw, level)
                elif importance < optimum * (1 - 1e-9):
                    linear_missed += 1
    assert linear_missed > 0
