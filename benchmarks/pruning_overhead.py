"""Cost of soft-threshold pruning per training step, against dense training and torch.nn.utils.prune.

Four configurations of the same network at the same per-layer sparsity, trained with SGD
(momentum 0.9), or with AdamW (``--opt adamw``, the transformers' optimizer), on a random batch:

- ``dense``: no pruning;
- ``torch-prune``: ``torch.nn.utils.prune.l1_unstructured`` (forward pre-hook, weight = orig * mask);
- ``naive``: a parametrization computing ``S_d(θ)`` with autograd ops at every forward;
- ``lats``: :class:`snn_lats.pruning.SoftThresholdPruner` (cached ``S_d(θ)``, identity backward).
  Under AdamW its thresholds are per weight, ``λ·Σ η/(√v̂ + ε)``, and the pruner folds Adam's
  step factors into them at every step: it runs LATS with ``--adam-l1`` λ and an open window (the
  per-step work of a run inside its pruning window), so its sparsity is what λ gives, not
  ``--sparsity`` (the dense CPU kernels' time does not depend on it).

Step time: the configurations are interleaved in one process (the order rotates every repeat);
each repeat times ``--steps`` steps per configuration; the printed ratios are medians over repeats
of the per-repeat ratios. With ``--compile``, each configuration also runs as ``torch.compile`` of
its model (inductor, after its compilation in the warm-up), interleaved with the eager ones: the
compiled column's ratios are to compiled dense, and "compile gain" is eager / compiled of the same
configuration. Peak memory: measured afterwards, each configuration in a fresh
subprocess, as the peak of the bytes allocated through torch's CPU allocator (``torch.profiler``
memory events) from building the configuration to the end of its third training step. It counts
every tensor of that configuration (weights, θ, masks, gradients, optimizer state, activations,
temporaries); it does not count the Python process or the libraries.

Example::

    python benchmarks/pruning_overhead.py --model sew_resnet18 --T 4 --batch-size 4 --image-size 64
    python benchmarks/pruning_overhead.py --model spikformer_8_384 --width 128 --depth 2 --opt adamw
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize, prune

from snn_lats.pruning import SoftThresholdPruner, select_layers, soft_threshold

CONFIGS = ("dense", "torch-prune", "naive", "lats")


def build_model(args) -> nn.Module:
    if args.model.startswith("torchvision."):
        from snn_lats._torchvision import models

        return getattr(models, args.model.split(".", 1)[1])(num_classes=args.num_classes)
    from snn_lats import networks

    kwargs = {"T": args.T} if _spiking(args.model) else {}  # ANNs have no T
    if args.width is not None:
        kwargs["width"] = args.width
    if args.depth is not None:
        kwargs["depth"] = args.depth
    return networks.create(args.model, num_classes=args.num_classes, **kwargs)


def _spiking(name: str) -> bool:
    return name.startswith(("sew_", "spikformer_", "sdt_", "qkformer_"))


class _NaiveSoftThreshold(nn.Module):
    """The plain-autograd parametrization: S_d(θ) recomputed, and kept for backward, at every forward."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, theta):
        return soft_threshold(theta, self.threshold)


def layer_thresholds(model: nn.Module, sparsity: float) -> dict[str, float]:
    """Per layer, the |w| quantile that prunes ``sparsity`` of its weights (as l1_unstructured does)."""
    out = {}
    for name, module in select_layers(model).items():
        w = module.weight.detach().abs().flatten()
        k = int(round(sparsity * w.numel()))
        out[name] = float(w.kthvalue(k).values) if k > 0 else 0.0
    return out


class Config:
    def __init__(self, kind: str, base: nn.Module, thresholds: dict[str, float], args, compiled: bool = False):
        self.kind = kind
        self.model = copy.deepcopy(base)
        self.pruner = None
        modules = dict(self.model.named_modules())
        layers = self.layers = {name: modules[name] for name in thresholds}
        if kind == "torch-prune":
            for module in layers.values():
                prune.l1_unstructured(module, "weight", amount=args.sparsity)
        elif kind == "naive":
            for name, module in layers.items():
                parametrize.register_parametrization(module, "weight", _NaiveSoftThreshold(thresholds[name]))
        if args.opt == "adamw":
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay
            )
        if kind == "lats" and args.opt == "adamw":  # per-weight thresholds, updated at every step
            self.pruner = SoftThresholdPruner(self.model, self.optimizer, "lats", l1=args.adam_l1)
        elif kind == "lats":
            # LATS reaching D = 1 after the first step; layer_scale makes each layer's D its quantile.
            self.pruner = SoftThresholdPruner(
                self.model,
                self.optimizer,
                "lats",
                final_threshold=1.0,
                total_steps=1,
                lr_schedule=[args.lr],
                layer_scale=thresholds,
                freeze_mask=False,  # the soft threshold itself, every step (not the fixed-mask tail)
            )
        self.forward = torch.compile(self.model) if compiled else self.model

    def step(self, x, y) -> tuple[float, ...]:
        """One train step; returns the seconds of its phases (forward, backward, optimizer, pruner)."""
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.optimizer.step()
        t3 = time.perf_counter()
        if self.pruner is not None:
            self.pruner.step()
        return t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3

    def sparsity(self) -> float:
        with torch.no_grad():
            zeros = sum(int((m.weight == 0).sum()) for m in self.layers.values())
            total = sum(m.weight.numel() for m in self.layers.values())
        return zeros / total


def peak_memory_bytes(kind, base, thresholds, args, x, y) -> int:
    """Peak CPU-allocator bytes in use while building ``kind`` and running three steps.

    Run it in a fresh process: the profiler counts, as in use, everything allocated while any
    profiler was recording and not freed since.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        config = Config(kind, base, thresholds, args)
        for _ in range(3):
            config.step(x, y)
        del config
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    # "Total Allocated" counts allocations made inside the profiled block, so it is this configuration's usage.
    return max(e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="sew_resnet18",
        help="a name of snn_lats.networks.create, or torchvision.NAME (default sew_resnet18)",
    )
    parser.add_argument("--T", type=int, default=4, help="time steps (spiking networks)")
    parser.add_argument(
        "--width", type=int, help="ResNets: channels of the first stage; transformers: the embedding dimension"
    )
    parser.add_argument("--depth", type=int, help="transformers: number of blocks (default: the network's)")
    parser.add_argument("--opt", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--adam-l1", type=float, default=1e-4, help="--opt adamw: λ of the LATS configuration")
    parser.add_argument("-b", "--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration and repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice); 1 is the steadiest on a shared machine",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time every configuration under torch.compile (inductor)"
    )
    parser.add_argument("--memory-of", choices=CONFIGS, help=argparse.SUPPRESS)  # the subprocess mode
    args = parser.parse_args(argv)
    if not 0 <= args.sparsity < 1:
        parser.error("--sparsity must be in [0, 1)")

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = build_model(args).train()
    thresholds = layer_thresholds(base, args.sparsity)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, args.num_classes, (args.batch_size,))
    if args.memory_of:
        print(peak_memory_bytes(args.memory_of, base, thresholds, args, x, y))
        return 0

    keys = [(kind, False) for kind in CONFIGS] + ([(kind, True) for kind in CONFIGS] if args.compile else [])
    configs = {key: Config(key[0], base, thresholds, args, compiled=key[1]) for key in keys}
    for config in configs.values():  # warm-up (and compilation); LATS reaches its thresholds here
        for _ in range(2):
            config.step(x, y)
    times = {key: [] for key in keys}
    phases = {key: [] for key in keys}  # per repeat: mean seconds of each phase
    for r in range(args.repeats):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            start = time.perf_counter()
            split = [configs[key].step(x, y) for _ in range(args.steps)]
            times[key].append((time.perf_counter() - start) / args.steps)
            phases[key].append([sum(p) / args.steps for p in zip(*split)])

    def ratio(a, b) -> float:  # median over repeats of the per-repeat ratio
        return statistics.median(t / u for t, u in zip(times[a], times[b]))

    print(
        f"model={args.model} {f'T={args.T} ' if _spiking(args.model) else ''}"
        f"{f'width={args.width} ' if args.width else ''}{f'depth={args.depth} ' if args.depth else ''}opt={args.opt} "
        f"batch={args.batch_size} image={args.image_size} "
        f"sparsity={args.sparsity} steps={args.steps} repeats={args.repeats} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    compiled_header = f" {'compiled ms':>11} {'vs dense':>9} {'compile gain':>12}" if args.compile else ""
    print(f"{'config':<12} {'sparsity':>8} {'step ms':>8} {'vs dense':>9} {'vs torch-prune':>15}" + compiled_header)
    for kind in CONFIGS:
        eager = (kind, False)
        line = (
            f"{kind:<12} {configs[eager].sparsity():8.3f} {1e3 * statistics.median(times[eager]):8.1f} "
            f"{ratio(eager, ('dense', False)):8.3f}x {ratio(eager, ('torch-prune', False)):14.3f}x"
        )
        if args.compile:
            compiled = (kind, True)
            line += (
                f" {1e3 * statistics.median(times[compiled]):11.1f} {ratio(compiled, ('dense', True)):8.3f}x "
                f"{1 / ratio(compiled, eager):11.3f}x"
            )
        print(line)
    print(f"{'phase ms':<20} {'forward':>8} {'backward':>9} {'optimizer':>10} {'pruner':>7}  (medians)")
    for kind, compiled in keys:
        label = kind + ("+compile" if compiled else "")
        print(
            f"{label:<20} "
            + " ".join(
                f"{1e3 * statistics.median(col):{w}.2f}"
                for col, w in zip(zip(*phases[(kind, compiled)]), (8, 9, 10, 7))
            )
        )
    del configs

    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--compile"]
    peaks = {}
    for kind in CONFIGS:
        done = subprocess.run(
            [sys.executable, __file__, *argv, "--memory-of", kind], check=True, capture_output=True, text=True
        )
        peaks[kind] = int(done.stdout.split()[-1])
    print("peak tensor memory (CPU allocator, build + 3 steps):")
    for kind in CONFIGS:
        print(f"{kind:<12} {peaks[kind] / 2**20:8.1f} MiB {peaks[kind] / peaks['dense']:8.3f}x dense")
    return 0


if __name__ == "__main__":
    sys.exit(main())
