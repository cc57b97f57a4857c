"""Training step time with ``target_sops`` (costs measured on the training forwards) against
``target_sparsity``, side by side in one process.

Two copies of the same network (same initial weights, same batches, same SGD and per-step cosine
lr), one pruned with ``SoftThresholdPruner(..., target_sparsity=s)``, the other with
``target_sops=S`` (or ``target_energy``), alternate step by step (the order rotates every step)
over a whole pruning window of ``--steps`` steps, so that the SOP run measures costs on exactly
the forwards and re-estimates it would in training (the last eighth of every stretch, the two
last stretches, 32 re-estimates). A step is forward, loss, backward, ``optimizer.step()`` and
``pruner.step()``. Times: the thread's CPU time (``time.thread_time``, robust to the other
processes of a shared machine) and wall time, summed over the window; the ratio is SOPs over
sparsity. Default: the demo network of ``models/demo_digits.yaml`` (SEW ResNet-18, width 16,
T = 4, 32x32 digits, batch 32) over its 900 steps (20 epochs of 45)::

    python benchmarks/cost_overhead.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from snn_lats.data import build_datasets, build_loaders
from snn_lats.engine.model import build_model
from snn_lats.engine.recipe import resolve_config
from snn_lats.estimators import SynapticOpCounter
from snn_lats.pruning import SoftThresholdPruner


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="models/demo_digits.yaml", help="the network, data and batch")
    parser.add_argument("--steps", type=int, default=900, help="steps of the pruning window (demo: 20 x 45)")
    parser.add_argument("--target-sparsity", type=float, default=0.95)
    parser.add_argument("--sops-fraction", type=float, default=0.1, help="target_sops as a fraction of the dense count")
    parser.add_argument("--measure", choices=("sops", "energy"), default="sops")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.steps < 32 or not 0 < args.target_sparsity < 1 or not 0 < args.sops_fraction < 1 or args.threads < 1:
        parser.error("need --steps >= 32, --target-sparsity and --sops-fraction in (0, 1), --threads >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = resolve_config({"workers": 0}, args.recipe)
    train_set, val_set, num_classes = build_datasets(config)
    loader, _ = build_loaders(train_set, val_set, config.batch_size, 0, seed=config.seed)
    batches = [(x, y) for x, y, _ in loader]
    torch.manual_seed(config.seed)
    base = build_model(config, num_classes)
    with SynapticOpCounter(base) as counter, torch.no_grad():
        base(batches[0][0])
    report = counter.report()
    dense = report.acs_per_sample + report.macs_per_sample if args.measure == "sops" else report.energy_pj()
    lr0, steps = config.lr, args.steps
    planned = [lr0 * (1 + math.cos(math.pi * t / steps)) / 2 for t in range(steps)]
    strength = {"sparsity": {"target_sparsity": args.target_sparsity}}
    strength[args.measure] = {f"target_{args.measure}": args.sops_fraction * dense}
    runs = {}
    for name, kwargs in strength.items():
        model = copy.deepcopy(base).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr0, momentum=config.momentum)
        pruner = SoftThresholdPruner(model, optimizer, "lats", total_steps=steps, lr_schedule=planned, **kwargs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: planned[min(t, steps - 1)] / lr0)
        runs[name] = {"model": model, "optimizer": optimizer, "pruner": pruner, "scheduler": scheduler,
                      "cpu": [], "wall": [], "measured": []}  # fmt: skip
    order = list(runs)
    for t in range(steps):
        x, y = batches[t % len(batches)]
        for name in order[t % 2 :] + order[: t % 2]:
            run = runs[name]
            measured = run["pruner"]._meter is not None and run["pruner"]._meter.armed
            cpu, wall = time.thread_time(), time.perf_counter()
            run["optimizer"].zero_grad(set_to_none=True)
            F.cross_entropy(run["model"](x), y).backward()
            run["optimizer"].step()
            run["pruner"].step()
            run["cpu"].append(time.thread_time() - cpu)
            run["wall"].append(time.perf_counter() - wall)
            run["measured"].append(measured)
            run["scheduler"].step()
    a, b = runs["sparsity"], runs[args.measure]
    print(
        f"{platform.platform()}, torch {torch.__version__}, {args.threads} thread(s); recipe {args.recipe}, batch "
        f"{config.batch_size}, {steps} steps; target_sparsity={args.target_sparsity} against "
        f"target_{args.measure}={args.sops_fraction:g} x dense ({dense:.4g})"
    )
    for key in ("cpu", "wall"):
        print(
            f"{key:>4} time: target_sparsity {sum(a[key]):.1f} s ({statistics.median(a[key]) * 1e3:.1f} ms median), "
            f"target_{args.measure} {sum(b[key]):.1f} s ({statistics.median(b[key]) * 1e3:.1f} ms median); "
            f"ratio {sum(b[key]) / sum(a[key]):.4f}"
        )
    measured = [c for c, m in zip(b["cpu"], b["measured"], strict=True) if m]
    plain = [c for c, m in zip(b["cpu"], b["measured"], strict=True) if not m]
    print(
        f"measured forwards: {len(measured)} of {steps}; median CPU step {statistics.median(measured) * 1e3:.1f} ms "
        f"measured, {statistics.median(plain) * 1e3:.1f} ms not, {statistics.median(a['cpu']) * 1e3:.1f} ms "
        f"target_sparsity"
    )
    estimate = b["pruner"].cost_estimate
    print(f"landing: target {args.sops_fraction * dense:.4g}, last estimate {estimate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
