"""Inference time with the SOP counter attached, against plain inference, one process.

For each configuration, the same pruned SEW ResNet-18 forward (no_grad) three ways, interleaved
in ABC/CBA order:
- plain: no hooks;
- counter: inside ``with SynapticOpCounter(model)`` (attached once for the whole run, as
  ``evaluate`` uses it over its counted batches; the exact convention);
- brute force: a hook that convolves each input with the 0/1 weight mask and sums, every forward
  (the test oracle, for contrast).
Configurations: the demo network (``models/demo_digits.yaml``: width 16, T = 4, 32x32, the
ImageNet stem) at batch 4 and 32, and the larger one (width 64, T = 4, 64x64, batch 4). Times are
the thread's CPU time (``time.thread_time``: what the forward itself cost, robust to other
processes on a shared machine) and wall time. Ratios are to plain: the median of the per-repeat
ratios, the ratio of the medians and of the minima. The counts of the counter and the brute force
are checked to agree.

    .venv/bin/python benchmarks/sop_overhead.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from snn_lats.estimators import SynapticOpCounter
from snn_lats.networks import sew_resnet18
from snn_lats.pruning import attach

CONFIGS = {
    "demo-b4": {"width": 16, "size": 32, "batch": 4, "stem": "imagenet"},
    "demo-b32": {"width": 16, "size": 32, "batch": 32, "stem": "imagenet"},
    "large-b4": {"width": 64, "size": 64, "batch": 4, "stem": "imagenet"},
}


class BruteForceCounter:
    """ACs/MACs as sum(conv(x, 1[w != 0])) (x: spike counts, or 1[x != 0] for real inputs), per forward."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.ops = 0

    def _hook(self, module, args):
        x = args[0].detach()
        if not isinstance(module, nn.Linear):  # fold [T, N, C, H, W] into [T*N, C, H, W]
            x = x.reshape(-1, *x.shape[-(len(module.kernel_size) + 1) :])
        counts = bool((x >= 0).all()) and torch.equal(x, x.round())
        x = x if counts else (x != 0).to(x.dtype)
        mask = (module.weight.detach() != 0).to(x.dtype)
        y = F.linear(x, mask) if isinstance(module, nn.Linear) else module._conv_forward(x, mask, None)
        self.ops += int(y.sum(dtype=torch.float64))

    def __enter__(self):
        self.handles = [
            m.register_forward_pre_hook(self._hook)
            for m in self.model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        ]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def measure(name: str, width: int, size: int, batch: int, stem: str, args) -> dict[str, float]:
    torch.manual_seed(0)
    model = sew_resnet18(T=args.T, width=width, stem=stem, num_classes=10, backend="torch").eval()
    for module in attach(model).values():  # pruned weights through the soft-threshold parametrization
        module.parametrizations.weight[0].set_threshold(args.threshold)
    x = torch.rand(batch, 3, size, size)
    counter = SynapticOpCounter(model)
    brute = BruteForceCounter(model)
    runs = {"plain": None, "counter": counter, "brute force": brute}
    cpu = {k: [] for k in runs}
    wall = {k: [] for k in runs}
    with torch.no_grad(), counter:
        for i in range(args.warmup + args.repeats):
            for kind in list(runs) if i % 2 == 0 else reversed(list(runs)):
                # The counter stays attached; to time plain and brute force without it, its hooks
                # are detached for those forwards (re-attached after), outside the timed region.
                if kind != "counter":
                    counter.__exit__(None, None, None)
                t0, c0 = time.perf_counter(), time.thread_time()
                if kind == "brute force":
                    with brute:
                        model(x)
                else:
                    model(x)
                c1, t1 = time.thread_time(), time.perf_counter()
                if kind != "counter":
                    counter.__enter__()
                if i >= args.warmup:
                    cpu[kind].append(c1 - c0)
                    wall[kind].append(t1 - t0)
    report = counter.report()
    sparsity = 1 - report.totals["nonzero_params"] / report.totals["params"]
    print(
        f"{name}: width {width}, T={args.T}, batch {batch}, {size}x{size}, {stem} stem, weight sparsity "
        f"{sparsity:.1%}, {args.repeats} interleaved repeats"
    )
    ratios = {}
    for label, times in (("CPU", cpu), ("wall", wall)):
        for kind in ("counter", "brute force"):
            t, p = times[kind], times["plain"]
            paired = statistics.median(a / b for a, b in zip(t, p))
            print(
                f"  {label:4s} {kind:12s} median {statistics.median(t) * 1e3:7.2f} ms (plain "
                f"{statistics.median(p) * 1e3:7.2f})  ratio {paired:.3f} (median of paired), "
                f"{statistics.median(t) / statistics.median(p):.3f} (of medians), {min(t) / min(p):.3f} (of minima)"
            )
            ratios[f"{label} {kind}"] = paired
    return ratios


def check_exact(args) -> None:
    """The counter and the brute force count the same forwards of the demo network alike."""
    torch.manual_seed(0)
    model = sew_resnet18(T=args.T, width=16, stem="imagenet", num_classes=10, backend="torch").eval()
    for module in attach(model).values():
        module.parametrizations.weight[0].set_threshold(args.threshold)
    brute = BruteForceCounter(model)
    with torch.no_grad(), SynapticOpCounter(model) as counter, brute:
        for _ in range(3):
            model(torch.rand(4, 3, 32, 32))
    report = counter.report()
    assert brute.ops == report.total_acs + report.total_macs, (brute.ops, report.total_acs + report.total_macs)
    print(f"exact: counter = brute force = {brute.ops:,} operations over 3 forwards")


def main(argv=None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.01, help="soft threshold d of every layer")
    parser.add_argument("--repeats", type=int, default=30, help="timed forwards of each kind")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    check_exact(args)
    return {name: measure(name, **CONFIGS[name], args=args) for name in args.configs}


if __name__ == "__main__":
    main()
