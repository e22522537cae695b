#!/usr/bin/env bash
# Set up (if needed) and run the main job: the default config, end to end.
# Extra arguments go to snakemake (e.g. --configfile config.quick.yaml, -n).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/snakemake "$@"
