#!/usr/bin/env bash
# The GPU check (docs/benchmarks.md#gpu): every part timed out and reported on its own, the reports
# (report.json, report.md, device_check.log) in OUT_DIR. On the GPU machine it runs that machine's
# python3 (its torch, CuPy and pytest) and installs spikingjelly from .device/ and this project
# --no-deps; a dry run (--dry-run: toy sizes, CPU) uses .venv when there is one.
#   bash scripts/device_check.sh OUT_DIR [--dry-run] [--only PART ...] [--limit PART=SECONDS ...]
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [[ " $* " == *" --dry-run "* && -z "${PYTHON:-}" && -x .venv/bin/python ]]; then
    python=.venv/bin/python
fi
exec "$python" scripts/device_check.py "$@"
