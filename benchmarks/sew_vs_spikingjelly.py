"""Train-step time of snn_lats' SEW ResNet-18 against SpikingJelly's own, same settings, one process.

One train step = forward + backward + SGD step on a static image batch (SpikingJelly's model gets
the batch repeated over T, as its examples do; ours encodes it once and repeats the encoding).
Both models hold the same weights. The two steps alternate (ABBA order, so neither always runs
first), and the medians are compared: ratio = ours / SpikingJelly, below 1 means ours is faster. The median of
the per-repeat ratios is printed too: it resists load changes on a shared machine.

    .venv/bin/python benchmarks/sew_vs_spikingjelly.py            # T=4, batch 4, 64x64, CPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from snn_lats._torchvision import torchvision  # noqa: F401  (before spikingjelly.model imports it)

# isort: split
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet as sj_sew

from snn_lats.networks import sew_resnet18


def train_step(model, optimizer, x, target, repeat_input):
    optimizer.zero_grad(set_to_none=True)
    if repeat_input:  # SpikingJelly: the static batch repeated over T, state reset by hand
        functional.reset_net(model)
        logits = model(x.unsqueeze(0).repeat(repeat_input, 1, 1, 1, 1)).mean(0)
    else:
        logits = model(x)
    nn.functional.cross_entropy(logits, target).backward()
    optimizer.step()


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("-b", "--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--cnf", default="ADD")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps of each model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    theirs = sj_sew.sew_resnet18(
        cnf=args.cnf, spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True
    )
    functional.set_step_mode(theirs, "m")
    ours = sew_resnet18(cnf=args.cnf, T=args.T, backend="torch")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    runs = {
        "snn_lats": (ours, torch.optim.SGD(ours.parameters(), lr=0.01, momentum=0.9), 0),
        "spikingjelly": (theirs, torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9), args.T),
    }
    x = torch.rand(args.batch_size, 3, args.size, args.size)
    target = torch.randint(0, 1000, (args.batch_size,))

    times = {name: [] for name in runs}
    for i in range(args.warmup + args.repeats):
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for name in order if i % 4 < 2 else reversed(order):  # ABBA BAAB ...
            model, optimizer, repeat_input = runs[name]
            start = time.perf_counter()
            train_step(model, optimizer, x, target, repeat_input)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["snn_lats"] / medians["spikingjelly"]
    # Each repeat times both models back to back: the median of those pairs' ratios resists load drift.
    paired = statistics.median(a / b for a, b in zip(times["snn_lats"], times["spikingjelly"]))
    print(
        f"SEW ResNet-18 train step (forward+backward+SGD), cnf={args.cnf}, T={args.T}, "
        f"batch {args.batch_size}, {args.size}x{args.size}, {args.repeats} interleaved repeats, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    for name, median in medians.items():
        spread = statistics.quantiles(times[name], n=4)
        print(
            f"  {name:13s} median {median * 1e3:8.1f} ms   "
            f"(quartiles {spread[0] * 1e3:.1f} .. {spread[2] * 1e3:.1f} ms)"
        )
    print(f"  ratio snn_lats / spikingjelly = {ratio:.3f} (of medians), {paired:.3f} (median of paired ratios)")
    return ratio


if __name__ == "__main__":
    main()
