#!/usr/bin/env bash
# Create .venv and install the locked stack. Idempotent: reinstalls only when a lock file,
# pyproject.toml or this script changed since the last successful install.
#   requirements-nodeps.lock  pip itself (first, so the pinned pip does the rest) and
#                             animal-mnist (it declares TensorFlow; only its data files are used)
#   requirements.lock         every other package, pinned with hashes (scripts/lock.sh makes it
#                             from requirements.txt); --no-deps: the lock is the whole closure.
#   requirements-torch-cpu.lock  tried before it: torch's CPU build where pip can find it (this
#                             machine's disk, or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu);
#                             elsewhere requirements.lock's torch==2.13.0 takes PyPI's build: CPU on
#                             macOS / Windows, CUDA on Linux, which then also needs
#   requirements-cuda.lock    its CUDA libraries (installed only for a torch that is not +cpu)
# then this package in editable mode, built with the locked setuptools (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
want=$(cat requirements-nodeps.lock requirements-torch-cpu.lock requirements.lock requirements-cuda.lock pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
stamp=.venv/.ibdiv-install-stamp
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    pip=(.venv/bin/python -m pip install --quiet)
    "${pip[@]}" --no-deps --require-hashes -r requirements-nodeps.lock
    if ! "${pip[@]}" --no-deps --require-hashes -r requirements-torch-cpu.lock 2>/dev/null; then
        echo "setup: torch's CPU wheel is on no index pip knows; requirements.lock takes PyPI's build" \
             "(for the CPU build: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)"
    fi
    "${pip[@]}" --no-deps --require-hashes -r requirements.lock
    torch_version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("torch"))')
    if [ "$(uname -s)" = Linux ] && [[ "$torch_version" != *+cpu ]]; then
        echo "setup: torch $torch_version is PyPI's CUDA build; installing its CUDA libraries (requirements-cuda.lock)"
        "${pip[@]}" --no-deps --require-hashes -r requirements-cuda.lock
    fi
    "${pip[@]}" --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
