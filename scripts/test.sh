#!/usr/bin/env bash
# The test command of README.md (and of CI): set up .venv, lint, then run the whole suite; then
# the networks, pruning, estimators, engine and export tests again under SpikingJelly 2.x
# (.venv-sj2), where scripts/setup_env.sh could build it.
# Extra arguments go to pytest and skip the second run, e.g. the quick run without the
# minute-long end-to-end tests:
#   bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
    SNN_LATS_WITH_SJ2=1 bash scripts/setup_env.sh
else
    bash scripts/setup_env.sh
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"
if [ "$#" -gt 0 ]; then
    exit 0
elif [ ! -x .venv-sj2/bin/python ]; then
    echo "scripts/test.sh: no .venv-sj2 (see scripts/setup_env.sh): the SpikingJelly 2.x run is skipped"
    exit 0
fi
echo "== again under SpikingJelly $(.venv-sj2/bin/python -c 'import importlib.metadata as m; print(m.version("spikingjelly"))')"
# The slow end-to-end runs add nothing the fast ones do not check for this difference. The
# peers' packages pin SpikingJelly 0.0.0.0.x and are not installed there: their tests skip, and
# those against SpikingJelly 2.x's own op_counter and NIR importer run.
exec .venv-sj2/bin/python -m pytest -q -m "not slow" tests/test_networks*.py tests/test_pruning*.py \
    tests/test_estimators*.py tests/test_engine*.py tests/test_deploy.py
