#!/usr/bin/env python
"""The threshold schedules as the code runs them: d(t) and the implied L1 coefficient λ_t = Δd/η_t.

Every schedule drives a real ``SoftThresholdPruner`` on a tiny model trained by SGD under a
warm-up + cosine lr (``LambdaLR``); the figure plots ``pruner.threshold`` and
``pruner.implied_l1()`` read after every step, so it shows what the library does, not a formula::

    python scripts/plot_schedules.py --out docs/figures/schedules.png
"""

from __future__ import annotations

import argparse
import io
import math

import torch
from torch import nn

from snn_lats._io import atomic_open
from snn_lats.pruning import PruningSpec, SoftThresholdPruner

FINAL_THRESHOLD = 0.05
BASE_LR = 0.1

# (label, schedule, extra pruner arguments)
CURVES = [
    ("lats", "lats", {}),
    ("slats (cosine closed form)", "slats", {}),
    ("pgh β=0.1 (early)", "pgh", {"beta": 0.1}),
    ("pgh β=10 (late)", "pgh", {"beta": 10.0}),
    ("stds-sine", "stds-sine", {}),
    ("stds-linear", "stds-linear", {}),
    ("constant (prune at init)", "constant", {}),
]


def lr_factor(t: int, steps: int, warmup: int) -> float:
    """Linear warm-up from 1% of the base lr over ``warmup`` steps, then cosine to 0 at ``steps``."""
    if t < warmup:
        return 0.01 + 0.99 * t / warmup
    return (1 + math.cos(math.pi * (t - warmup) / (steps - warmup))) / 2


def run_schedule(schedule: str, steps: int, warmup: int, **extra) -> dict[str, list[float]]:
    """Train a tiny model ``steps`` steps with ``schedule``; per step: lr, threshold, implied λ."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR, momentum=0.9)
    planned = [BASE_LR * lr_factor(t, steps, warmup) for t in range(steps)]
    window = {"end": steps} if schedule != "constant" else {}  # pruning at initialisation has no window
    spec = PruningSpec(schedule=schedule, final_threshold=FINAL_THRESHOLD, **window, **extra)
    pruner = SoftThresholdPruner(model, optimizer, spec=spec, lr_schedule=planned)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_factor(t, steps, warmup))
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    out: dict[str, list[float]] = {"lr": [], "threshold": [], "implied_l1": []}
    for _ in range(steps):
        out["lr"].append(optimizer.param_groups[0]["lr"])  # the lr this step applies
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        pruner.step()
        out["threshold"].append(pruner.threshold)
        out["implied_l1"].append(pruner.implied_l1())
    return out


def plot(curves: dict[str, dict[str, list[float]]], steps: int, warmup: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 8.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    colors = ["#d62728", "#ff7f0e", "#2ca02c", "#98df8a", "#1f77b4", "#9467bd", "#7f7f7f"]
    t = list(range(1, steps + 1))
    for (label, data), color in zip(curves.items(), colors, strict=True):
        width = 3.0 if label == "lats" else 1.6
        top.plot(
            [0] + t,
            [data["threshold"][0] if label.startswith("constant") else 0.0] + data["threshold"],
            color=color,
            lw=width,
            label=label,
        )
        positive = [(s, v) for s, v in zip(t, data["implied_l1"], strict=True) if v > 0]
        if positive:
            bottom.plot(*zip(*positive, strict=True), color=color, lw=width, label=label)
        else:  # the whole jump happens before step 1: d goes 0 -> D at t = 0
            bottom.axvline(0, color=color, lw=2.5, ls="--", label=f"{label}: spike at t = 0 (λ = 0 after)")
    lr = curves[next(iter(curves))]["lr"]
    twin = top.twinx()
    twin.fill_between(t, lr, color="0.85", zorder=0, step="pre")
    twin.set_ylabel("learning rate η (grey)")
    twin.set_ylim(0, BASE_LR * 1.8)
    top.set_zorder(twin.get_zorder() + 1)
    top.patch.set_visible(False)
    top.set_ylabel("threshold d")
    top.set_title(
        f"Threshold schedules under warm-up ({warmup} steps) + cosine lr, final threshold D = {FINAL_THRESHOLD}"
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("implied L1 coefficient λ = Δd / η  (log)")
    bottom.set_xlabel("optimizer step")
    bottom.set_title(
        "LATS keeps λ constant: one fixed objective L + λ‖w‖₁. STDS/S-LATS λ explode as η → 0; PGH λ ∝ β^x", fontsize=10
    )
    bottom.axvspan(0, warmup, color="0.92", zorder=0)
    bottom.legend(loc="upper left", fontsize=8, ncol=2)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.set_xlim(-2, steps + 1)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/figures/schedules.png", help="PNG file to write")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default: 200)")
    parser.add_argument("--warmup", type=int, default=20, help="linear warm-up steps (default: 20)")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.steps:
        parser.error(f"--warmup must be in (0, --steps), got {args.warmup}")
    curves = {label: run_schedule(schedule, args.steps, args.warmup, **extra) for label, schedule, extra in CURVES}
    with atomic_open(args.out, "wb") as f:
        f.write(plot(curves, args.steps, args.warmup))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
