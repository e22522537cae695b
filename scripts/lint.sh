#!/usr/bin/env bash
# Lint (run by .ci/run before the tests): ruff over the Python code (config in pyproject.toml),
# then Snakemake's own linter over the workflow. One Snakemake lint is expected and explained:
# "PYTHONPATH used but not asserted with envvars": the Snakefile *sets* PYTHONPATH for the jobs
# (this checkout's src/), it does not ask the user for it, so `envvars:` would be wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
out=$(.venv/bin/snakemake --lint --configfile config/smoke.yaml 2>&1 || true)
unexpected=$(grep -E '^\s+\* ' <<<"$out" | grep -v 'Environment variable PYTHONPATH used but not asserted' || true)
if [ -n "$unexpected" ]; then
    echo "$out" >&2
    echo "lint.sh: snakemake --lint found the lints above" >&2
    exit 1
fi
echo "lint.sh: ruff and snakemake --lint clean (one explained lint: see scripts/lint.sh)"
