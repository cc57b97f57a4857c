#!/usr/bin/env bash
# The main job of README.md: set up .venv, then train a small SEW ResNet-18 with LATS on the
# offline handwritten digits, on CPU, and print accuracy, weight sparsity, firing rates and the
# synaptic-operation table. The run directory (TensorBoard log, plots, checkpoints, summary.json)
# is printed at the end. Extra arguments go to `snn-lats train`, e.g. the unpruned baseline:
#   bash scripts/demo.sh --prune none --output-dir runs/demo_dense
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
out="runs/demo_digits_$(date +%Y%m%d-%H%M%S)"
exec .venv/bin/snn-lats train --recipe models/demo_digits.yaml --output-dir "$out" "$@"
