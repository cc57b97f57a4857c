"""The subcommands of ``snn-lats`` and their one-line help: all the top-level parser needs, so
``snn-lats --help`` answers without importing torch or any subcommand."""

__all__ = ["SUBCOMMANDS"]

# In the order `snn-lats --help` lists them; each is the module snn_lats.cli.<name>.
SUBCOMMANDS: dict[str, str] = {
    "train": "train and prune a network (torchrun for several processes)",
    "evaluate": "accuracy, sparsity (and --sops) of a checkpoint",
    "export": "write the finalized pruned model (safetensors, sparse safetensors, NIR) + export.json",
    "compare": "compare ANN and SNN runs (accuracy, sparsity, activity, ACs/MACs, energy, plots)",
    "sops": "synaptic operations (mask-aware), firing rates and energy of a network",
}
