"""The GPU check: one command, at most 8 minutes on one H100/H200, a JSON and a Markdown report.

    bash scripts/device_check.sh OUT_DIR             # on the GPU machine (docs/benchmarks.md#gpu)
    bash scripts/device_check.sh OUT_DIR --dry-run   # every part at toy size on the CPU (CI runs it)

Parts, in the order they run (the costliest last); each runs in its own process with its own time
limit, so that one that fails, hangs or breaks the GPU context is reported and the next one runs:

- ``install``: spikingjelly from the wheel in ``.device/`` and this project, both ``--no-deps``
  (the machine's own torch, CuPy and the rest stay); skipped in a dry run;
- ``environment``: torch, CUDA, cuDNN, CuPy, SpikingJelly, the GPU;
- ``gpu_tests``: ``pytest -m "cuda or cupy"`` (CuPy against torch neurons, SyncBatchNorm over two
  processes, the AMP dtype);
- ``demo``: the digits demo trained on the GPU through the CLI, its sparsity and SOP report
  checked (and recounted on the CPU);
- ``sop_overhead``: inference with the SOP counter against plain inference, and the counter
  against the brute-force count;
- ``compile_breaks``: graphs and graph breaks of ``torch.compile`` for a pruned SEW ResNet-18,
  torch and CuPy neurons (the CuPy kernels are opaque to dynamo);
- ``sew_throughput``: SEW ResNet-18 training steps (T = 4, 224×224 synthetic batches of 32 and
  64): neuron backend torch/cupy × dense/LATS-pruned × float16/bfloat16 × channels_last or not;
  images/s and peak memory;
- ``resnet50``: ResNet-50 (batch 128, bfloat16, channels_last), dense and pruned, eager and
  ``torch.compile``;
- ``spikingjelly_releases``: SEW ResNet-18 training steps at T = 4 and T = 16 with SpikingJelly
  0.0.0.0.14's neurons (CuPy, torch) against 2.x's (native CUDA, Triton, torch), 2.x from its
  wheel in ``.device/`` in a process of its own;
- ``dvs_throughput``: 7B-Net (PLIF, LATS-pruned) training steps on DVS128-shaped event frames
  (T = 16, batch 16, 2x128x128, the SEW paper's Gesture setting), per neuron backend, float32 and
  float16.

A dry run uses the same code at toy sizes, on the CPU (``torch.compile`` through "aot_eager"
instead of inductor, whose C++ code generation takes minutes on a small CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SITE = Path(tempfile.gettempdir()) / "snn-lats-device-site"  # spikingjelly on the GPU machine
SITE_2 = Path(tempfile.gettempdir()) / "snn-lats-device-site-sj2"  # spikingjelly 2.x, for one part
BUDGET_S = 475  # the whole check on the GPU; the limit is 8 minutes
DRY_BUDGET_S = 1800  # a dry run: generous, since a shared 2-core CPU can run it 5 times slower than an idle one

# name -> (function, limit in seconds on the GPU, limit in a dry run)
PARTS: dict[str, tuple[Callable, int, int]] = {}
# The order they run in: the costliest last, where the overall budget may cut it short.
ORDER = (
    "install", "environment", "gpu_tests", "demo", "sop_overhead", "compile_breaks", "sew_throughput", "resnet50",
    "spikingjelly_releases", "dvs_throughput",
)  # fmt: skip


def part(gpu_limit: int, dry_limit: int):
    def register(fn):
        PARTS[fn.__name__] = (fn, gpu_limit, dry_limit)
        return fn

    return register


class Context:
    """What a part gets: whether this is a dry run, its device, and a way to record results as they come."""

    def __init__(self, dry_run: bool, results: Path):
        self.dry_run = dry_run
        self.results = results

    def record(self, kind: str, **data) -> None:
        """Append one result (``kind``: "info", "row" or "check") at once: a part that is killed
        at its time limit keeps what it recorded."""
        with open(self.results, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": kind, **data}, default=str) + "\n")

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.record("check", name=name, passed=bool(passed), detail=detail)
        return bool(passed)

    @property
    def device(self):
        import torch

        return torch.device("cpu" if self.dry_run else "cuda")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _error(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _peak_gib(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _reset_memory(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------------------------
# Parts


@part(gpu_limit=40, dry_limit=0)
def install(ctx: Context) -> None:
    """spikingjelly 0.0.0.0.14 from its wheel in ``.device/`` into ``SITE`` (on every part's
    ``PYTHONPATH``), then this project, editable, for the ``snn-lats`` command; both ``--no-deps``
    from no index, so the machine's own torch, torchvision and CuPy stay."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check"]
    found = _distribution_version("spikingjelly")
    if found != "0.0.0.0.14":
        wheels = sorted((REPO / ".device").glob("spikingjelly-0.0.0.0.14-*.whl"))
        if not ctx.check("spikingjelly wheel in .device/", bool(wheels), "see docs/benchmarks.md#gpu"):
            raise SystemExit(1)
        subprocess.run([*pip, "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(SITE), str(wheels[0])],
                       check=True)  # fmt: skip
    ctx.check("spikingjelly 0.0.0.0.14 importable", _distribution_version("spikingjelly") == "0.0.0.0.14")
    done = subprocess.run([*pip, "--no-build-isolation", "-e", str(REPO)], capture_output=True, text=True)
    print(done.stdout + done.stderr)
    # Without it the parts import snn_lats from the tree (PYTHONPATH) and run ``python -m snn_lats``.
    ctx.record("info", spikingjelly_found=found, project_installed=done.returncode == 0,
               pip_tail=(done.stdout + done.stderr)[-500:])  # fmt: skip


def _distribution_version(name: str) -> str | None:
    done = subprocess.run(
        [sys.executable, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


@part(gpu_limit=30, dry_limit=120)
def environment(ctx: Context) -> None:
    import importlib.metadata

    import torch

    import snn_lats
    from snn_lats.networks.neurons import cupy_unusable_reason

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "spikingjelly": importlib.metadata.version("spikingjelly"),
        "snn_lats": str(Path(snn_lats.__file__).parent),
        "cpus": os.cpu_count(),
        "cupy_unusable": cupy_unusable_reason(),
    }
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except Exception as error:  # not installed, or a broken CUDA library
        info["cupy"] = _error(error)
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(
            gpu=properties.name,
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            multiprocessors=properties.multi_processor_count,
            native_bf16=torch.cuda.is_bf16_supported(including_emulation=False),
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            )
            info["driver, max SM clock"] = smi.stdout.strip() or smi.stderr.strip()
        except OSError as error:
            info["driver, max SM clock"] = _error(error)
    ctx.record("info", **info)
    if not ctx.dry_run:
        ctx.check("CUDA available", torch.cuda.is_available())
        ctx.check("CuPy usable", info["cupy_unusable"] is None, info["cupy_unusable"] or "")


@part(gpu_limit=75, dry_limit=240)
def gpu_tests(ctx: Context) -> None:
    import xml.etree.ElementTree as ET

    junit = Path(tempfile.mkdtemp()) / "gpu_tests.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda or cupy", "-q", "-rA", "-p", "no:cacheprovider",
         f"--junitxml={junit}", str(REPO / "tests")],
        cwd=REPO,
    )  # fmt: skip
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                found = case.find(tag)
                if found is not None:
                    outcome = "skipped" if tag == "skipped" else "failed"
                    message = (found.get("message") or "")[:300]
            counts[outcome] += 1
            ctx.record(
                "row",
                test=f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}",
                outcome=outcome,
                seconds=round(float(case.get("time") or 0), 2),
                message=message,
            )
    ctx.record("info", exit_code=done.returncode, **counts)
    ctx.check("pytest exit code 0", done.returncode == 0, f"exit code {done.returncode}")
    ctx.check("GPU tests selected", sum(counts.values()) > 0)
    if not ctx.dry_run:
        ctx.check("no GPU test skipped on the GPU", counts["skipped"] == 0, f"{counts['skipped']} skipped")


def _train_steps(
    model, batch: int, image: int, classes: int, amp, channels_last: bool, pruned: bool, size: dict, inputs=None
):
    """Images/s, ms per step, peak GiB and sparsity of ``size["steps"]`` SGD steps after
    ``size["warmup"]`` (and, for a compiled model, the seconds of the first, compiling, step), on
    random ``[batch, 3, image, image]`` images or on ``inputs`` (a batch of ``batch`` samples)."""
    import torch
    import torch.nn.functional as F

    from snn_lats.engine.evaluation import autocast
    from snn_lats.pruning import SoftThresholdPruner, sparsity_report

    device = size["device"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = SoftThresholdPruner(model, optimizer, "lats", l1=0.5) if pruned else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    forward = size["compile"](model) if size.get("compile") else model
    x = torch.randn(batch, 3, image, image, device=device) if inputs is None else inputs.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)

    def step():
        with autocast(device, amp):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if pruner is not None and pruner.has_pending_step:
            pruner.step()

    started = time.perf_counter()
    step()
    _sync(device)
    first_s = time.perf_counter() - started
    for _ in range(size["warmup"] - 1):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(size["steps"]):
        step()
    _sync(device)
    seconds = (time.perf_counter() - started) / size["steps"]
    return {
        "images_per_s": round(batch / seconds, 1),
        "step_ms": round(1e3 * seconds, 2),
        "peak_gib": _peak_gib(device),
        "sparsity": round(sparsity_report(model).global_sparsity, 4) if pruned else 0.0,
        "first_step_s": round(first_s, 2),
    }


def _training_row(ctx: Context, row: dict, device, train: Callable[[], dict]) -> None:
    """Record ``row`` with the figures of ``train()`` (which builds its model, seeded, and returns
    :func:`_train_steps`' figures), or the error of a variant this machine cannot run. The model
    lives inside ``train``, so its memory is free before the next variant."""
    import torch

    _reset_memory(device)
    try:
        torch.manual_seed(0)
        row.update(train())
    except Exception as error:  # e.g. a backend this machine lacks, or a dtype the CuPy kernels do not implement
        row["error"] = _error(error)
    ctx.record("row", **row)
    print(row, flush=True)


SEW_SIZES = {
    "gpu": dict(T=4, image=224, batches=(32, 64), width=64, classes=1000, warmup=2, steps=5),
    "dry": dict(T=2, image=16, batches=(2, 4), width=4, classes=10, warmup=1, steps=1),
}


@part(gpu_limit=110, dry_limit=300)
def sew_throughput(ctx: Context) -> None:
    import torch

    from snn_lats import networks

    size = {**SEW_SIZES["dry" if ctx.dry_run else "gpu"], "device": ctx.device}
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    ctx.record("info", T=size["T"], image=size["image"], width=size["width"], timed_steps=size["steps"])
    variants = [
        (batch, backend, pruned, amp, channels_last)
        for batch in size["batches"]
        for backend in ("torch", "cupy")
        for pruned in (False, True)
        for amp in dtypes
        for channels_last in (False, True)
    ]
    for batch, backend, pruned, amp, channels_last in variants:

        def train(batch=batch, backend=backend, pruned=pruned, amp=amp, channels_last=channels_last):
            model = networks.sew_resnet18(
                T=size["T"], width=size["width"], num_classes=size["classes"], backend=backend
            ).to(size["device"])
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            return _train_steps(model, batch, size["image"], size["classes"], dtypes[amp], channels_last, pruned, size)

        row = dict(batch=batch, backend=backend, pruned=pruned, amp=amp, channels_last=channels_last)
        _training_row(ctx, row, size["device"], train)
    if not ctx.dry_run:  # the best-guess configuration again, with cuDNN's autotuner (the trainer leaves it off)
        torch.backends.cudnn.benchmark = True

        def train():
            model = networks.sew_resnet18(T=size["T"], num_classes=size["classes"], backend="torch")
            model = model.to(size["device"], memory_format=torch.channels_last)
            return _train_steps(model, 64, size["image"], size["classes"], torch.bfloat16, True, True, size)

        row = dict(batch=64, backend="torch", pruned=True, amp="bfloat16", channels_last=True, cudnn_benchmark=True)
        _training_row(ctx, row, size["device"], train)


RESNET50_SIZES = {
    "gpu": dict(batch=128, image=224, width=64, classes=1000, warmup=3, steps=10, backend="inductor"),
    "dry": dict(batch=2, image=16, width=4, classes=10, warmup=1, steps=1, backend="aot_eager"),
}


@part(gpu_limit=170, dry_limit=300)
def resnet50(ctx: Context) -> None:
    import functools

    import torch
    import torch._dynamo

    from snn_lats import networks

    size = {**RESNET50_SIZES["dry" if ctx.dry_run else "gpu"], "device": ctx.device}
    ctx.record("info", batch=size["batch"], image=size["image"], amp="bfloat16", channels_last=True)
    for pruned, compiled in ((False, False), (True, False), (True, True), (False, True)):
        row = dict(pruned=pruned, compiled=compiled, backend=size["backend"] if compiled else "eager")
        _reset_memory(size["device"])
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()  # graph and break counts of this variant alone
        try:
            torch.manual_seed(0)
            model = networks.resnet50(width=size["width"], num_classes=size["classes"]).to(size["device"])
            model = model.to(memory_format=torch.channels_last)
            size["compile"] = functools.partial(torch.compile, backend=size["backend"]) if compiled else None
            row.update(
                _train_steps(model, size["batch"], size["image"], size["classes"], torch.bfloat16, True, pruned, size)
            )
            if compiled:
                counters = torch._dynamo.utils.counters
                row.update(
                    graphs=counters["stats"]["unique_graphs"], graph_breaks=sum(counters["graph_break"].values())
                )
        except Exception as error:
            row["error"] = _error(error)
            traceback.print_exc()
        finally:
            model = None
        ctx.record("row", **row)
        print(row, flush=True)


@part(gpu_limit=30, dry_limit=120)
def compile_breaks(ctx: Context) -> None:
    import torch
    import torch._dynamo as dynamo

    from snn_lats import networks
    from snn_lats.pruning import attach

    T, width, image = (2, 4, 16) if ctx.dry_run else (4, 64, 64)
    x = torch.rand(2, 3, image, image, device=ctx.device)
    for backend in ("torch", "cupy"):
        row = {"backend": backend}
        dynamo.reset()
        try:
            model = networks.sew_resnet18(T=T, width=width, num_classes=10, backend=backend).to(ctx.device)
            for module in attach(model).values():
                module.parametrizations.weight[0].set_threshold(0.01)
            explanation = dynamo.explain(model)(x)
            reasons: dict[str, int] = {}
            for reason in explanation.break_reasons:
                where = reason.user_stack[-1] if reason.user_stack else None
                key = reason.reason.splitlines()[0][:120] + (
                    f" ({Path(where.filename).name}:{where.lineno})" if where else ""
                )
                reasons[key] = reasons.get(key, 0) + 1
            row.update(
                graphs=explanation.graph_count,
                graph_breaks=explanation.graph_break_count,
                reasons=sorted(reasons.items(), key=lambda kv: -kv[1])[:6],
            )
        except Exception as error:
            row["error"] = _error(error)
        ctx.record("row", **row)
        print(row, flush=True)


@part(gpu_limit=30, dry_limit=120)
def sop_overhead(ctx: Context) -> None:
    import importlib.util
    import statistics

    import torch

    from snn_lats.estimators import SynapticOpCounter
    from snn_lats.networks import sew_resnet18
    from snn_lats.pruning import attach

    spec = importlib.util.spec_from_file_location("sop_overhead", REPO / "benchmarks" / "sop_overhead.py")
    benchmark = importlib.util.module_from_spec(spec)
    # The benchmark's BruteForceCounter, Σ conv(x, 1[w ≠ 0]) per layer: a count that shares nothing
    # with the counter's fan-outs (the tests write their own brute force; this one runs on the GPU)
    spec.loader.exec_module(benchmark)

    T, width, image, batch, repeats = (2, 8, 32, 2, 2) if ctx.dry_run else (4, 64, 224, 32, 10)
    device = ctx.device
    torch.manual_seed(0)
    model = sew_resnet18(T=T, width=width, backend="auto").to(device).eval()
    for module in attach(model).values():
        module.parametrizations.weight[0].set_threshold(0.01)
    x = torch.rand(batch, 3, image, image, device=device)
    counter = SynapticOpCounter(model)
    times: dict[str, list[float]] = {"plain": [], "counter": []}
    with torch.no_grad():
        for i in range(2 + repeats):
            for name in ("plain", "counter") if i % 2 == 0 else ("counter", "plain"):
                _sync(device)
                started = time.perf_counter()
                if name == "counter":
                    with counter:
                        model(x)
                else:
                    model(x)
                _sync(device)
                if i >= 2:
                    times[name].append(time.perf_counter() - started)
        brute = benchmark.BruteForceCounter(model)
        once = SynapticOpCounter(model)
        with brute, once:
            model(x)
    report = once.report()
    counted = report.total_acs + report.total_macs
    ratio = statistics.median(c / p for c, p in zip(times["counter"], times["plain"]))
    ctx.record(
        "row",
        T=T,
        batch=batch,
        image=image,
        plain_ms=round(1e3 * statistics.median(times["plain"]), 2),
        counter_ms=round(1e3 * statistics.median(times["counter"]), 2),
        ratio=round(ratio, 3),
        acs_per_sample=report.acs_per_sample,
        macs_per_sample=report.macs_per_sample,
        neuron_backend=sorted({getattr(m, "backend", "") for m in model.modules() if hasattr(m, "auto_backend")}),
    )
    ctx.check("counter equals the brute-force count", counted == brute.ops, f"{counted} against {brute.ops}")


@part(gpu_limit=110, dry_limit=480)
def demo(ctx: Context) -> None:
    from snn_lats.engine.checkpoint import load_checkpoint
    from snn_lats.engine.evaluation import autocast_dtype
    from snn_lats.engine.recipe import TrainConfig
    from snn_lats.engine.summary import RunSummary

    out = Path(tempfile.mkdtemp()) / "demo"
    # The recipe's 20 epochs on the GPU; one epoch of a smaller network in a dry run.
    toy = ["--epochs", "1", "--width", "8", "--image-size", "16"] if ctx.dry_run else []
    started = time.perf_counter()
    done = subprocess.run(
        [*_cli(), "train", "--recipe", str(REPO / "models" / "demo_digits.yaml"), *toy,
         "--device", ctx.device.type, "--output-dir", str(out)],
        cwd=REPO,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if not ctx.check("training exit code 0", done.returncode == 0, f"exit code {done.returncode}"):
        raise SystemExit(1)
    summary = RunSummary.read(out / "summary.json")
    totals = summary.sops.totals
    ctx.record(
        "info",
        seconds=round(seconds, 1),
        epochs=summary.epochs_completed,
        acc1=summary.accuracy["acc1"],
        sparsity=summary.sparsity.global_sparsity,
        acs_per_sample=totals["acs_per_sample"],
        macs_per_sample=totals["macs_per_sample"],
        dense_acs=totals["dense_acs"],
        acs=totals["acs"],
        neuron_layers=len(summary.firing_rates),
        firing_rate_range=[round(f(summary.firing_rates.values(), default=0), 4) for f in (min, max)],
    )
    # The reported sparsity against the checkpoint's θ and thresholds: |θ| <= d is an exact zero.
    state = load_checkpoint(out / "checkpoint.pth")["model"]
    zeros = total = 0
    for key, theta in state.items():
        if key.endswith("parametrizations.weight.original"):
            d = state[key.replace("weight.original", "weight.0.threshold")]
            zeros += int((theta.abs() <= d).sum())
            total += theta.numel()
    ctx.check(
        "sparsity = zeros of S_d(θ) in the checkpoint",
        abs(zeros / total - summary.sparsity.global_sparsity) < 1e-12,
        f"{zeros}/{total} against {summary.sparsity.global_sparsity}",
    )
    # The recipe on the CPU: 93.88 % sparsity, 98.63 % top-1 (docs/getting_started.md); a dry run: above chance.
    low, high, top1 = (0.5, 1.0, 15.0) if ctx.dry_run else (0.92, 0.96, 95.0)
    sparsity = summary.sparsity.global_sparsity
    ctx.check(f"sparsity in [{low}, {high}]", low <= sparsity <= high, f"{sparsity:.4f}")
    ctx.check(f"top-1 >= {top1} %", summary.accuracy["acc1"] >= top1, f"{summary.accuracy['acc1']:.2f} %")
    ctx.check("pruned synapses are not counted (ACs < dense ACs)", 0 < totals["acs"] < totals["dense_acs"])
    rates = summary.firing_rates
    ctx.check(
        "firing rates in (0, 1]",
        bool(rates) and all(0 < r <= 1 for r in rates.values()),
        f"{len(rates)} layers, {min(rates.values(), default=0):.4f} to {max(rates.values(), default=0):.4f}",
    )
    # The same checkpoint evaluated on the CPU: the same network, another device's arithmetic.
    cpu_json = out / "cpu_evaluation.json"
    recount = subprocess.run(
        [*_cli(), "evaluate", "--checkpoint", str(out / "checkpoint.pth"), "--device", "cpu", "--sops",
         "--json", str(cpu_json)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if ctx.check("CPU evaluation exit code 0", recount.returncode == 0, recount.stderr[-300:]):
        cpu = RunSummary.read(cpu_json)
        difference = abs(cpu.sops.totals["acs_per_sample"] / totals["acs_per_sample"] - 1)
        ctx.check("CPU recount of ACs within 5 %", difference <= 0.05, f"{difference:.2%}")
        ctx.check(
            "CPU top-1 within 1.5 points",
            abs(cpu.accuracy["acc1"] - summary.accuracy["acc1"]) <= 1.5,
            f"{cpu.accuracy['acc1']:.2f} against {summary.accuracy['acc1']:.2f}",
        )
        ctx.record("info", cpu_acc1=cpu.accuracy["acc1"], cpu_acs_per_sample=cpu.sops.totals["acs_per_sample"])
    # The trainer's mixed precision on this device: --amp (its default dtype here), and float16 with a GradScaler
    # (a dry run: 12 steps of a smaller network still: float16 convolutions on the CPU are torch's slow
    # reference kernels, about 1 s a step here).
    short = ["--epochs", "1", "--width", "4", "--image-size", "8", "-b", "128"] if toy else ["--epochs", "2"]
    for flags, config in (
        (["--amp"], TrainConfig(dataset="digits", amp=True)),
        (["--amp", "--amp-dtype", "float16"], TrainConfig(dataset="digits", amp=True, amp_dtype="float16")),
    ):
        run_dir = out.parent / "_".join(flag.strip("-") for flag in flags)
        started = time.perf_counter()
        done = subprocess.run(
            [*_cli(), "train", "--recipe", str(REPO / "models" / "demo_digits.yaml"), *short,
             *flags, "--device", ctx.device.type, "--output-dir", str(run_dir)],
            cwd=REPO,
        )  # fmt: skip
        row = {
            "flags": " ".join(flags),
            "autocast": str(autocast_dtype(config, ctx.device)),
            "exit_code": done.returncode,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if done.returncode == 0:
            run = RunSummary.read(run_dir / "summary.json")
            row.update(epochs=run.epochs_completed, acc1=run.accuracy["acc1"], sparsity=run.sparsity.global_sparsity)
        ctx.record("row", **row)
        ctx.check(f"{row['flags']}: trained, sparsity > 0.5", row.get("sparsity", 0) > 0.5, str(row))


def _cli() -> list[str]:
    """The ``snn-lats`` command: the installed entry point beside this Python, else ``-m snn_lats``."""
    script = Path(sys.executable).with_name("snn-lats")
    return [str(script)] if script.exists() else [sys.executable, "-m", "snn_lats"]


RELEASE_SIZES = {
    "gpu": dict(runs=((4, 32), (16, 8)), image=224, width=64, classes=1000, warmup=2, steps=5),
    "dry": dict(runs=((2, 2), (4, 1)), image=16, width=4, classes=10, warmup=1, steps=1),
}


@part(gpu_limit=150, dry_limit=300)
def spikingjelly_releases(ctx: Context) -> None:
    """Training steps of SEW ResNet-18 (float32, LATS-pruned) at T = 4 and 16 (the same T x batch)
    on every neuron backend of the SpikingJelly release this process imports; under 0.0.0.0.14 it
    then runs itself again under 2.x: on the GPU, 2.x's wheel from ``.device/`` installed into
    ``SITE_2``, ahead on the path; in a dry run, the ``.venv-sj2`` that scripts/setup_env.sh builds."""

    from snn_lats import _spikingjelly, networks

    size = {**RELEASE_SIZES["dry" if ctx.dry_run else "gpu"], "device": ctx.device}
    release = _spikingjelly.VERSION
    for backend in [b for b in _spikingjelly.BACKENDS if b != "auto"]:
        for T, batch in size["runs"]:

            def train(backend=backend, T=T, batch=batch):
                model = networks.sew_resnet18(T=T, width=size["width"], num_classes=size["classes"], backend=backend)
                return _train_steps(model.to(size["device"]), batch, size["image"], size["classes"], None,
                                    False, True, size)  # fmt: skip

            _training_row(ctx, dict(spikingjelly=release, backend=backend, T=T, batch=batch), size["device"], train)
    if not _spikingjelly.CUPY_ERA:
        return
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    python = sys.executable
    if ctx.dry_run:
        python = str(REPO / ".venv-sj2" / "bin" / "python")
        found = Path(python).exists()
        if not ctx.check("SpikingJelly 2.x environment", found, python if found else "no .venv-sj2 (setup_env.sh)"):
            return
    else:
        wheels = [sorted((REPO / ".device").glob(f"{name}-*.whl")) for name in ("spikingjelly-2.", "loguru-")]
        if not ctx.check("spikingjelly 2.x and loguru wheels in .device/", all(wheels), "see docs/benchmarks.md#gpu"):
            return
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
                        "--disable-pip-version-check", "--upgrade", "--target", str(SITE_2), wheels[0][-1],
                        wheels[1][-1]], check=True)  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE_2), env.get("PYTHONPATH")]))
    command = [python, str(Path(__file__).resolve()), "--part", "spikingjelly_releases", "--results", str(ctx.results)]
    done = subprocess.run(command + (["--dry-run"] if ctx.dry_run else []), env=env, capture_output=True, text=True)
    print(done.stdout + done.stderr[-3000:], flush=True)
    ok = done.returncode == 0
    ctx.check("the part under SpikingJelly 2.x", ok, "" if ok else done.stderr[-300:])


DVS_SIZES = {
    "gpu": dict(T=16, batch=16, width=None, warmup=2, steps=5),  # the SEW paper's Gesture setting
    "dry": dict(T=2, batch=2, width=4, warmup=1, steps=1),
}


@part(gpu_limit=60, dry_limit=180)
def dvs_throughput(ctx: Context) -> None:
    """Training steps of 7B-Net (PLIF, LATS-pruned) on DVS128-shaped event frames
    ``[T, N, 2, 128, 128]`` (event counts, about 5 % of pixels active) on every neuron backend of
    the installed SpikingJelly, in float32 and with float16 autocast."""
    import torch

    from snn_lats import _spikingjelly, networks

    size = {**DVS_SIZES["dry" if ctx.dry_run else "gpu"], "device": ctx.device}
    ctx.record("info", T=size["T"], batch=size["batch"], frame=128, timed_steps=size["steps"])
    generator = torch.Generator().manual_seed(0)
    shape = (size["T"], size["batch"], 2, 128, 128)
    frames = (torch.rand(shape, generator=generator) < 0.05) * torch.randint(1, 4, shape, generator=generator)
    for backend in [b for b in _spikingjelly.BACKENDS if b != "auto"]:
        for amp in (None, "float16"):

            def train(backend=backend, amp=amp):
                model = networks.sew_7b_net(T=size["T"], width=size["width"], backend=backend).to(size["device"])
                dtype = torch.float16 if amp else None
                return _train_steps(model, size["batch"], 128, 11, dtype, False, True, size, inputs=frames.float())

            row = dict(backend=backend, amp=amp, T=size["T"], batch=size["batch"])
            _training_row(ctx, row, size["device"], train)


# ----------------------------------------------------------------------------------------------
# The orchestrator: standard library only (the parts import torch and the project)


def run_part(name: str, limit: float, dry_run: bool, work: Path, log) -> dict:
    results = work / f"{name}.jsonl"
    part_log = work / f"{name}.log"
    path = [str(REPO), str(SITE), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--results", str(results)]
    if dry_run:
        command.append("--dry-run")
    started = time.perf_counter()
    with open(part_log, "w", encoding="utf-8") as output:
        # A session of its own: a time-out ends the part with everything it started (pytest, torchrun, the CLI).
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=limit)
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code, status = None, "timed out"
    seconds = time.perf_counter() - started
    text = part_log.read_text(encoding="utf-8", errors="replace")
    log.write(f"\n===== {name}: {status} after {seconds:.1f} s (limit {limit:.0f} s) =====\n{text}")
    log.flush()
    info, rows, checks = {}, [], []
    for line in results.read_text(encoding="utf-8").splitlines() if results.exists() else []:
        entry = json.loads(line)
        kind = entry.pop("kind")
        if kind == "info":
            info.update(entry)
        else:
            (checks if kind == "check" else rows).append(entry)
    if status == "ok" and not all(c["passed"] for c in checks):
        status = "failed"
    return {
        "status": status,
        "exit_code": code,
        "seconds": round(seconds, 1),
        "limit_s": round(limit),
        "info": info,
        "rows": rows,
        "checks": checks,
        "log_tail": text[-2500:],
    }


def _cell(value, width: int = 110) -> str:
    """A value for a Markdown line: floats to 4 significant digits, long text cut."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown(report: dict) -> str:
    lines = [
        f"# Device check ({'dry run, CPU' if report['dry_run'] else 'GPU'})",
        "",
        f"{report['started']}; {report['seconds']:.0f} s in all (budget {report['budget_s']} s); host {report['host']}",
        "",
        "| part | status | seconds | checks |",
        "|---|---|---|---|",
    ]
    for name, result in report["parts"].items():
        checks = result["checks"]
        passed = sum(c["passed"] for c in checks)
        lines.append(
            f"| {name} | {result['status']} | {result['seconds']} / {result['limit_s']} | "
            + (f"{passed}/{len(checks)}" if checks else "")
            + " |"
        )
    for name, result in report["parts"].items():
        lines += ["", f"## {name}: {result['status']}", ""]
        if result["info"]:
            lines.append(", ".join(f"{k}: {_cell(v, 200)}" for k, v in result["info"].items()))
            lines.append("")
        for check in result["checks"]:
            mark = "pass" if check["passed"] else "FAIL"
            lines.append(
                f"- {mark}: {check['name']}" + (f" ({_cell(check['detail'], 200)})" if check["detail"] else "")
            )
        if result["rows"]:
            columns = list(dict.fromkeys(k for row in result["rows"] for k in row))
            lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            for row in result["rows"]:
                lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
        if result["status"] not in ("ok", "skipped"):
            lines += ["", "```text", result["log_tail"][-1500:], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", help="where report.json, report.md and device_check.log go")
    parser.add_argument("--dry-run", action="store_true", help="every part at toy size, on the CPU")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), help="run these parts only")
    parser.add_argument("--limit", nargs="+", default=[], metavar="PART=SECONDS", help="override a part's time limit")
    parser.add_argument(
        "--budget", type=float, help=f"seconds for all parts (default {BUDGET_S}; a dry run {DRY_BUDGET_S})"
    )
    parser.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)  # one part, in its own process
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.part:
        try:
            PARTS[args.part][0](Context(args.dry_run, Path(args.results)))
        except SystemExit:
            raise
        except BaseException:
            traceback.print_exc()
            return 1
        return 0

    if not args.out_dir:
        parser.error("the output folder is required")
    limits = {}
    for item in args.limit:
        name, _, seconds = item.partition("=")
        if name not in PARTS or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--limit takes PART=SECONDS with PART one of {', '.join(PARTS)}; got {item!r}")
        limits[name] = float(seconds)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started, clock = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    budget = args.budget or (DRY_BUDGET_S if args.dry_run else BUDGET_S)
    deadline = clock + budget
    report = {
        "dry_run": args.dry_run,
        "started": started,
        "host": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "budget_s": budget,
        "parts": {},
    }
    with tempfile.TemporaryDirectory() as work, open(out / "device_check.log", "w", encoding="utf-8") as log:
        for name in ORDER:
            if args.only and name not in args.only:
                continue
            _, gpu_limit, dry_limit = PARTS[name]
            limit = limits.get(name, dry_limit if args.dry_run else gpu_limit)
            if limit <= 0:
                report["parts"][name] = _not_run("skipped", "not part of a dry run")
                continue
            left = deadline - time.perf_counter()
            if left < 5:
                report["parts"][name] = _not_run("not run", "the budget was spent")
                continue
            print(f"[device_check] {name} (limit {min(limit, left):.0f} s) ...", flush=True)
            result = run_part(name, min(limit, left), args.dry_run, Path(work), log)
            report["parts"][name] = result
            print(f"[device_check] {name}: {result['status']} in {result['seconds']} s", flush=True)
    report["seconds"] = round(time.perf_counter() - clock, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    text = markdown(report)
    (out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(p["status"] in ("ok", "skipped") for p in report["parts"].values()) else 1


def _not_run(status: str, why: str) -> dict:
    return {"status": status, "exit_code": None, "seconds": 0, "limit_s": 0, "info": {"why": why}, "rows": [],
            "checks": [], "log_tail": ""}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
