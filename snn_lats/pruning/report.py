"""Sparsity of the pruned weights: exact zeros of ``w = S_d(θ)``, per layer and over the model."""

from __future__ import annotations

import torch
from torch import nn

from snn_lats.pruning.parametrization import pruned_layers, select_layers, soft_threshold_of
from snn_lats.report import Report

__all__ = ["SparsityReport", "sparsity_report"]


class SparsityReport(Report):
    """Rows ``name, shape, numel, zeros, density, threshold``; totals with two denominators:

    - ``numel``, ``zeros``, ``sparsity``: over the pruned layers' weights only (the rows);
    - ``all_weights_numel``, ``all_weights_zeros``, ``all_weights_sparsity``: over every Conv and
      Linear weight of the model, pruned or kept dense (biases and normalisation layers are not
      synaptic weights and count in neither).

    ``threshold`` is None for a layer without a soft threshold, e.g. after :func:`finalize`.
    """

    @property
    def global_sparsity(self) -> float:
        """Exact zeros over the pruned layers' weights (the ``sparsity`` total)."""
        return float(self.totals["sparsity"])

    @property
    def all_weights_sparsity(self) -> float | None:
        """Exact zeros over every Conv/Linear weight (None in a report from before it was counted)."""
        value = self.totals.get("all_weights_sparsity")
        return None if value is None else float(value)

    def describe(self) -> str:
        """One line naming both denominators, e.g. ``weight sparsity 90.00% of the 20 pruned layers'
        174,552 weights, 89.67% of all 175,192 weights``."""
        if self.rows and all(r.get("threshold") is None for r in self.rows):  # unpruned, or finalized: no threshold
            return (
                f"weight sparsity {100 * self.global_sparsity:.2f}% of the {self.totals['layers']} layers' "
                f"{self.totals['numel']:,} weights (no soft threshold)"
            )
        line = (
            f"weight sparsity {100 * self.global_sparsity:.2f}% of the {self.totals['layers']} pruned layers' "
            f"{self.totals['numel']:,} weights"
        )
        if self.all_weights_sparsity is not None:
            line += f", {100 * self.all_weights_sparsity:.2f}% of all {self.totals['all_weights_numel']:,} weights"
        return line

    def layer_sparsity(self) -> dict[str, float]:
        """The fraction of exact zeros of every layer's weight, by name."""
        return {r["name"]: r["zeros"] / r["numel"] if r["numel"] else 0.0 for r in self.rows}

    @property
    def empty_layers(self) -> list[str]:
        """Layers with every weight pruned: they pass nothing on."""
        return [r["name"] for r in self.rows if r["numel"] and r["zeros"] == r["numel"]]

    def warning(self) -> str | None:
        """A line for the end of a run when a layer is pruned away, else None.

        A global threshold can empty a small layer at high sparsity (the classifier of a tiny
        network at 99 %: chance accuracy), which the global sparsity alone does not show.
        """
        empty = self.empty_layers
        if not empty:
            return None
        return (
            f"warning: every weight is pruned in {', '.join(empty)}; such a layer passes "
            "nothing on (--dense-first-last keeps the first conv and the classifier dense)"
        )


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Sparsity of every soft-thresholded weight of ``model``.

    A model without soft thresholds (never pruned, or finalized) is reported over the weights
    :func:`attach` would select by default (every Conv and Linear weight).
    """
    layers = pruned_layers(model) or select_layers(model)
    rows = []
    for name, module in layers.items():
        weight = module.weight
        p = soft_threshold_of(module)
        numel = weight.numel()
        zeros = int((weight == 0).sum())
        rows.append(
            {
                "name": name,
                "shape": tuple(weight.shape),
                "numel": numel,
                "zeros": zeros,
                "density": 1.0 - zeros / numel if numel else 1.0,
                "threshold": p.current_threshold() if p is not None else None,
            }
        )
    numel = sum(r["numel"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    every = select_layers(model)  # every Conv/Linear weight, pruned or not
    all_numel = sum(m.weight.numel() for m in every.values())
    all_zeros = sum(int((m.weight == 0).sum()) for m in every.values())
    return SparsityReport(
        title="Sparsity (exact zeros of the pruned weights)",
        rows=rows,
        totals={
            "layers": len(rows),
            "numel": numel,
            "zeros": zeros,
            "sparsity": zeros / numel if numel else 0.0,
            "all_weights_numel": all_numel,
            "all_weights_zeros": all_zeros,
            "all_weights_sparsity": all_zeros / all_numel if all_numel else 0.0,
        },
        notes=[
            f"sparsity: zeros / the weights of the {len(rows)} pruned layers; all_weights_sparsity: zeros / every "
            "Conv and Linear weight of the model, pruned or dense (biases and norm layers count in neither)"
        ],
    )
