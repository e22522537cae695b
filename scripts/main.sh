#!/usr/bin/env bash
# Set up (if needed), run the main job (the default config, end to end) and build the
# HTML report. Extra arguments go to snakemake (e.g. --configfile config.quick.yaml, -n).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/snakemake "$@"
case " $* " in
    *" -n "*|*" --dry-run "*) ;;  # a dry run builds nothing, so no report
    *) .venv/bin/snakemake "$@" --report results/report.html ;;
esac
