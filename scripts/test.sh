#!/usr/bin/env bash
# The test command of README.md (and of CI): set up .venv, lint, then run the whole suite.
# Extra arguments go to pytest, e.g. the quick run without the minute-long end-to-end tests:
#   bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
