"""Data-parallel training throughput on CPU: 1 process against 2 processes (torchrun, gloo).

One training step of a pruned SEW ResNet-18 (forward, backward, SGD with momentum 0.9,
``SoftThresholdPruner.step``; LATS with a constant L1 coefficient) on a random static batch,
in three configurations on the same two cores:

- ``1x2``: one process, 2 torch threads (intra-op parallelism, no DDP);
- ``2x1``: two processes of 1 thread each, ``DistributedDataParallel`` over gloo (the gradients
  are all-reduced during backward);
- ``1x1``: one process, 1 thread (the per-core baseline).

``-b`` is the batch of each process (as in torchvision's reference scripts), so ``2x1`` trains
on twice the global batch of the others: weak scaling. Throughput is the global batch over the
median step time. ``2x1 / 1x2`` answers "does DDP pay on the same cores?"; ``2x1 / 1x1`` is the
speed-up of the second process, and half of it the scaling efficiency.

Every configuration is a fresh ``torchrun`` job (``python -m torch.distributed.run``, a free
port, ``OMP_NUM_THREADS`` set) running this file with ``--worker``. The worker runs ``--warmup``
steps, a barrier, then ``--steps`` steps, each timed on rank 0 (DDP's all-reduce keeps the ranks
in lock-step); rank 0 prints the step times as one JSON line. The configurations are interleaved,
the order rotating every repeat; the table shows, per configuration, the median over repeats of
the per-repeat median step time, and the ratios are medians of the per-repeat ratios.

Example::

    python benchmarks/ddp_scaling.py --model sew_resnet18 --T 4 --batch-size 4 --image-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

import torch

from snn_lats import networks


class JobFailed(RuntimeError):
    """A torchrun job failed or printed no result; the message holds its command and output."""


RESULT_PREFIX = "DDP_SCALING_RESULT "  # marks rank 0's JSON line in the worker's stdout
CONFIGS = (  # name, processes, torch threads per process
    ("1x2", 1, 2),
    ("2x1", 2, 1),
    ("1x1", 1, 1),
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="sew_resnet18",
        choices=networks.names(),
        help="a name of snn_lats.networks.create (default sew_resnet18)",
    )
    parser.add_argument("--T", type=_positive_int, default=4, help="time steps (sew_* networks only)")
    parser.add_argument("-b", "--batch-size", type=_positive_int, default=4, help="batch of each process")
    parser.add_argument("--image-size", type=_positive_int, default=64)
    parser.add_argument("--num-classes", type=_positive_int, default=1000)
    parser.add_argument("--steps", type=_positive_int, default=5, help="timed steps per run")
    parser.add_argument(
        "--warmup", type=_non_negative_int, default=2, help="untimed steps per run, before the timed ones"
    )
    parser.add_argument("--repeats", type=_positive_int, default=3, help="runs of each configuration")
    parser.add_argument(
        "--prune",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="LATS soft-threshold pruning (--no-prune: dense training)",
    )
    parser.add_argument("--l1", type=_positive_float, default=1e-3, help="LATS L1 coefficient (threshold += l1 * lr)")
    parser.add_argument("--lr", type=_positive_float, default=0.01)
    parser.add_argument("--timeout", type=_positive_float, default=3600.0, help="seconds allowed to one torchrun job")
    # The worker mode, launched by the driver through torchrun.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads-per-process", type=_positive_int, default=1, help=argparse.SUPPRESS)
    return parser


# -- worker ------------------------------------------------------------------------------------------
def worker(args) -> int:
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from snn_lats.engine.distributed import barrier, cleanup_distributed, init_distributed
    from snn_lats.pruning import SoftThresholdPruner

    torch.set_num_threads(args.threads_per_process)
    ctx = init_distributed("cpu")
    try:
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
        kwargs = {"T": args.T} if args.model.startswith("sew_") else {}  # ANNs have no T
        model = networks.create(args.model, num_classes=args.num_classes, **kwargs).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        pruner = SoftThresholdPruner(model, optimizer, "lats", l1=args.l1) if args.prune else None
        # DDP after the pruner, as the trainer does: the parametrizations are part of what DDP wraps.
        train_model = DistributedDataParallel(model) if ctx.distributed else model
        criterion = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(1 + ctx.rank)  # each rank its own data
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator)
        y = torch.randint(0, args.num_classes, (args.batch_size,), generator=generator)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            criterion(train_model(x), y).backward()
            optimizer.step()
            if pruner is not None:
                pruner.step()

        for _ in range(args.warmup):
            step()
        barrier()  # all ranks start the timed steps together
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        barrier()
        if ctx.is_main:
            result = {
                "world_size": ctx.world_size,
                "threads": torch.get_num_threads(),
                "batch_per_process": args.batch_size,
                "global_batch": args.batch_size * ctx.world_size,
                "step_s": times,
            }
            print(RESULT_PREFIX + json.dumps(result), flush=True)
    finally:
        cleanup_distributed()
    return 0


# -- driver ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_argv(args, threads: int) -> list[str]:
    argv = [
        "--model",
        args.model,
        "--T",
        str(args.T),
        "-b",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--num-classes",
        str(args.num_classes),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--prune" if args.prune else "--no-prune",
        "--l1",
        repr(args.l1),
        "--lr",
        repr(args.lr),
    ]
    return ["--worker", "--threads-per-process", str(threads), *argv]


def run_config(args, processes: int, threads: int) -> dict:
    """One fresh torchrun job; rank 0's result. A failed job raises with its stderr."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={processes}",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        os.path.abspath(__file__),
        *worker_argv(args, threads),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # One machine: gloo on the loopback interface, rather than whatever the hostname resolves to.
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = job.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: torchrun starts its workers in sessions of their own and ends them
        # itself on SIGTERM; killed outright it would leave them behind.
        job.terminate()
        stdout, stderr = job.communicate()
        raise JobFailed(
            f"timed out after {args.timeout:g} s: {' '.join(command)}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ) from None
    finally:
        if job.poll() is None:  # interrupted (Ctrl-C): do not leave the job running
            job.terminate()
            job.wait()
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if job.returncode != 0 or len(lines) != 1:
        raise JobFailed(
            f"exit status {job.returncode}, {len(lines)} result line(s): {' '.join(command)}\n"
            f"stdout:\n{stdout}\nstderr:\n{stderr}"
        )
    result = json.loads(lines[0][len(RESULT_PREFIX) :])
    if (result["world_size"], result["threads"]) != (processes, threads):  # OMP/torchrun did not override us
        raise JobFailed(
            f"asked for {processes} process(es) x {threads} thread(s), the job ran "
            f"{result['world_size']} x {result['threads']}: {' '.join(command)}"
        )
    return result


def driver(args) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs ({cores} usable by this process), python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    print(
        f"settings: model={args.model}"
        + (f" T={args.T}" if args.model.startswith("sew_") else "")
        + f" batch/process={args.batch_size} image={args.image_size} classes={args.num_classes} "
        f"prune={f'lats l1={args.l1:g}' if args.prune else 'no'} lr={args.lr:g} steps={args.steps} "
        f"warmup={args.warmup} repeats={args.repeats} backend=gloo"
    )
    if cores is not None and cores < 2:
        print(f"warning: only {cores} core(s) usable; the 2-thread and 2-process configurations share it")
    sys.stdout.flush()

    medians: dict[str, list[float]] = {name: [] for name, _, _ in CONFIGS}
    global_batch = {}
    for r in range(args.repeats):
        order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]  # rotate against drift
        for name, processes, threads in order:
            result = run_config(args, processes, threads)
            medians[name].append(statistics.median(result["step_s"]))
            global_batch[name] = result["global_batch"]
            print(f"  repeat {r + 1}/{args.repeats} {name}: median step {1e3 * medians[name][-1]:.1f} ms", flush=True)

    def throughput(name: str, i: int) -> float:
        return global_batch[name] / medians[name][i]

    print(f"{'config':<7} {'processes':>9} {'threads':>7} {'global batch':>12} {'step ms':>9} {'images/s':>9}")
    for name, processes, threads in CONFIGS:
        step = statistics.median(medians[name])
        print(
            f"{name:<7} {processes:9d} {threads:7d} {global_batch[name]:12d} {1e3 * step:9.1f} "
            f"{global_batch[name] / step:9.2f}"
        )
    vs_threads = statistics.median(throughput("2x1", i) / throughput("1x2", i) for i in range(args.repeats))
    vs_single = statistics.median(throughput("2x1", i) / throughput("1x1", i) for i in range(args.repeats))
    print(
        f"images/s 2x1 / 1x2: {vs_threads:.3f}x  (> 1: two DDP processes beat one 2-thread process on the same cores)"
    )
    print(f"images/s 2x1 / 1x1: {vs_single:.3f}x  (scaling efficiency {vs_single / 2:.1%})")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker(args)
    try:
        return driver(args)
    except JobFailed as error:  # the job's own traceback is in the message; the driver's adds nothing
        print(f"{os.path.basename(__file__)}: a torchrun job failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
