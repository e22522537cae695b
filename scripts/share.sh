#!/usr/bin/env bash
# Version and share results with DVC (docs/sharing.md). Snakemake computes; DVC records
# what was computed (dvc.lock), pushes it to the remote, and restores it in another clone.
#   record [message]  after a complete run: hash every stage's outputs into dvc.lock, git-commit it
#   push              upload the recorded outputs (and DVC's run cache) to the default remote
#   pull              download them, then make Snakemake agree (DVC does not keep timestamps)
#   exp [dvc exp run args]  an experiment: `dvc exp run` with `-S key=value` read as
#                     `-S config.yaml:key=value` (config.yaml is the params file; DVC's default,
#                     params.yaml, cannot be a link to it: DVC reads a link's target at git revisions)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

case "${1:-}" in
  record)
    if ! snakemake --dry-run 2>&1 | grep -q "Nothing to be done"; then
      echo "share.sh record: the workflow has work left; finish it first (snakemake --dry-run lists it)" >&2
      exit 1
    fi
    dvc commit --force --quiet
    git add dvc.lock
    git diff --cached --quiet || git commit --quiet -m "${2:-Record results}"
    ;;
  push)
    dvc push --run-cache --quiet
    ;;
  pull)
    dvc pull --quiet
    dvc status --quiet || { echo "share.sh pull: workspace differs from dvc.lock after pulling" >&2; exit 1; }
    # Pulled files get fresh, arbitrary timestamps; touching them in DAG order tells Snakemake
    # that everything is up to date (the content is what dvc.lock recorded).
    mkdir -p results/logs
    snakemake --touch --forceall --cores 1 > results/logs/share-pull-touch.log 2>&1 \
        || { echo "share.sh pull: snakemake --touch failed, see results/logs/share-pull-touch.log" >&2; exit 1; }
    ;;
  exp)
    shift
    in_config() {  # key=value -> config.yaml:key=value; a value naming its file is kept
      if [[ "${1%%=*}" == *:* ]]; then echo "$1"; else echo "config.yaml:$1"; fi
    }
    args=()
    while (($#)); do
      case "$1" in
        -S|--set-param) args+=("$1" "$(in_config "${2:?share.sh exp: $1 needs key=value}")"); shift 2 ;;
        --set-param=*) args+=(--set-param "$(in_config "${1#--set-param=}")"); shift ;;
        -S?*) args+=(-S "$(in_config "${1#-S}")"); shift ;;
        *) args+=("$1"); shift ;;
      esac
    done
    exec dvc exp run "${args[@]}"
    ;;
  *)
    echo "usage: bash scripts/share.sh record [message] | push | pull | exp [dvc exp run args]" >&2
    exit 2
    ;;
esac
