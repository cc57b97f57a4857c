"""Accuracy against weight sparsity: the paper's central comparison, at CPU scale.

Trains a small SEW ResNet-18 (the SNN) and the matching ResNet-18 (the ANN: same width and stem,
one time step) on scikit-learn's offline digits (or any ImageFolder), for the same fixed budget,
with every threshold schedule and two baselines, at several target sparsities, over several seeds.
``--networks`` picks among them and two tiny spiking transformers:

- ``snn``: SEW ResNet-18 (``--width`` channels in the first stage, ``--T`` steps, IF neurons, ADD);
- ``ann``: ResNet-18 of the same width and stem, one time step;
- ``spikformer``, ``sdt``: Spikformer and the Spike-driven Transformer (v1) at ``--tf-width``
  (embedding dimension), ``--tf-depth`` blocks and ``--tf-heads`` heads, ``--T`` steps, the
  authors' LIF neurons, the same ``--stem`` (``cifar``: patches of 4 pixels). They train with
  AdamW (``--tf-lr``, ``--tf-weight-decay``; LATS then thresholds each weight by its own Adam
  step), the ResNets with SGD (``--lr``, momentum 0.9, no weight decay). Everything else (data,
  epochs, batch, lr schedule, pruning window, fixed mask, BatchNorm recalibration, seeds) is the
  same for every network.

The methods:

- ``lats``, ``slats``, ``pgh`` (``β < 1``: early pruning), ``stds-sine``, ``constant`` (pruning at
  initialisation): ``snn-lats train --prune MODE --final-threshold D``. The final sparsity of these
  follows from ``D``, so ``D`` is calibrated for every level first (below).
- ``lats-target``: ``--prune lats --target-sparsity s`` (λ chosen by the controller; no calibration).
- ``gmp``: gradual magnitude pruning (Zhu & Gupta 2017), ``--prune gmp --target-sparsity s``: global
  magnitude masks raised to ``s·(1 − (1 − x)³)`` every 1/32 of the window.
- ``dense``: no pruning.

The protocol gives every method its due: the same training budget, the same pruning window
(``--window-fraction`` of the epochs, default 75 %; the constant schedule prunes at initialisation
and has none), the same fixed-mask fine-tuning after it (``--freeze-mask``), and the same
BatchNorm treatment (the statistics recomputed on training batches when the window ends,
``--recalibrate-bn``); ``--no-freeze-mask --no-recalibrate-bn --window-fraction 1`` is the
protocol of the first benchmark. Every run is the real training loop (``snn_lats.engine.train``):
same data, optimiser, lr schedule and seed for every method; the last epoch's validation top-1
is reported, with the weight sparsity counted on the trained model (zeros of every Conv/Linear
weight) and the synaptic operations and energy of the final SOP count.

Calibration of ``D`` (per network and method, seed 0): double or halve ``D`` from ``--d-start``
until the sweep brackets every level, then one run per level at the ``D`` interpolated in
(log D, logit s); the final ``D`` of each level is interpolated again from all those runs. Only
the first rise of sparsity with D counts: once a run collapses, weights regrow and sparsity falls
again, and a level beyond that is "not reached". The achieved sparsity is close to, not exactly,
the level: a level whose runs land more than 0.25 in logit from it is "not reached" too; every
point is reported, and plotted, at its achieved sparsity.

Runs are cached as JSON under ``--output-dir`` (a rerun skips finished runs, so an interrupted
benchmark resumes). The cache is keyed by the run's settings; each run also records a digest of
the ``snn_lats`` sources that trained it, and the command warns when it reused runs that other
code trained. ``--jobs`` processes train in parallel, one thread each. The command writes a
Markdown table, the raw results (JSON) and the plot::

    python benchmarks/accuracy_sparsity.py --jobs 2 \\
        --table docs/results/accuracy_sparsity.md --plot docs/figures/accuracy_sparsity.png
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")  # snn_lats.data's
METHODS = ("lats", "lats-target", "slats", "pgh", "stds-sine", "constant", "gmp", "dense")
CALIBRATED = ("lats", "slats", "pgh", "stds-sine", "constant")
# A level counts as reached when the mean achieved sparsity is within this of it in logit
# (99 %: 98.7-99.2 %; 90 %: 87.5-92 %); a calibrated schedule that lands further off is "not reached".
REACHED_LOGIT = 0.25
NETWORKS = {"snn": "sew_resnet18", "ann": "resnet18", "spikformer": "spikformer_8_384", "sdt": "sdt_8_384"}
TRANSFORMERS = ("spikformer", "sdt")  # built at --tf-width/--tf-depth/--tf-heads, trained with AdamW
LABELS = {
    "lats": "LATS",
    "lats-target": "LATS, --target-sparsity",
    "slats": "S-LATS",
    "pgh": "PGH",
    "stds-sine": "STDS (sine)",
    "constant": "pruning at init (constant)",
    "gmp": "GMP (--prune gmp)",
    "dense": "dense",
}


# ------------------------------------------------------------------------------------ one run


def run_point(spec: dict, cache_dir: str) -> dict:
    """Train one (network, method, strength, seed) point, or read it from the cache."""
    path = Path(cache_dir) / f"{spec_key(spec)}.json"  # the run's log sits beside it as .log
    weights = path.with_suffix(".pth")  # a dense run's checkpoint: the starting point of the fine-tunes
    if path.exists() and (spec["method"] != "dense" or weights.exists()):
        return json.loads(path.read_text())
    import torch

    from snn_lats.engine.recipe import TrainConfig
    from snn_lats.engine.trainer import train

    torch.set_num_threads(1)
    values = dict(spec["base"])
    method = spec["method"]
    pruning = values.pop("pruning")  # the protocol of the pruned runs: window, tail, statistics
    if method == "dense":
        values["prune"] = "none"
    else:
        values.update(pruning)
    if method == "constant":
        values.pop("prune_end_epoch")  # pruning at initialisation has no window
    if method == "gmp":
        values.update(prune="gmp", target_sparsity=spec["level"])
    elif method == "lats-target":
        values.update(prune="lats", target_sparsity=spec["level"])
    elif method == "lats-energy":  # benchmarks/energy_budget.py
        values.update(
            prune="lats",
            target_energy_uj=spec["budget_uj"],
            energy_preset=spec["preset"],
            cost_weighting=spec.get("weighting", "sqrt"),
        )
    elif method != "dense":
        values.update(prune=method, final_threshold=spec["D"])
        if method == "pgh":
            values["beta"] = spec["beta"]
    log = path.with_suffix(".log")
    started = time.time()
    with (
        tempfile.TemporaryDirectory() as out,
        open(log, "w") as stream,
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        summary = train(TrainConfig(**values, output_dir=out))
        if method == "dense":
            shutil.copyfile(Path(out) / "checkpoint.pth", weights)
    result = {
        "spec": spec,
        "acc1": summary.accuracy["acc1"],
        "sparsity": summary.sparsity.all_weights_sparsity,  # every Conv/Linear weight, pruned or not
        "energy_uj": (summary.energy_pj_per_sample() or math.nan) / 1e6,
        "sops_per_sample": _sops(summary),
        "threshold": summary.history[-1]["threshold"],
        "seconds": time.time() - started,
        "code": code_version(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)  # a killed run leaves no half-written result
    return result


def _sops(summary) -> float:
    """ACs + MACs per sample of a :class:`~snn_lats.engine.RunSummary` (nan without a count)."""
    if summary.sops is None:
        return math.nan
    return summary.sops.acs_per_sample + summary.sops.macs_per_sample


@functools.cache
def code_version() -> str:
    """Digest of the ``snn_lats`` sources. A cached run records the code that trained it, so that a
    rerun after a change to the library can say which results it reused from older code."""
    root = Path(importlib.util.find_spec("snn_lats").origin).parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def stale_runs(names: list[str], cache: Path) -> list[str]:
    """The cached runs among ``names`` (file names in ``cache``) that other ``snn_lats`` code
    trained (or that predate the record)."""
    return [n for n in names if json.loads((cache / n).read_text()).get("code") != code_version()]


def spec_key(spec: dict) -> str:
    strength = f"D{spec['D']:.6g}" if spec.get("D") is not None else f"s{spec.get('level')}"
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"{spec['network']}-{spec['method']}-{strength}-seed{spec['base']['seed']}-{digest}"


# -------------------------------------------------------------------------------- calibration


def _logit(s: float) -> float:
    s = min(max(s, 1e-6), 1 - 1e-6)
    return math.log(s / (1 - s))


def interpolate_d(points: list[tuple[float, float]], level: float) -> float | None:
    """The smallest ``D`` reaching sparsity ``level``, from the calibration runs ``(D, s)``.

    In D order, the first pair of neighbouring runs with ``s_i < level <= s_i+1`` is interpolated
    linearly in (log D, logit s); below the first run, the first pair is extrapolated (at most a
    factor 4). None when no run reaches ``level``. Past the first crossing sparsity need not keep
    rising with D: once the network collapses, weights regrow through the straight-through
    gradient, so only the first rise of sparsity with D counts: the runs past the first fall
    are left out, and a level only they reach is not reached.
    """
    pts = sorted(points)
    for i in range(1, len(pts)):  # the first rise only: past a fall the runs collapsed
        if pts[i][1] < pts[i - 1][1]:
            pts = pts[:i]
            break
    if not any(s >= level for _, s in pts):
        return None

    def between(a, b):
        (d0, s0), (d1, s1) = a, b
        if _logit(s1) - _logit(s0) < 1e-9:
            return d1
        x = (_logit(level) - _logit(s0)) / (_logit(s1) - _logit(s0))
        return math.exp(math.log(d0) + x * (math.log(d1) - math.log(d0)))

    if pts[0][1] >= level:
        return pts[0][0] if len(pts) == 1 else max(pts[0][0] / 4, between(pts[0], pts[1]))
    for a, b in zip(pts, pts[1:]):
        if a[1] < level <= b[1]:
            return between(a, b)
    raise AssertionError("unreachable: some run reaches the level")


def calibrate(spec: dict, levels: list[float], d_start: float, cache_dir: str, max_runs: int = 8) -> dict:
    """Seed-0 runs of one (network, method): double D until a run reaches the highest level, halve
    it until one is below the lowest, then one run per reached level at the interpolated D.
    Returns the runs and the D of every level (None: no run reached it)."""
    runs: dict[float, float] = {}

    def run(d: float) -> None:
        d = float(f"{d:.6g}")
        if d not in runs:
            runs[d] = run_point({**spec, "D": d}, cache_dir)["sparsity"]

    run(d_start)
    low, high = min(levels) - 0.005, max(levels) + 0.002
    while len(runs) < max_runs:
        if max(runs.values()) < high:
            run(max(runs) * 2)
        elif min(runs.values()) > low:
            run(min(runs) / 2)
        else:
            break
    for level in levels:
        d = interpolate_d(list(runs.items()), level)
        if d is not None:
            run(d)
    return {"runs": sorted(runs.items()), "D": {level: interpolate_d(list(runs.items()), level) for level in levels}}


# ------------------------------------------------------------------------------------- report


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds (std 0 for a single seed)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: list[dict], levels: list[float]) -> list[dict]:
    """Mean ± std over seeds of every (network, method, level)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        s = r["spec"]
        groups.setdefault((s["network"], s["method"], s.get("level")), []).append(r)
    rows = []
    for network in NETWORKS:
        for method in METHODS:
            for level in [None] if method == "dense" else levels:
                group = groups.get((network, method, level))
                if not group:
                    continue

                def stat(key, group=group):
                    return mean_std([g[key] for g in group])

                achieved = stat("sparsity")[0]
                rows.append(
                    {
                        "network": network,
                        "model": model_title(group[0]["spec"]),
                        "method": method,
                        "level": level,
                        "reached": level is None or abs(_logit(achieved) - _logit(level)) <= REACHED_LOGIT,
                        "seeds": len(group),
                        "acc1": stat("acc1"),
                        "sparsity": stat("sparsity"),
                        "energy_uj": stat("energy_uj"),
                        "sops_per_sample": stat("sops_per_sample"),
                        "D": group[0]["spec"].get("D"),
                        "seconds": sum(g["seconds"] for g in group),
                    }
                )
    return rows


def model_title(spec: dict) -> str:
    """The network of a run spec, e.g. ``sew_resnet18`` or ``spikformer, width 32, depth 2, 4 heads``."""
    base = spec["base"]
    if spec["network"] not in TRANSFORMERS:
        return NETWORKS[spec["network"]]
    return f"{spec['network']}, width {base['width']}, depth {base['depth']}, {base['num_heads']} heads"


def markdown(rows: list[dict], calibration: dict, header: str) -> str:
    lines = [header, ""]
    for network in NETWORKS:
        if not any(r["network"] == network for r in rows):
            continue  # a network left out with --networks gets no empty table
        model = next(r["model"] for r in rows if r["network"] == network)
        lines += [
            f"### {network.upper()} ({model})",
            "",
            "| method | target | D | top-1 % (mean ± std) | achieved sparsity % | SOPs per sample (M) | "
            "energy µJ per sample | seeds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["network"] != network:
                continue
            level = "—" if r["level"] is None else f"{100 * r['level']:g} %"
            d = "—" if r["D"] is None else f"{r['D']:.4g}"
            (a, sa), (s, ss), (e, se), (o, _) = r["acc1"], r["sparsity"], r["energy_uj"], r["sops_per_sample"]
            accuracy = f"{a:.2f} ± {sa:.2f}" if r["reached"] else f"not reached ({a:.2f} ± {sa:.2f} there)"
            lines.append(
                f"| {LABELS[r['method']]} | {level} | {d} | {accuracy} | {100 * s:.2f} ± {100 * ss:.2f} "
                f"| {o / 1e6:.3f} | {e:.3f} ± {se:.3f} | {r['seeds']} |"
            )
        for (net, method), result in calibration.items():
            for level, d in result["D"].items():
                if net == network and d is None:
                    lines.append(f"| {LABELS[method]} | {100 * level:g} % | — | not reached in calibration | | | | 0 |")
        lines.append("")
    if calibration:
        lines += ["### Calibration runs (seed 0): final threshold D → achieved sparsity", ""]
    for (network, method), result in calibration.items():
        runs = ", ".join(f"{d:.4g} → {100 * sp:.2f} %" for d, sp in result["runs"])
        missed = [f"{100 * level:g} %" for level, d in result["D"].items() if d is None]
        lines.append(
            f"- {network.upper()} {LABELS[method]}: {runs}" + (f". Not reached: {', '.join(missed)}." if missed else "")
        )
    if calibration:
        lines.append("")
    return "\n".join(lines)


def paired_differences(results: list[dict], rows: list[dict]) -> str:
    """Every method against gradual magnitude pruning at the same level, seed by seed (both
    reached): the mean and std of the differences in top-1, and the seeds each side won."""
    reached = {(r["network"], r["method"], r["level"]) for r in rows if r["reached"]}
    acc = {(r["spec"]["network"], r["spec"]["method"], r["spec"].get("level"), r["spec"]["base"]["seed"]): r["acc1"]
           for r in results}  # fmt: skip
    lines = [
        "",
        "### Paired against GMP: the same seed, the same level (top-1 of the method minus GMP's)",
        "",
        "| network | level | method | difference (mean ± std) | method ahead / behind | seeds |",
        "|---|---|---|---|---|---|",
    ]
    if not any(method == "gmp" for _, method, _ in reached):
        return ""  # no GMP run: nothing to pair with
    for network, method, level in sorted(reached):
        if method in ("gmp", "dense") or (network, "gmp", level) not in reached:
            continue
        diffs = [
            acc[key] - acc[(network, "gmp", level, key[3])]
            for key in acc
            if key[:3] == (network, method, level) and (network, "gmp", level, key[3]) in acc
        ]
        if diffs:
            mean, std = mean_std(diffs)
            ahead, behind = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
            lines.append(
                f"| {network.upper()} | {100 * level:g} % | {LABELS[method]} | {mean:+.2f} ± {std:.2f} "
                f"| {ahead} / {behind} | {len(diffs)} |"
            )
    return "\n".join(lines + [""])


def paired_spec(lats_result: dict, make_spec) -> dict:
    """The lats-target run that aims at the sparsity a hand-found LATS run reached, with its seed."""
    s = lats_result["spec"]
    return make_spec(
        s["network"], "lats-target", s["base"]["seed"], level=round(lats_result["sparsity"], 6), paired_with=s["level"]
    )


def paired_markdown(pairs: list[tuple[dict, dict]]) -> str:
    """Hand-found LATS against --target-sparsity at the same sparsity, seed by seed."""
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for a, b in pairs:
        groups.setdefault((a["spec"]["network"], a["spec"]["level"]), []).append((a, b))
    lines = [
        "",
        "### --target-sparsity at the sparsity of each hand-found LATS run (same seed)",
        "",
        "| network | level | achieved sparsity % | LATS, hand-found D: top-1 % | --target-sparsity: top-1 % "
        "| difference (target − LATS) | seeds |",
        "|---|---|---|---|---|---|---|",
    ]

    def stat(values):
        return "{:.2f} ± {:.2f}".format(*mean_std(values))

    for (network, level), group in sorted(groups.items()):
        sparsity = stat([100 * a["sparsity"] for a, _ in group])
        lats, target = stat([a["acc1"] for a, _ in group]), stat([b["acc1"] for _, b in group])
        difference = stat([b["acc1"] - a["acc1"] for a, b in group])
        lines.append(
            f"| {network.upper()} | {100 * level:g} % | {sparsity} | {lats} | {target} | {difference} | {len(group)} |"
        )
    return "\n".join(lines + [""])


def trajectory(log: str) -> list[tuple[float, float]]:
    """``(c, s)`` at the end of every epoch of a run, from the trainer's epoch lines in its log
    (``epoch k: ... sparsity S%  threshold ...  lr L ...``): ``c`` is the fraction of the run's
    lr spent by then (every epoch has the same number of steps), ``s`` the weight sparsity."""
    found = re.findall(r"^epoch \d+: .*\|  sparsity ([\d.]+)%.*?  lr ([\d.e+-]+)", log, re.M)
    sparsity, lrs = [float(a) / 100 for a, _ in found], [float(b) for _, b in found]
    spent = [sum(lrs[: k + 1]) / sum(lrs) for k in range(len(lrs))] if lrs else []
    return list(zip(spent, sparsity))


def trajectory_exponent(points: list[tuple[float, float]]) -> float | None:
    """The exponent ``k`` of ``logit s(c) = logit s(1) + k·log c`` (the controller's model of a
    constant-λ LATS run, ``TRAJECTORY_EXPONENT``), fitted by least squares through the run's own
    end point, over the epochs before the last. None when the run has no such epoch."""
    final = points[-1][1] if points else None
    if final is None or not 0 < final < 1:
        return None
    pairs = [(math.log(c), _logit(s) - _logit(final)) for c, s in points[:-1] if 0 < c < 1 and 0 < s < 1]
    if not pairs:
        return None
    return sum(x * y for x, y in pairs) / sum(x * x for x, _ in pairs)


def trajectory_markdown(results: list[dict], cache: Path) -> str:
    """The controller's held-out constant: the trajectory exponent of every hand-found LATS run here."""
    from snn_lats.pruning.controller import TRAJECTORY_EXPONENT

    groups: dict[tuple, list[float]] = {}
    for r in results:
        s = r["spec"]
        log = cache / f"{spec_key(s)}.log"
        if s["method"] == "lats" and log.exists():
            k = trajectory_exponent(trajectory(log.read_text()))
            if k is not None:
                groups.setdefault((s["network"], s["level"]), []).append(k)
    lines = [
        "",
        f"### The trajectory of constant-λ LATS (the controller assumes exponent {TRAJECTORY_EXPONENT})",
        "",
        "`logit s(c) = logit s(1) + k·log c`, `c` the fraction of the lr spent, fitted per hand-found LATS run "
        "on its epoch ends.",
        "",
        "| network | level | fitted exponent k (mean ± std) | runs |",
        "|---|---|---|---|",
    ]
    for (network, level), ks in sorted(groups.items()):
        lines.append(
            f"| {network.upper()} | {100 * level:g} % | {'{:.2f} ± {:.2f}'.format(*mean_std(ks))} | {len(ks)} |"
        )
    return "\n".join(lines + [""])


def pretrained_markdown(runs: list[tuple[dict, dict, dict]], args) -> str:
    """Dense → ``--weights`` fine-tune against sparse from scratch for the same total epochs, seed by seed."""
    groups: dict[tuple, list[tuple[dict, dict, dict]]] = {}
    for dense, tuned, scratch in runs:
        groups.setdefault((dense["spec"]["network"], tuned["spec"]["level"]), []).append((dense, tuned, scratch))
    total = args.epochs + args.finetune_epochs
    lines = [
        "",
        f"### Pruning from pretrained: dense {args.epochs} epochs, then `--weights` and `--target-sparsity` for "
        f"{args.finetune_epochs} epochs at lr {args.finetune_lr:g}, against `--target-sparsity` from scratch for "
        f"{total} epochs (same seed; each window ends at {100 * args.window_fraction:g} % of its run)",
        "",
        f"| network | sparsity | dense ({args.epochs} epochs): top-1 % | from pretrained: top-1 % "
        "| from scratch: top-1 % | difference (pretrained − scratch) | seeds |",
        "|---|---|---|---|---|---|---|",
    ]

    def stat(values):
        return "{:.2f} ± {:.2f}".format(*mean_std(values))

    for (network, level), group in sorted(groups.items()):
        dense, tuned, scratch = ([g[i]["acc1"] for g in group] for i in range(3))
        lines.append(
            f"| {network.upper()} | {100 * level:g} % | {stat(dense)} | {stat(tuned)} | {stat(scratch)} "
            f"| {stat([a - b for a, b in zip(tuned, scratch)])} | {len(group)} |"
        )
    return "\n".join(lines + [""])


def plot(rows: list[dict], levels: list[float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = [n for n in NETWORKS if any(r["network"] == n for r in rows)]
    by_energy = bool(set(networks) & set(TRANSFORMERS))  # then a last panel: every network against energy
    panels = len(networks) + by_energy
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.6), squeeze=False)
    colours = dict(
        zip(METHODS, ("tab:red", "darkred", "tab:orange", "tab:purple", "tab:blue", "tab:brown", "tab:green", "black"))
    )
    styles = {"lats-target": "--", "gmp": "-."}

    def x_of(s):  # 90, 99, 99.9 % equally spaced
        return -math.log10(max(1 - s, 1e-6))

    for ax, network in zip(axes[0], networks):
        for method in METHODS:
            # in order of achieved sparsity: a level a schedule overshot or missed is drawn where it landed
            pts = sorted(  # a level not reached is no point of the curve
                (r for r in rows if r["network"] == network and r["method"] == method and r["reached"]),
                key=lambda r: r["sparsity"][0],
            )
            if not pts:
                continue
            if method == "dense":
                ((a, sa),) = [p["acc1"] for p in pts]
                ax.axhline(a, color="black", lw=1, ls=":", label=f"dense ({a:.1f} %)")
                ax.axhspan(a - sa, a + sa, color="black", alpha=0.08)
                continue
            xs = [x_of(p["sparsity"][0]) for p in pts]
            ax.errorbar(
                xs,
                [p["acc1"][0] for p in pts],
                yerr=[p["acc1"][1] for p in pts],
                xerr=None,
                marker="o",
                ms=4,
                capsize=3,
                lw=1.4,
                color=colours[method],
                ls=styles.get(method, "-"),
                label=LABELS[method],
            )
        ticks = levels
        ax.set_xticks([x_of(t) for t in ticks], [f"{100 * t:g}" for t in ticks])
        ax.set_xlabel("weight sparsity (%), achieved; mean over seeds")
        ax.set_ylabel("validation top-1 (%)")
        ax.set_title(f"{network.upper()}: {next(r['model'] for r in rows if r['network'] == network)}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    if by_energy:
        ax = axes[0][-1]
        for network, colour in zip(networks, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
            pts = sorted((r for r in rows if r["network"] == network and r["reached"]), key=lambda r: r["energy_uj"][0])
            ax.errorbar(
                [p["energy_uj"][0] for p in pts],
                [p["acc1"][0] for p in pts],
                xerr=[p["energy_uj"][1] for p in pts],
                yerr=[p["acc1"][1] for p in pts],
                marker="o",
                ms=4,
                capsize=3,
                lw=1.2,
                color=colour,
                label=network.upper(),
            )
            for p in pts:
                tag = "dense" if p["level"] is None else f"{100 * p['level']:g} %"
                ax.annotate(
                    tag, (p["energy_uj"][0], p["acc1"][0]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        ax.set_xscale("log")
        energies = [r["energy_uj"][0] for r in rows if r["reached"]]
        ticks = [t for t in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30) if min(energies) / 2 < t < 2 * max(energies)]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("energy per sample (µJ, log scale); mean over seeds")
        ax.set_ylabel("validation top-1 (%)")
        ax.set_title("every network: top-1 against energy", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


# --------------------------------------------------------------------------------------- main


def base_config(args, network: str, seed: int) -> dict:
    values = dict(
        dataset=args.dataset,
        data_path=args.data_path,
        batch_size=args.batch_size,
        epochs=args.epochs,
        workers=0,
        lr=args.lr,
        momentum=0.9,
        weight_decay=0.0,
        lr_scheduler="cosine",
        lr_warmup_epochs=args.lr_warmup_epochs,
        model=NETWORKS[network],
        width=args.width,
        stem=args.stem,
        print_freq=10**9,
        val_freq=args.epochs,  # the window's end and the last epoch: the figures reported
        sops_batches=args.sops_batches,
        device="cpu",
        seed=seed,
    )
    if args.train_subset is not None:
        values["train_subset"] = args.train_subset
    if args.dataset != "imagefolder":
        values["image_size"] = args.image_size
    else:
        values.update(
            train_crop_size=args.image_size,
            val_crop_size=args.image_size,
            val_resize_size=round(args.image_size * 256 / 224),
        )
    if network == "snn":
        values.update(T=args.T, neuron="if", cnf="ADD")
    if network in TRANSFORMERS:  # the authors' LIF neurons, AdamW (the ResNets' settings stay as they were)
        values.update(
            T=args.T,
            width=args.tf_width,
            depth=args.tf_depth,
            num_heads=args.tf_heads,
            opt="adamw",
            lr=args.tf_lr,
            weight_decay=args.tf_weight_decay,
        )
        values.pop("momentum")
    values["pruning"] = dict(  # the same protocol for every pruned run (run_point applies it)
        prune_end_epoch=window_end(args),
        freeze_mask=args.freeze_mask,
        recalibrate_bn=args.recalibrate_bn,
    )
    return values


def window_end(args) -> int:
    """The epoch at which every method's pruning window ends: ``--window-fraction`` of the epochs."""
    return max(1, min(args.epochs, round(args.window_fraction * args.epochs)))


def data_sizes(args) -> tuple[int, int, int]:
    """``(steps per epoch, training images, validation images)`` of the benchmark's data."""
    from snn_lats.data import build_datasets, build_loaders
    from snn_lats.engine.recipe import TrainConfig

    values = base_config(args, "ann", 0)
    values.pop("pruning")
    train_set, val_set, _ = build_datasets(TrainConfig(**values))
    return len(build_loaders(train_set, val_set, args.batch_size, 0)[0]), len(train_set), len(val_set)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--data-path", help="imagefolder: root with train/ and val/; the others: as snn-lats train")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument(
        "--train-subset", type=int, help="train on this many training images (class-balanced); val stays whole"
    )
    parser.add_argument("--networks", nargs="+", choices=tuple(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--levels", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr-warmup-epochs", type=int, default=1)
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--width", type=int, default=16, help="channels of the first ResNet stage")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), default="cifar")
    parser.add_argument("--T", type=int, default=4, help="time steps of the SNN and the transformers")
    parser.add_argument("--tf-width", type=int, default=64, help="transformers: embedding dimension")
    parser.add_argument("--tf-depth", type=int, default=2, help="transformers: blocks")
    parser.add_argument("--tf-heads", type=int, default=4, help="transformers: attention heads")
    parser.add_argument("--tf-lr", type=float, default=2e-3, help="transformers: AdamW's initial lr")
    parser.add_argument("--tf-weight-decay", type=float, default=0.01, help="transformers: AdamW's weight decay")
    parser.add_argument("--beta", type=float, default=0.3, help="PGH's beta (< 1: early pruning)")
    parser.add_argument(
        "--window-fraction",
        type=float,
        default=0.75,
        help="every method's pruning window ends at this fraction of the epochs (then fine-tuning)",
    )
    parser.add_argument(
        "--freeze-mask",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the window, the zeros stay zeros (the soft-threshold methods' fixed-mask tail)",
    )
    parser.add_argument(
        "--recalibrate-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="recompute the BatchNorm statistics on training batches when the window ends",
    )
    parser.add_argument("--d-start", type=float, default=0.1, help="calibration: first final threshold tried")
    parser.add_argument("--sops-batches", type=int, default=2)
    parser.add_argument("-j", "--jobs", type=int, default=2, help="training processes in parallel (1 thread each)")
    parser.add_argument("--output-dir", default="runs/accuracy_sparsity", help="cache of finished runs (resumable)")
    parser.add_argument("--table", help="write the Markdown table here")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--plot", help="write the accuracy-sparsity plot here (.png, .svg or .pdf)")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="also run lats-target per seed at the sparsity that seed's hand-found LATS run reached, "
        "and report the accuracy differences (needs lats and lats-target in --methods)",
    )
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="also prune every dense run with --weights and --target-sparsity at --finetune-levels for "
        "--finetune-epochs, against --target-sparsity from scratch for the same total epochs (needs dense)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-lr", type=float, help="the fine-tunes' initial lr (default: --lr)")
    parser.add_argument("--finetune-levels", nargs="+", type=float, default=[0.9, 0.98])
    args = parser.parse_args(argv)
    if args.pretrained and "dense" not in args.methods:
        parser.error("--pretrained fine-tunes the dense runs: give dense in --methods")
    if args.paired and not {"lats", "lats-target"} <= set(args.methods):
        parser.error("--paired compares lats-target with lats: give both in --methods")
    if args.train_subset is not None and args.train_subset < 1:
        parser.error("--train-subset must be >= 1")
    if any(not 0 < level < 1 for level in [*args.levels, *args.finetune_levels]):
        parser.error("--levels must be fractions in (0, 1), e.g. 0.9 0.99")
    if not 0 < args.window_fraction <= 1:
        parser.error("--window-fraction must be in (0, 1]")
    positive = ("seeds", "epochs", "batch_size", "width", "T", "jobs", "image_size", "finetune_epochs")
    for name in (*positive, "tf_width", "tf_depth", "tf_heads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.tf_width % 8 or args.tf_width % args.tf_heads:
        parser.error("--tf-width must be a multiple of 8 and of --tf-heads")
    if not args.d_start > 0 or not args.beta > 0:
        parser.error("--d-start and --beta must be > 0")
    if args.dataset in ("imagefolder", "mnist", "cifar10", "cifar100") and not args.data_path:
        parser.error(f"--dataset {args.dataset} needs --data-path")
    args.levels = sorted(set(args.levels))
    if args.finetune_lr is None:
        args.finetune_lr = args.lr
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    cache = Path(args.output_dir)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cached_before = {path.name for path in cache.glob("*.json")}
    per_epoch, train_images, val_images = data_sizes(args)

    def spec(network, method, seed, **extra):
        s = {"network": network, "method": method, "base": base_config(args, network, seed)}
        if method == "pgh":
            s["beta"] = args.beta
        s.update(extra)
        return s

    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        # 1. calibrate D for every (network, schedule) that takes one
        calibrated = [(n, m) for n in args.networks for m in args.methods if m in CALIBRATED]
        jobs = {
            pool.submit(calibrate, spec(n, m, 0), args.levels, args.d_start, str(cache)): (n, m) for n, m in calibrated
        }
        finished = {}
        for job in tqdm(futures.as_completed(jobs), total=len(jobs), desc="calibrating D", unit="schedule"):
            finished[jobs[job]] = job.result()
        calibration = {key: finished[key] for key in calibrated}  # command-line order, not finishing order
        # 2. every point over the seeds
        specs = []
        for n in args.networks:
            for m in args.methods:
                for seed in range(args.seeds):
                    if m == "dense":
                        specs.append(spec(n, m, seed))
                    for level in [] if m == "dense" else args.levels:
                        extra = {"level": level}
                        if m in CALIBRATED:
                            d = calibration[n, m]["D"][level]
                            if d is None:  # no calibration run got there: reported, not trained
                                continue
                            extra["D"] = float(f"{d:.6g}")
                        specs.append(spec(n, m, seed, **extra))
        jobs = [pool.submit(run_point, s, str(cache)) for s in specs]
        results = [job.result() for job in tqdm(jobs, desc="training", unit="run")]
        # 3. --paired: the controller at exactly the sparsity each hand-found LATS run reached
        hand_found = [r for r in results if r["spec"]["method"] == "lats"] if args.paired else []
        jobs = [pool.submit(run_point, paired_spec(r, spec), str(cache)) for r in hand_found]
        pairs = list(zip(hand_found, (job.result() for job in tqdm(jobs, desc="paired", unit="run"))))
        # 4. --pretrained: each dense run pruned with --weights in a short fine-tune, against sparse from scratch
        dense_runs = [r for r in results if r["spec"]["method"] == "dense"] if args.pretrained else []
        pretrained_specs = []
        for r in dense_runs:
            dense = r["spec"]
            for level in args.finetune_levels:
                tuned = spec(dense["network"], "lats-target", dense["base"]["seed"], level=level)
                tuned["base"].update(
                    epochs=args.finetune_epochs, lr=args.finetune_lr, weights=str(cache / f"{spec_key(dense)}.pth")
                )
                scratch = spec(dense["network"], "lats-target", dense["base"]["seed"], level=level)
                scratch["base"]["epochs"] = args.epochs + args.finetune_epochs
                for run in (tuned, scratch):  # the window: the same fraction of each run's own epochs
                    epochs = run["base"]["epochs"]
                    run["base"]["pruning"]["prune_end_epoch"] = max(1, round(args.window_fraction * epochs))
                pretrained_specs.append((r, tuned, scratch))
        jobs = [
            (r, pool.submit(run_point, a, str(cache)), pool.submit(run_point, b, str(cache)))
            for r, a, b in pretrained_specs
        ]
        pretrained = [(r, a.result(), b.result()) for r, a, b in tqdm(jobs, desc="from pretrained", unit="pair")]

    rows = summarise(results, args.levels)
    used = [{**spec(n, m, 0), "D": d} for (n, m), c in calibration.items() for d, _ in c["runs"]]
    used += [r["spec"] for r in results] + [b["spec"] for _, b in pairs]
    used += [r["spec"] for _, a, b in pretrained for r in (a, b)]
    names = sorted({f"{spec_key(s)}.json" for s in used})
    trained = sum(name not in cached_before for name in names)
    header = (
        f"Generated by `python benchmarks/accuracy_sparsity.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
        f"({platform.platform()}, {os.cpu_count()} CPUs, {args.jobs} jobs; "
        f"{len(results)} runs of {sum(r['seconds'] for r in results) / len(results):.0f} s on average, "
        f"plus the calibration runs; of these {len(names)} runs, {trained} trained by this command and the others "
        f"read from the cache, in {(time.time() - started) / 60:.0f} min). "
        f"{args.dataset}, {args.image_size}x{args.image_size}, {train_images} training images, validation on all "
        f"{val_images}; width {args.width}, {args.stem} stem, "
        f"SNN T = {args.T} (IF, ADD); {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} "
        f"momentum 0.9, no weight decay"
        + (
            f" (transformers: width {args.tf_width}, depth {args.tf_depth}, {args.tf_heads} heads, T = {args.T} "
            f"(LIF), AdamW lr {args.tf_lr} weight decay {args.tf_weight_decay})"
            if set(args.networks) & set(TRANSFORMERS)
            else ""
        )
        + f", {args.lr_warmup_epochs} warm-up epoch(s) then cosine; "
        f"PGH beta = {args.beta}; every pruning window ends at epoch {window_end(args)}"
        + (", then the mask is fixed" if args.freeze_mask else "")
        + ("; BatchNorm statistics recomputed when it ends." if args.recalibrate_bn else ".")
    )
    text = markdown(rows, calibration, header) + paired_differences(results, rows)
    text += paired_markdown(pairs) if pairs else ""
    text += trajectory_markdown(results, cache) if "lats" in args.methods else ""
    text += pretrained_markdown(pretrained, args) if pretrained else ""
    print(text)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text("# Accuracy against sparsity (generated)\n\n" + text)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "calibration": {f"{n}/{m}": c for (n, m), c in calibration.items()},
                    "runs": results,
                    "paired": [{"lats": a, "lats-target": b} for a, b in pairs],
                    "pretrained": [{"dense": d, "finetuned": a, "scratch": b} for d, a, b in pretrained],
                },
                indent=1,
            )
        )
    if args.plot:
        plot(rows, args.levels, args.plot)
    stale = stale_runs(names, cache)
    if stale:
        print(
            f"warning: {len(stale)} of {len(names)} runs were read from {cache}/ and were trained by other snn_lats "
            f"code than this checkout's, or before runs recorded it (first: {stale[0]}). "
            f"Delete their .json files to retrain them.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
