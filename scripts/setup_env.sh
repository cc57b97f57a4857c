#!/usr/bin/env bash
# Create (or reuse) .venv and install snn-lats with the exact tested set of dependencies.
# The constraints file pins the local CPU torch 2.13.0 wheel; without it pip would pull a
# multi-GB CUDA torch from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.snn-lats-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,peers]"
    # syops 0.0.5 pins spikingjelly<=0.0.0.0.12; its code runs on 0.0.0.0.14: install it without deps.
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps syops==0.0.5
    touch "$stamp"
fi
