#!/usr/bin/env bash
# Create .venv and install the locked stack. Idempotent: reinstalls only when a lock file,
# pyproject.toml or this script changed since the last successful install.
#   requirements-nodeps.lock  pip itself (first, so the pinned pip does the rest) and
#                             animal-mnist (it declares TensorFlow; only its data files are used)
#   requirements.lock         every other package, pinned with hashes (scripts/lock.sh makes it
#                             from requirements.txt); --no-deps: the lock is the whole closure
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
    "${pip[@]}" --no-deps --require-hashes -r requirements-nodeps.lock
    "${pip[@]}" --no-deps --require-hashes -r requirements.lock
    "${pip[@]}" --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
