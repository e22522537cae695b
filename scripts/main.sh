#!/usr/bin/env bash
# Set up (if needed), run the main job (the default config, end to end) and build the
# HTML report. Extra arguments go to snakemake (e.g. --configfile config/quick.yaml, -n).
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
    *" -h "*|*" --help "*)
        cat <<'USAGE'
usage: bash scripts/main.sh [SNAKEMAKE ARGUMENTS...]

Sets up .venv (first run, or when a lock file changed), runs the whole DAG on config.yaml
and writes the HTML report. Tests: bash scripts/test.sh [PYTEST ARGUMENTS...].

  --configfile config/smoke.yaml     a small config instead of config.yaml (see config/ and docs/config.md):
                                     smoke (minutes), quick, pretrained-smoke, pretrained (GPU, your checkpoints)
  -n                                 plan only: list the jobs that would run, run none
  --unlock                           after a killed run, release the results directory
  any other snakemake option         e.g. --cores 1, --forcerun RULE, --profile profiles/slurm

Results: results/ (report: results/report.html; summary: results/summary.json).
Logs: results/logs/main.log (this console), results/logs/<rule>/ (each job's progress).
Docs: README.md and docs/.
USAGE
        exit 0 ;;
esac
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
    *) .venv/bin/snakemake "$@" --report results/report.html --report-stylesheet workflow/report/style.css ;;
esac
