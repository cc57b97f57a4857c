"""ANN against SNN at equal energy: accuracy against energy per sample, four ways to prune to a budget.

The networks, data, training, protocol (one pruning window, the fixed-mask tail, BatchNorm
statistics recomputed when the window ends) and run cache of ``benchmarks/accuracy_sparsity.py``
(a SEW ResNet-18 and the matching ResNet-18 ANN on digits; every flag of that benchmark that is
not one of this script's own is passed on to it, e.g. ``--width``, ``--epochs``, ``--seeds``,
``--jobs``, ``--output-dir``). For every energy budget ``E`` (µJ per sample) and network:

- ``energy``: SOP-aware LATS, ``snn-lats train --prune lats --target-energy E``: each layer's
  threshold grows with the square root of what one of its weights costs (``--cost-weighting
  sqrt``, the default); lands on ``E`` on the training data;
- ``energy-linear``: the same with the cost-weighted L1 term (``--cost-weighting linear``);
- ``uniform``: the same target with one threshold for every layer (``--cost-weighting uniform``):
  uniform LATS steered to the budget;
- ``gmp``: gradual magnitude pruning (``--prune gmp``) at the sparsity that gives ``E``.

The sparsity that gives ``E`` is calibrated for GMP per network on seed 0: runs at the
``--calibration-levels`` give (sparsity, energy) points, and ``s(E)`` is interpolated between
the two that bracket ``E``, linearly in (logit s, log E). So ``gmp`` lands near ``E``, not on
it; every point is plotted at the energy it reached.

The energy convention is fixed: the exact synaptic-operation count (mask-aware ACs and MACs),
priced by ``--energy-preset`` (default 45nm-fp32: 0.9 pJ per AC, 4.6 pJ per MAC, Horowitz ISSCC
2014), compute only, counted on the whole validation set (``--sops-batches``, default 12 = 364
images at batch 32). Writes a Markdown table, the raw runs (JSON) and the plot::

    python benchmarks/energy_budget.py --jobs 2 --table docs/results/energy_budget.md \\
        --json docs/results/energy_budget.json --plot docs/figures/energy_budget.png
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import math
import multiprocessing
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_sparsity as acc  # noqa: E402  (the sibling benchmark: its runs, cache and networks)

METHODS = ("energy", "energy-linear", "uniform", "gmp", "dense")
LABELS = {
    "energy": "LATS to the budget, sqrt weighting (--target-energy)",
    "energy-linear": "LATS to the budget, linear weighting",
    "uniform": "LATS to the budget, uniform (--cost-weighting uniform)",
    "gmp": "GMP (--prune gmp)",
    "dense": "dense",
}
# the run method of accuracy_sparsity.run_point behind each, and the cost weighting of the budgets
RUN_METHOD = {"energy": "lats-energy", "energy-linear": "lats-energy", "uniform": "lats-energy", "gmp": "gmp"}
RUN_METHOD["dense"] = "dense"
WEIGHTING = {"energy": "sqrt", "energy-linear": "linear", "uniform": "uniform"}


def parse_args(argv=None) -> tuple[argparse.Namespace, argparse.Namespace]:
    """``(own, base)``: this script's flags, and accuracy_sparsity's for the rest."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.25, 0.5, 1.0, 2.0], help="uJ per sample")
    parser.add_argument(
        "--calibration-levels",
        nargs="+",
        type=float,
        default=[0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998],
        help="sparsities run on seed 0 to find the one that gives each budget (gmp)",
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["energy", "uniform", "gmp", "dense"])
    parser.add_argument("--energy-preset", default="45nm-fp32")
    parser.add_argument("--table", help="write the Markdown table here")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--plot", help="write the accuracy-energy plot here")
    own, rest = parser.parse_known_args(argv)
    if "--sops-batches" not in rest:
        rest += ["--sops-batches", "12"]  # the whole validation set of digits at batch 32
    base = acc.parse_args(rest)
    if any(not b > 0 for b in own.budgets) or any(not 0 < s < 1 for s in own.calibration_levels):
        parser.error("--budgets must be > 0 and --calibration-levels in (0, 1)")
    own.budgets, own.calibration_levels = sorted(set(own.budgets)), sorted(set(own.calibration_levels))
    from snn_lats.estimators.energy import energy_preset

    try:
        energy_preset(own.energy_preset)
    except ValueError as error:
        parser.error(str(error))
    return own, base


def level_for(points: list[tuple[float, float]], energy: float) -> float | None:
    """The sparsity at which a method reaches ``energy``, from its runs ``(sparsity, energy)``:
    between the first two neighbours (in sparsity order) whose energies bracket it, linear in
    (logit s, log E). None when no pair brackets it."""
    pts = sorted(points)
    for (s0, e0), (s1, e1) in zip(pts, pts[1:]):
        if min(e0, e1) <= energy <= max(e0, e1) and e0 != e1:
            x = (math.log(energy) - math.log(e0)) / (math.log(e1) - math.log(e0))
            logit = acc._logit(s0) + x * (acc._logit(s1) - acc._logit(s0))
            return round(1 / (1 + math.exp(-logit)), 6)
    return None


def summarise(results: list[dict], budgets: list[float]) -> list[dict]:
    """Mean ± std over seeds of every (network, method, budget)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        s = r["spec"]
        groups.setdefault((s["network"], s["energy_method"], s.get("budget_uj")), []).append(r)
    rows = []
    for network in acc.NETWORKS:
        for method in METHODS:
            for budget in [None] if method == "dense" else budgets:
                group = groups.get((network, method, budget))
                if not group:
                    continue
                row = {"network": network, "method": method, "budget_uj": budget, "seeds": len(group)}
                for key in ("acc1", "energy_uj", "sparsity", "sops_per_sample"):
                    row[key] = acc.mean_std([g[key] for g in group])
                row["level"] = group[0]["spec"].get("level")
                row["seconds"] = sum(g["seconds"] for g in group)
                rows.append(row)
    return rows


def paired(results: list[dict]) -> str:
    """Every method against uniform LATS at the same budget, seed by seed: the difference in top-1,
    and the energy each reached on the validation samples (a point more than 10 % off its budget
    is marked)."""
    runs = {(r["spec"]["network"], r["spec"]["energy_method"], r["spec"].get("budget_uj"), r["spec"]["base"]["seed"]): r
            for r in results}  # fmt: skip
    lines = [
        "",
        "### Paired against uniform LATS steered to the same budget (the same seed)",
        "",
        "| network | budget µJ | method | top-1 difference (mean ± std) | ahead / behind | energy reached µJ: "
        "method, uniform | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({k[:3] for k in runs if k[1] not in ("uniform", "dense")}, key=lambda k: (k[0], k[2], k[1]))
    for network, method, budget in keys:
        pairs = [
            (r, runs[(network, "uniform", budget, seed)])
            for (n, m, b, seed), r in runs.items()
            if (n, m, b) == (network, method, budget) and (network, "uniform", budget, seed) in runs
        ]
        if not pairs:
            continue
        diffs = [a["acc1"] - b["acc1"] for a, b in pairs]
        mean, std = acc.mean_std(diffs)
        energy = [acc.mean_std([p[i]["energy_uj"] for p in pairs])[0] for i in (0, 1)]
        off = [e for e in energy if abs(e / budget - 1) > 0.1]
        mark = " (more than 10 % off the budget)" if off else ""
        lines.append(
            f"| {network.upper()} | {budget:g} | {LABELS[method]} | {mean:+.2f} ± {std:.2f} | "
            f"{sum(d > 0 for d in diffs)} / {sum(d < 0 for d in diffs)} | {energy[0]:.3f}, {energy[1]:.3f}{mark} "
            f"| {len(pairs)} |"
        )
    return "\n".join(lines + [""])


def markdown(rows: list[dict], calibration: dict, header: str) -> str:
    lines = [header, ""]
    for network in acc.NETWORKS:
        if not any(r["network"] == network for r in rows):
            continue
        lines += [
            f"### {network.upper()} ({acc.NETWORKS[network]})",
            "",
            "| budget µJ | method | sparsity set | energy µJ per sample reached (validation) | top-1 % | "
            "weight sparsity % | SOPs per sample (M) | seeds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["network"] != network:
                continue
            budget = "—" if r["budget_uj"] is None else f"{r['budget_uj']:g}"
            level = "—" if r["level"] is None else f"{100 * r['level']:.2f} %"
            (a, sa), (e, se), (s, ss), (o, _) = r["acc1"], r["energy_uj"], r["sparsity"], r["sops_per_sample"]
            lines.append(
                f"| {budget} | {LABELS[r['method']]} | {level} | {e:.3f} ± {se:.3f} | {a:.2f} ± {sa:.2f} | "
                f"{100 * s:.2f} ± {100 * ss:.2f} | {o / 1e6:.3f} | {r['seeds']} |"
            )
        lines.append("")
    lines += ["### Calibration runs (seed 0): sparsity → energy µJ per sample", ""]
    for (network, method), points in calibration.items():
        runs = ", ".join(f"{100 * s:g} % → {e:.3f}" for s, e in sorted(points))
        lines.append(f"- {network.upper()} {LABELS[method]}: {runs}")
    lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"energy": "tab:red", "energy-linear": "tab:orange", "uniform": "tab:blue", "gmp": "tab:green"}
    colours["dense"] = "black"
    styles = {"snn": ("-", "o"), "ann": ("--", "s")}
    fig, ax = plt.subplots(figsize=(7.6, 5.0))
    for network in acc.NETWORKS:
        for method in METHODS:
            pts = sorted((r for r in rows if r["network"] == network and r["method"] == method),
                         key=lambda r: r["energy_uj"][0])  # fmt: skip
            if not pts:
                continue
            ls, marker = styles[network]
            ax.errorbar(
                [p["energy_uj"][0] for p in pts],
                [p["acc1"][0] for p in pts],
                xerr=[p["energy_uj"][1] for p in pts],
                yerr=[p["acc1"][1] for p in pts],
                ls="none" if method == "dense" else ls,
                marker="*" if method == "dense" else marker,
                ms=10 if method == "dense" else 5,
                capsize=3,
                lw=1.4,
                color=colours[method],
                label=f"{network.upper()}: {LABELS[method]}",
            )
    ax.set_xscale("log")
    ticks = sorted({r["budget_uj"] for r in rows if r["budget_uj"] is not None})
    dense = [r["energy_uj"][0] for r in rows if r["method"] == "dense"]
    ax.set_xticks(ticks + dense, [f"{t:g}" for t in ticks] + [f"{d:.3g}" for d in dense])
    ax.minorticks_off()
    ax.set_xlabel(f"energy per sample (µJ), validation set: exact count, {preset}, compute only")
    ax.set_ylabel("validation top-1 (%), mean ± std over seeds")
    ax.set_title("ANN against SNN at equal energy (digits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    own, args = parse_args(argv)
    from tqdm import tqdm

    cache = Path(args.output_dir)
    cache.mkdir(parents=True, exist_ok=True)

    def spec(network, method, seed, **extra):
        s = {"network": network, "method": RUN_METHOD[method], "base": acc.base_config(args, network, seed)}
        if method in WEIGHTING:
            s.update(preset=own.energy_preset, weighting=WEIGHTING[method])
        return s | extra | {"energy_method": method}

    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        # 1. calibration (seed 0): the sparsity -> energy curve of every method set by a sparsity
        matched = [(n, m) for n in args.networks for m in own.methods if m == "gmp"]
        jobs = {
            (n, m, level): pool.submit(acc.run_point, spec(n, m, 0, level=level), str(cache))
            for n, m in matched
            for level in own.calibration_levels
        }
        calibration: dict[tuple, list] = {key: [] for key in matched}
        for (n, m, _level), job in tqdm(jobs.items(), desc="calibrating", unit="run"):
            result = job.result()
            calibration[n, m].append((result["sparsity"], result["energy_uj"]))
        # 2. every budget over the seeds
        specs = []
        for n in args.networks:
            for m in own.methods:
                for seed in range(args.seeds):
                    if m == "dense":
                        specs.append(spec(n, m, seed))
                        continue
                    for budget in own.budgets:
                        if m in WEIGHTING:
                            specs.append(spec(n, m, seed, budget_uj=budget, level=None))
                            continue
                        level = level_for(calibration[n, m], budget)
                        if level is not None:  # outside the calibrated range: reported, not trained
                            specs.append(spec(n, m, seed, budget_uj=budget, level=level))
        jobs = [pool.submit(acc.run_point, s, str(cache)) for s in specs]
        results = [job.result() for job in tqdm(jobs, desc="training", unit="run")]

    rows = summarise(results, own.budgets)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    header = (
        f"Generated by `python benchmarks/energy_budget.py {command}` ({platform.platform()}, {os.cpu_count()} CPUs, "
        f"{args.jobs} jobs; {len(results)} runs of {sum(r['seconds'] for r in results) / len(results):.0f} s on "
        f"average, plus the calibration runs). {args.dataset}, {args.image_size}x{args.image_size}, width "
        f"{args.width}, {args.stem} stem, SNN T = {args.T} (IF, ADD); {args.epochs} epochs, batch {args.batch_size}, "
        f"SGD lr {args.lr} momentum 0.9, no weight decay, {args.lr_warmup_epochs} warm-up epoch(s) then cosine; "
        f"every pruning window ends at epoch {acc.window_end(args)}"
        + (", then the mask is fixed" if args.freeze_mask else "")
        + ("; BatchNorm statistics recomputed when it ends" if args.recalibrate_bn else "")
        + f". Energy: exact count, {own.energy_preset}, compute only, on the first {args.sops_batches} validation "
        "batches."
    )
    text = markdown(rows, calibration, header) + paired(results)
    print(text)
    if own.table:
        Path(own.table).parent.mkdir(parents=True, exist_ok=True)
        Path(own.table).write_text("# Accuracy against energy: ANN and SNN at equal energy (generated)\n\n" + text)
    if own.json:
        Path(own.json).write_text(
            json.dumps(
                {"rows": rows, "calibration": {f"{n}/{m}": p for (n, m), p in calibration.items()}, "runs": results},
                indent=1,
            )
        )
    if own.plot:
        plot(rows, own.plot, own.energy_preset)
    names = sorted({f"{acc.spec_key(r['spec'])}.json" for r in results})
    stale = acc.stale_runs(names, cache)
    if stale:
        print(f"warning: {len(stale)} of {len(names)} runs were trained by other snn_lats code", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
