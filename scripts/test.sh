#!/usr/bin/env bash
# Set up (if needed) and run the test suite on both cores (pytest-xdist; a worker per core, each
# test file on one worker so that its module fixtures are built once, handed out in the order
# tests/conftest.py gives: the two whole-DAG runs first, one per worker). Extra arguments go to
# pytest, e.g. the inner loop:  bash scripts/test.sh -m "not e2e and not slow"
# Tiers (markers, pyproject.toml): e2e (whole Snakemake runs), slow (> ~10 s each), pretrained
# (the diffusers / LlamaGen backends). IBDIV_TEST_WORKERS=0 runs everything in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
workers=${IBDIV_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
    .venv/bin/python -m pytest "$@"
else
    .venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
fi
