#!/usr/bin/env bash
# Create (or reuse) .venv and install snn-lats with the exact tested set of dependencies.
# The constraints file pins the local CPU torch 2.13.0 wheel; without it pip would pull a
# multi-GB CUDA torch from the registry.
# Where apt-get and root are available, also install the Fashion-MNIST files (Debian's
# dataset-fashion-mnist, 30 MB, into /usr/share/datasets/fashion-mnist/: the default --data-path
# of --dataset fashion-mnist). Elsewhere that step is skipped quietly; tests that read the real
# set then skip. SNN_LATS_NO_APT=1 skips it too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.snn-lats-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,peers]"
    # syops 0.0.5 pins spikingjelly<=0.0.0.0.12 and sinabs 3.1.3 pins nir<=1.0.4 (the NIR export
    # needs 1.0.8); both run on this stack: install them without deps (their others are in `peers`).
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps syops==0.0.5 sinabs==3.1.3
    touch "$stamp"
fi
# With SNN_LATS_WITH_SJ2=1 (scripts/test.sh sets it), a second environment with SpikingJelly 2.x
# instead of 0.0.0.0.14 (.venv-sj2), where the tests run again. Where it cannot be built, that
# run skips with a line saying so.
if [ -n "${SNN_LATS_WITH_SJ2:-}" ]; then
    stamp2=.venv-sj2/.snn-lats-installed
    if [ ! -f "$stamp2" ] || [ pyproject.toml -nt "$stamp2" ] || [ constraints.txt -nt "$stamp2" ] \
        || [ constraints-spikingjelly2.txt -nt "$stamp2" ]; then
        rm -rf .venv-sj2
        if ! { "$PYTHON" -m venv .venv-sj2 \
            && grep -v '^spikingjelly==' constraints.txt > .venv-sj2/constraints.txt \
            && .venv-sj2/bin/pip install --quiet --disable-pip-version-check -c .venv-sj2/constraints.txt \
                -c constraints-spikingjelly2.txt -e . pytest pytest-timeout scipy nir nirtorch h5py \
            && touch "$stamp2"; } >/dev/null 2>&1; then
            rm -rf .venv-sj2
            echo "setup_env.sh: could not build .venv-sj2 (SpikingJelly 2.0); its test run will skip" >&2
        fi
    fi
fi
fashion=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$fashion" ] && [ -z "${SNN_LATS_NO_APT:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # apt-get update first: without it the package list may not know the package yet.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } \
        >/dev/null 2>&1; then
        echo "setup_env.sh: could not install dataset-fashion-mnist (apt-get); Fashion-MNIST tests will skip" >&2
    fi
fi
