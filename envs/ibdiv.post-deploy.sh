#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the environment of envs/ibdiv.yaml right after creating
# it. animal-mnist declares TensorFlow as a dependency, but only its data files are used and a
# requirement line of an environment file cannot carry --no-deps: install it here without
# dependencies, hash-checked (pin and hash as in requirements-nodeps.lock; tests/test_envs.py).
set -euo pipefail
req=$(mktemp)
trap 'rm -f "$req"' EXIT
echo "animal-mnist==0.4 --hash=sha256:aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce" > "$req"
python -m pip install --no-deps --require-hashes -r "$req"
