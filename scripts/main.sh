#!/usr/bin/env bash
# Set up (if needed), run the main job (the default config, end to end) and build the
# HTML report. Extra arguments go to snakemake (e.g. --configfile config/quick.yaml, -n).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p results/logs
# The console gets the plan, one line per finished job with the count and share done, and any
# error with its job's log; each job's own progress bars and messages are in results/logs/<rule>/.
if ! .venv/bin/snakemake --quiet rules host "$@" 2>&1 | tee results/logs/main.log; then
    if grep -q "LockException\|cannot be locked" results/logs/main.log; then
        echo "ibdiv: the results directory is locked. If no other run is active, an earlier run was" \
             "killed: run 'bash scripts/main.sh --unlock', then rerun this command (killed jobs are redone)." >&2
    fi
    exit 1
fi
case " $* " in
    *" -n "*|*" --dry-run "*|*" --unlock "*) ;;  # nothing was built, so no report
    *) .venv/bin/snakemake "$@" --report results/report.html ;;
esac
