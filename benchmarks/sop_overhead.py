"""Inference time with the SOP counter attached, against plain inference, one process.

Three ways to run the same pruned SEW ResNet-18 forward (no_grad), interleaved in ABC/CBA order:
- plain: no hooks;
- counter: ``SynapticOpCounter`` (cached fan-out; one column sum and one matrix-vector product
  per synaptic layer and forward);
- brute force: a hook that convolves each input with the 0/1 weight mask and sums, every forward
  (the test oracle, for contrast).
Ratios are against plain: the median of the per-repeat ratios (robust to load drift on a shared
machine), the ratio of the medians and the ratio of the minima (the least disturbed runs). The
two counts are checked to agree.

    .venv/bin/python benchmarks/sop_overhead.py            # T=4, batch 4, 64x64, CPU
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
        if isinstance(module, nn.Linear):
            y = F.linear(x, mask)
        else:
            y = module._conv_forward(x, mask, None)
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


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("-b", "--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--threshold", type=float, default=0.01, help="soft threshold d of every layer")
    parser.add_argument("--repeats", type=int, default=30, help="timed forwards of each kind")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = sew_resnet18(T=args.T, backend="torch").eval()
    for module in attach(model).values():  # pruned weights through the soft-threshold parametrization
        module.parametrizations.weight[0].set_threshold(args.threshold)
    x = torch.rand(args.batch_size, 3, args.size, args.size)
    counter = SynapticOpCounter(model)
    brute = BruteForceCounter(model)

    def plain():
        model(x)

    def counted():
        with counter:
            model(x)

    def brute_force():
        with brute:
            model(x)

    runs = {"plain": plain, "counter": counted, "brute force": brute_force}
    times = {name: [] for name in runs}
    with torch.no_grad():
        for i in range(args.warmup + args.repeats):
            for name in list(runs) if i % 2 == 0 else reversed(list(runs)):
                start = time.perf_counter()
                runs[name]()
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)

    report = counter.report()
    total = report.total_acs + report.total_macs
    assert brute.ops == total, (brute.ops, total)  # both counted the same forwards
    sparsity = 1 - report.totals["nonzero_params"] / report.totals["params"]
    print(
        f"SEW ResNet-18 inference (no_grad), T={args.T}, batch {args.batch_size}, {args.size}x{args.size}, "
        f"weight sparsity {sparsity:.1%}, {args.repeats} interleaved repeats, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    ratios = {}
    for name, t in times.items():
        paired = statistics.median(a / b for a, b in zip(t, times["plain"]))
        ratios[name] = paired
        q = statistics.quantiles(t, n=4)
        print(
            f"  {name:12s} median {statistics.median(t) * 1e3:8.1f} ms  (quartiles {q[0] * 1e3:.1f} .. "
            f"{q[2] * 1e3:.1f})  ratio to plain {paired:.3f} (median of paired), "
            f"{statistics.median(t) / statistics.median(times['plain']):.3f} (of medians), "
            f"{min(t) / min(times['plain']):.3f} (of minima)"
        )
    print(
        f"  per sample: {report.acs_per_sample:.4g} ACs + {report.macs_per_sample:.4g} MACs "
        f"({report.acs_per_sample / report.totals['dense_acs'] * report.samples:.1%} of the unpruned ACs)"
    )
    return ratios


if __name__ == "__main__":
    main()
