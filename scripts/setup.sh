#!/usr/bin/env bash
# Create .venv and install the locked stack. Idempotent: reinstalls only when a lock file,
# pyproject.toml or this script changed since the last successful install.
#   requirements.lock         every package but two, pinned with hashes (scripts/lock.sh
#                             makes it from requirements.txt)
#   requirements-nodeps.lock  pip itself and animal-mnist, without dependencies (animal-mnist
#                             declares TensorFlow; only its data files are used)
# then this package in editable mode, built with the locked setuptools (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
want=$(cat requirements-nodeps.lock requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
stamp=.venv/.ibdiv-install-stamp
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    pip=(.venv/bin/python -m pip install --quiet)
    "${pip[@]}" --require-hashes -r requirements.lock
    "${pip[@]}" --no-deps --require-hashes -r requirements-nodeps.lock
    "${pip[@]}" --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
