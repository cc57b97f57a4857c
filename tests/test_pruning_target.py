"""Target-sparsity control: LATS whose λ is re-estimated so that the window ends at sparsity s.

Oracle: the exact zeros of the pruned weights, counted here, on scikit-learn's offline digits.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import resume_train
from torch import nn

from snn_lats.pruning import SoftThresholdPruner

pytestmark = pytest.mark.usefixtures("one_thread")


WARMUP, STEPS, LR0 = 5, 100, 0.2


def planned_lr(t):
    if t < WARMUP:
        return LR0 * (0.1 + 0.9 * t / WARMUP)
    return LR0 * (1 + math.cos(math.pi * (t - WARMUP) / (STEPS - WARMUP))) / 2


def counted_sparsity(layers) -> float:
    with torch.no_grad():
        zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
        return zeros / sum(m.weight.numel() for m in layers.values())


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_target_sparsity_lands_with_a_piecewise_constant_l1(target, capsys):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    pruner = SoftThresholdPruner(
        model, optimizer, "lats", target_sparsity=target, total_steps=STEPS, lr_schedule=planned_lr, retarget_every=10
    )
    lr = torch.optim.lr_scheduler
    scheduler = lr.SequentialLR(
        optimizer,
        [lr.LinearLR(optimizer, 0.1, 1.0, total_iters=WARMUP), lr.CosineAnnealingLR(optimizer, STEPS - WARMUP)],
        milestones=[WARMUP],
    )
    g = torch.Generator().manual_seed(0)
    l1_in_force, implied, thresholds = [pruner.l1], [], []
    for _ in range(STEPS):
        batch = torch.randint(0, len(X), (128,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(X[batch]), y[batch]).backward()
        optimizer.step()
        scheduler.step()
        pruner.step()
        implied.append(pruner.implied_l1())
        thresholds.append(pruner.threshold)
        l1_in_force.append(pruner.l1)

    sparsity = counted_sparsity(pruner.layers)
    assert abs(sparsity - target) <= 0.005
    # λ is the one the controller chose, constant between re-estimates (every 10 steps), never < 0 ...
    for t in range(STEPS - 1):
        assert l1_in_force[t] >= 0
        assert implied[t] == pytest.approx(l1_in_force[t], rel=1e-6, abs=1e-12), t
    assert len(set(l1_in_force[:-1])) <= STEPS // 10 + 1
    # ... so the threshold never shrinks before the final correction, and that correction is small.
    assert all(b >= a for a, b in zip(thresholds[:-2], thresholds[1:-1], strict=True))
    correction = abs(thresholds[-1] - thresholds[-2])
    assert correction < 0.05 * thresholds[-1]
    used = [v for v in l1_in_force[1:-1] if v > 0]
    with capsys.disabled():
        print(
            f"\ntarget {target}: sparsity {sparsity:.4f} at end_step; λ in [{min(used):.4f}, {max(used):.4f}]; "
            f"final correction {correction:.2e} of d = {thresholds[-1]:.4f}"
        )


BAD = [
    (dict(target_sparsity=1.0), ValueError, r"target_sparsity must be a fraction in \(0, 1\)"),
    (dict(target_sparsity="80%"), TypeError, "target_sparsity must be a number"),
    (dict(target_sparsity=0.8, l1=0.1), ValueError, "not l1 and target_sparsity"),
    (dict(target_sparsity=0.8, total_steps=10), ValueError, "needs lr_schedule"),
    (dict(target_sparsity=0.8, lr_schedule=[0.1] * 10, retarget_every=0), ValueError, "retarget_every must be"),
    (dict(l1=0.1, retarget_every=5), ValueError, "retarget_every applies"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_target_sparsity_bad_arguments(kwargs, error, message):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(error, match=message):
        SoftThresholdPruner(model, torch.optim.SGD(model.parameters(), lr=0.1), "lats", **kwargs)


def test_a_target_sparsity_is_for_lats_and_gmp_only():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="target_sparsity does not apply to schedule 'stds-sine'"):
        SoftThresholdPruner(
            model, torch.optim.SGD(model.parameters(), lr=0.1), "stds-sine", target_sparsity=0.5, end_step=5
        )


def test_a_target_beyond_the_layers_that_can_be_pruned_is_refused():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 64))  # 32 + 512 weights
    with pytest.raises(ValueError, match=r"hold 32 of the 544 pruned weights \(5.88%\)"):
        SoftThresholdPruner(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            "lats",
            target_sparsity=0.5,
            total_steps=10,
            lr_schedule=[0.1] * 10,
            layer_scale={"1": 0.0},
        )


def test_a_frozen_param_group_makes_the_target_out_of_reach_with_a_warning():
    # Layer 1's group has lr 0: its threshold cannot grow, so of the 544 weights only layer 0's 32
    # can go. The controller warns, prunes all 32 of them and stays finite (no NaN threshold).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 64))
    optimizer = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[1].parameters(), "lr": 0.0}]
    )
    with pytest.warns(UserWarning, match="out of reach: only 32 of 544"):
        pruner = SoftThresholdPruner(
            model, optimizer, "lats", target_sparsity=0.5, total_steps=10, lr_schedule=[0.1] * 10, retarget_every=5
        )
        for _ in range(10):
            optimizer.step()
            pruner.step()
    assert int((model[0].weight == 0).sum()) == 32 and int((model[1].weight == 0).sum()) == 0
    assert math.isfinite(pruner.l1) and math.isfinite(pruner.thresholds()["0"])


def test_on_still_weights_the_controller_follows_the_constant_lambda_trajectory():
    """With θ held still (zero gradients), each re-estimate's prediction is exact, so the sparsity
    at every re-estimate is the trajectory's, computed here from its closed form:
    logit s(c) = logit s* + 1.4·log c, with c the fraction of the planned lr spent."""
    torch.manual_seed(0)
    layer = nn.Linear(100, 100, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=planned_lr(0))
    target, every = 0.9, 10
    pruner = SoftThresholdPruner(
        layer,
        optimizer,
        "lats",
        target_sparsity=target,
        total_steps=STEPS,
        lr_schedule=planned_lr,
        retarget_every=every,
    )
    total = sum(planned_lr(t) for t in range(STEPS))
    for t in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = planned_lr(t)
        layer.parametrizations.weight.original.grad = torch.zeros(100, 100)
        optimizer.step()
        pruner.step()
        if (t + 1) % every == 0:
            c = sum(planned_lr(i) for i in range(t + 1)) / total
            odds = target / (1 - target) * c**1.4
            expected = target if t + 1 == STEPS else odds / (1 + odds)
            assert counted_sparsity(pruner.layers) == pytest.approx(expected, abs=1.5e-4), t


# --- checkpoints of older layouts: version 2 (everything flat), version 3 (anchors per param group)
V2_KEYS = {
    "version",
    "schedule",
    "step_count",
    "lr_sum",
    "pending",
    "implied_l1",
    "last_threshold",
    "l1",
    "anchor_threshold",
    "anchor_lr_sum",
    "drift_origin",
    "thresholds",
}
V3_KEYS = V2_KEYS - {"l1", "anchor_threshold", "anchor_lr_sum", "drift_origin"} | {"controller"}
V4_KEYS = V3_KEYS | {"costs"}
RESUME_STEPS, RESUME_STOP = 20, 7
RESUME_RUNS = {
    # re-estimates at window steps 0, 3, 6 before the stop (drift origin set), 9, 12 and the snap at 15
    "target": dict(
        target_sparsity=0.6, total_steps=RESUME_STEPS, end_step=15, lr_schedule=planned_lr, retarget_every=3
    ),
    "lats": dict(final_threshold=0.05, total_steps=RESUME_STEPS, lr_schedule=planned_lr),
}


def resume_run(run, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    pruner = SoftThresholdPruner(model, optimizer, "lats", **RESUME_RUNS[run])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: planned_lr(t) / LR0)
    return model, optimizer, pruner, scheduler


def version_3_layout(pruner) -> dict:
    """The pruner's state as a version-3 checkpoint held it: the controller's anchors per param
    group (one group here, every layer_scale 1: each layer's anchor is the group's)."""
    state = pruner.state_dict()
    assert state["version"] == 4 and set(state) == V4_KEYS
    controller = state.pop("controller")
    del state["costs"]
    if controller is not None:
        assert set(controller["anchor"].values()) <= {controller["global_anchor"]}
        assert set(controller["anchor_lr_sum"].values()) <= {controller["global_anchor_lr_sum"]}
        controller = {
            "l1": controller["l1"],
            "anchor_threshold": [controller["global_anchor"]],
            "anchor_lr_sum": [controller["global_anchor_lr_sum"]],
            "drift_origin": controller["drift_origin"],
        }
    return {**state, "version": 3, "controller": controller}


def version_2_layout(pruner) -> dict:
    """The pruner's state written out as a version-2 checkpoint held it: everything flat, λ and
    anchors for every schedule (zero anchors and no drift origin without target_sparsity)."""
    groups = len(pruner.optimizer.param_groups)
    state = version_3_layout(pruner)
    controller = state.pop("controller") or {
        "l1": pruner.l1,
        "anchor_threshold": [0.0] * groups,
        "anchor_lr_sum": [0.0] * groups,
        "drift_origin": {},
    }
    return {**state, **controller, "version": 2}


@pytest.mark.parametrize("run", list(RESUME_RUNS))
@pytest.mark.parametrize("layout", [version_2_layout, version_3_layout], ids=["v2", "v3"])
def test_an_older_checkpoint_resumes_exactly(run, layout):
    uninterrupted = resume_run(run, seed=0)
    expected = resume_train(*uninterrupted, 0, RESUME_STEPS)

    first = resume_run(run, seed=0)
    resume_train(*first, 0, RESUME_STOP)
    model, optimizer, pruner, scheduler = first
    old = layout(pruner)
    assert set(old) == (V2_KEYS if layout is version_2_layout else V3_KEYS)
    if run == "target":
        drift = old["drift_origin"] if layout is version_2_layout else old["controller"]["drift_origin"]
        assert set(drift) == {"0", "2"}  # the stop falls between re-estimates with drift
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "pruner": old,
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = resume_run(run, seed=123)  # other initial weights: everything must come from the file
    model, optimizer, pruner, scheduler = resumed
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    pruner.load_state_dict(checkpoint["pruner"])
    trace = resume_train(*resumed, RESUME_STOP, RESUME_STEPS)

    assert len(trace) == len(expected[RESUME_STOP:])
    for t, (got, want) in enumerate(zip(trace, expected[RESUME_STOP:], strict=True), start=RESUME_STOP):
        assert got == want, t  # float by float: thresholds, d, λ and λ_t
    a, b = uninterrupted[0].state_dict(), resumed[0].state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed[2].step_count == RESUME_STEPS


def test_a_state_with_or_without_the_controller_loads_only_into_its_kind():
    target, lats = resume_run("target", seed=0)[2], resume_run("lats", seed=0)[2]
    with pytest.raises(ValueError, match="saved without a target or cost, this pruner runs target_sparsity=0.6"):
        target.load_state_dict(lats.state_dict())
    with pytest.raises(ValueError, match="saved with a target or cost, this pruner runs plain"):
        lats.load_state_dict(target.state_dict())
    with pytest.raises(ValueError, match="unsupported pruner state version 1"):
        lats.load_state_dict({**lats.state_dict(), "version": 1})


@pytest.mark.parametrize("layout", [version_2_layout, version_3_layout], ids=["v2", "v3"])
def test_an_older_target_state_is_refused_by_a_cost_target_pruner(layout):
    """Versions 2 and 3 knew weight-sparsity targets only: a pruner aiming at SOPs cannot resume one."""
    _, _, pruner, _ = resume_run("target", seed=0)
    old = layout(pruner)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    cost = SoftThresholdPruner(model, optimizer, "lats", target_sops=50.0, total_steps=RESUME_STEPS,
                               lr_schedule=[LR0] * RESUME_STEPS)  # fmt: skip
    with pytest.raises(ValueError, match=f"a version-{old['version']} state is a target-sparsity pruner's"):
        cost.load_state_dict(old)


def test_a_target_at_odds_with_the_loss_cannot_run_the_threshold_away(monkeypatch):
    """The audit's runaway in miniature: a dense truth (every weight ±1) asked to be 95 % sparse.
    The straight-through gradient keeps pushing the pruned θ outward, and a controller that only
    follows the target chases them: without the guard the threshold ends hundreds of times above
    D_0, the threshold that prunes 95 % of the initial weights (computed here by hand); with it,
    the threshold stays at most RUNAWAY_FACTOR·D_0, a warning says so, and the target is missed."""
    import warnings

    from snn_lats.pruning import controller

    def run():
        torch.manual_seed(0)
        model = nn.Linear(40, 1, bias=False)
        x, truth = torch.randn(256, 40), torch.randn(40).sign()
        y = x @ truth
        d0 = float(model.weight.detach().abs().flatten().kthvalue(38).values)  # ⌈0.95·40⌉ = 38
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        pruner = SoftThresholdPruner(model, optimizer, "lats", target_sparsity=0.95, lr_schedule=[0.05] * 300)
        highest = 0.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(300):
                optimizer.zero_grad()
                ((model(x).squeeze(1) - y) ** 2).mean().backward()
                optimizer.step()
                pruner.step()
                highest = max(highest, pruner.threshold)
        return highest / d0, pruner.sparsity().global_sparsity, [str(w.message) for w in caught]

    monkeypatch.setattr(controller, "RUNAWAY_FACTOR", math.inf)
    runaway, sparsity, _ = run()
    assert runaway > 100 and sparsity == 0.95  # the threshold ran away, and held the target
    monkeypatch.setattr(controller, "RUNAWAY_FACTOR", 8.0)
    guarded, sparsity, messages = run()
    assert guarded <= 8.0 + 1e-9 and sparsity < 0.95
    assert any("it is capped at 8 D_0" in m for m in messages)
