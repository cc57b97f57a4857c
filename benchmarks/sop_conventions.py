"""Every tool and every convention on the same networks and images: the table of docs/benchmarks.md.

Networks (the demo's architectures, 32x32 digits, 10 classes): a small CNN (ResNet-18, width 16)
dense and pruned (90 % of each layer's weights zeroed by magnitude, or a trained checkpoint), and
the demo SEW ResNet-18 (width 16, T = 4, ADD; random weights, or a trained checkpoint). Each is
counted on the same validation batches by SynapticOpCounter under every convention and by the
peers' own packages where installed (NeuroBench 2.3.0, syops 0.0.5, sinabs 3.1.3); a peer that
fails says why. Energy = ACs x 0.9 pJ + MACs x 4.6 pJ (45 nm fp32) per sample for every row, and
with memory traffic (Lemaire et al. 2022) for ours. With ``--ann``/``--snn`` checkpoints (e.g.
``snn-lats train --recipe models/demo_digits.yaml``) it also gives the ANN/SNN energy ratio of the
two under each convention, compute only and with memory traffic, and the SNN fed a static batch
against the same images repeated T times.

    .venv/bin/python benchmarks/sop_conventions.py --batches 2 -b 16
    .venv/bin/python benchmarks/sop_conventions.py --ann runs/ann_lats/model_best.pth --snn runs/snn_lats/model_best.pth
"""

from __future__ import annotations

import argparse
import io
import warnings

import torch
from torch import nn

from snn_lats.data import build_datasets, build_loaders
from snn_lats.engine.model import build_model_from_checkpoint
from snn_lats.engine.recipe import TrainConfig
from snn_lats.estimators import CONVENTIONS, SynapticOpCounter
from snn_lats.estimators.energy import energy_pj
from snn_lats.networks import create

ORACLE = {  # what each of our conventions is checked against (tests/test_estimators_*.py)
    "exact": "brute force sum(conv(x, 1[w!=0]))",
    "neurobench": "neurobench 2.3.0 package",
    "syops": "syops 0.0.5 package (torch-typed model)",
    "sinabs": "sinabs 3.1.3 hooks (4-D inputs)",
    "paper": "closed form fr x T x FLOPs",
}


def batches_of(args) -> list[torch.Tensor]:
    config = TrainConfig(dataset="digits", image_size=32, batch_size=args.batch_size, workers=0)
    _, val_set, _ = build_datasets(config, train=False)
    _, loader = build_loaders(None, val_set, args.batch_size, 0, seed=0)
    out = []
    for i, (images, _, _) in enumerate(loader):
        if i == args.batches:
            break
        out.append(images)
    return out


def magnitude_prune(model: nn.Module, fraction: float) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                w[w.abs() <= w.abs().flatten().quantile(fraction)] = 0
    return model


def networks(args) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    nets = {}
    if args.ann:
        nets["CNN (trained, pruned)"] = build_model_from_checkpoint(args.ann, "cpu")[0]
    else:
        nets["CNN dense"] = create("resnet18", num_classes=10, width=16, stem="imagenet")
        nets["CNN 90% pruned"] = magnitude_prune(create("resnet18", num_classes=10, width=16, stem="imagenet"), 0.9)
    if args.snn:
        nets["SEW ResNet demo (trained)"] = build_model_from_checkpoint(args.snn, "cpu")[0]
    else:
        nets["SEW ResNet demo"] = create("sew_resnet18", num_classes=10, width=16, stem="imagenet", T=4, cnf="ADD")
    return {k: v.eval() for k, v in nets.items()}


def ours(model, batches, convention):
    with torch.no_grad(), SynapticOpCounter(model, convention=convention) as counter:
        for x in batches:
            model(x)
    return counter.report()


def neurobench(model, batches):
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    wrapped = TorchModel(model)
    wrapped.register_hooks()
    metric = SynapticOperations()
    with torch.no_grad():
        for x in batches:
            metric(wrapped, wrapped(x), (x, None))
            wrapped.reset_hooks()
    wrapped.close_hooks()
    r = metric.compute()
    return r["Effective_ACs"], r["Effective_MACs"], f"Dense {r['Dense']:.4g}"


def syops(model, batches):
    from syops import get_model_complexity_info

    loader = [(x, torch.zeros(len(x))) for x in batches]
    ops, _ = get_model_complexity_info(
        model, tuple(batches[0].shape[1:]), dataloader=loader, print_per_layer_stat=False, as_strings=False,
        ost=io.StringIO(),
    )  # fmt: skip
    return float(ops[1]), float(ops[2]), ""


def sinabs(model, batches):
    from sinabs import hooks

    total, samples = 0.0, 0
    handles = []

    def record(hook):
        def run(module, inputs, output):
            nonlocal total
            hook(module, inputs, output)
            total += float(module.hook_data["layer_synops_per_timestep"]) * inputs[0].shape[0]

        return run

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(record(hooks.conv_layer_synops_hook)))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(record(hooks.linear_layer_synops_hook)))
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
                samples += len(x)
    finally:
        for h in handles:
            h.remove()
    return total / samples, 0.0, "synops (all as ACs)"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("-b", "--batch-size", type=int, default=16)
    parser.add_argument("--ann", help="a trained ANN checkpoint (replaces the random dense and pruned CNNs)")
    parser.add_argument("--snn", help="a trained SNN checkpoint (replaces the random SEW ResNet)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    batches = batches_of(args)
    nets = networks(args)
    rows = []
    print("| network | tool or convention | ACs / sample | MACs / sample | energy (uJ) | with memory (uJ) | oracle |")
    print("|---|---|---|---|---|---|---|")
    reports = {}
    for name, model in nets.items():
        for convention in CONVENTIONS:
            r = ours(model, batches, convention)
            reports[name, convention] = r
            row = {
                "network": name,
                "tool": f"snn_lats {convention}",
                "acs": r.acs_per_sample,
                "macs": r.macs_per_sample,
                "energy_uj": r.energy_pj() / 1e6,
                "memory_uj": r.memory_energy_pj()["total"] / 1e6,
                "oracle": ORACLE[convention],
            }
            rows.append(row)
        for tool, fn in (("neurobench 2.3.0", neurobench), ("syops 0.0.5", syops), ("sinabs 3.1.3", sinabs)):
            try:
                acs, macs, note = fn(model, batches)
                rows.append(
                    {"network": name, "tool": tool, "acs": acs, "macs": macs, "energy_uj": energy_pj(acs, macs) / 1e6,
                     "memory_uj": None, "oracle": note}
                )  # fmt: skip
            except Exception as error:  # a peer that cannot count this network: say why
                message = f"{type(error).__name__}: {str(error).splitlines()[0][:90]}"
                rows.append({"network": name, "tool": tool, "acs": None, "macs": None, "energy_uj": None,
                             "memory_uj": None, "oracle": message})  # fmt: skip
    for r in rows:
        cells = [f"{r[k]:.4g}" if isinstance(r[k], float) else "-" if r[k] is None else str(r[k]) for k in
                 ("acs", "macs", "energy_uj", "memory_uj")]  # fmt: skip
        print(f"| {r['network']} | {r['tool']} | {' | '.join(cells)} | {r['oracle']} |")

    snn_name = next(n for n in nets if n.startswith("SEW"))
    ann_name = next(n for n in nets if n.startswith("CNN") and "dense" not in n)
    print(f"\nANN/SNN energy ratio ({ann_name} over {snn_name}), 45 nm fp32:")
    for convention in CONVENTIONS:
        a, s = reports[ann_name, convention], reports[snn_name, convention]
        compute = a.energy_pj() / s.energy_pj()
        memory = a.memory_energy_pj()["total"] / s.memory_energy_pj()["total"]
        print(f"  {convention:10s} compute only {compute:6.3f}   with memory traffic {memory:6.3f}")
    snn = nets[snn_name]
    T = snn.T
    static = ours(snn, batches, "exact")
    repeated = ours(snn, [x.unsqueeze(0).repeat(T, 1, 1, 1, 1) for x in batches], "exact")
    paper_static = ours(snn, batches, "paper")
    paper_repeated = ours(snn, [x.unsqueeze(0).repeat(T, 1, 1, 1, 1) for x in batches], "paper")
    print(
        f"\n{snn_name}, static [N,C,H,W] against repeated [T,N,C,H,W] input (per sample):\n"
        f"  exact: {static.macs_per_sample:.4g} vs {repeated.macs_per_sample:.4g} MACs, "
        f"{static.energy_pj() / 1e6:.4g} vs {repeated.energy_pj() / 1e6:.4g} uJ\n"
        f"  paper: {paper_static.macs_per_sample:.4g} vs {paper_repeated.macs_per_sample:.4g} MACs, "
        f"{paper_static.energy_pj() / 1e6:.4g} vs {paper_repeated.energy_pj() / 1e6:.4g} uJ"
    )
    return rows


if __name__ == "__main__":
    main()
