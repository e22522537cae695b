# ibdiv: information-bottleneck diagnostics of generative diversity.
# Thin entry point: config + schema validation, rule files, and the default target.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Every rule runs with threads: 1. numpy's OpenBLAS fixes its thread count when numpy is first
# imported, before runlog.job() caps torch, so each job started one BLAS thread per core; with
# two jobs on two cores those threads spin against each other (measured: 400 small matmuls took
# 3.6 s instead of 0.2 s on a loaded 2-core machine: the suspect for the default DAG's system time).
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# glibc malloc serves blocks above its mmap threshold (128 KiB at first, raised as they are freed,
# never past 32 MiB) with fresh mmaps and gives the heap's top above its trim threshold back to the
# kernel: torch's training and sampling temporaries were mapped, unmapped and page-faulted back
# (zeroed) step after step (issue 26: 856 of the default DAG's 4,604 CPU-s were system time). Blocks
# below 256 MiB now come from the heap and freed memory stays there up to 256 MiB. Default-sized
# training and sampling (scripts/bench_families.py --samples 1000, one thread): system time
# 6.2 -> 0.4 CPU-s, page faults 4.2 M -> 0.17 M, peak RSS 686 -> 768 MB (docs/performance.md).
# Both are needed: setting either alone freezes the other at its small default (more faults).
# Allocation only: the numbers are unchanged (the smoke DAG's results are byte-identical).
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 * 2**20))
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(256 * 2**20))

# Jobs import `ibdiv` from this checkout's src/ (the code the rules declare as inputs), in the
# .venv and in a `--sdm conda` environment alike (that one has no install of the package).
_src = os.path.join(workflow.basedir, "src")
if _src not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_src, os.environ.get("PYTHONPATH")]))

# `--configfile config/quick.yaml` replaces config.yaml instead of merging into it, so
# a smaller config never inherits the default datasets.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# Every schema error at once, one dotted key a line, before any job (ibdiv.core.config).
from ibdiv.core.config import ConfigError, validate_config

try:
    validate_config(config)
except ConfigError as error:
    raise SystemExit(f"ibdiv: {error}") from None

# A result changed since its unit's manifest recorded it (truncated, edited, half-copied) is set
# aside and rebuilt, never trusted (ibdiv.pipeline.integrity).
from ibdiv.pipeline import integrity

for _manifest, _damaged in integrity.damaged_files().items():
    for _name, _moved in zip(_damaged, integrity.set_aside(_damaged)):
        print(f"ibdiv: {_name} differs from its manifest: set aside to {_moved}; it is rebuilt", file=sys.stderr)
    _manifest.unlink()  # a target: rebuilding it rebuilds the file (see ibdiv.pipeline.integrity)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    family="|".join(all_families()),
    seed=r"\d+",
    point="|".join(POINTS),
    probe="|".join(config["probes"]) or "NONE",


include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/pretrained.smk"
include: "workflow/rules/generators.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        expand("results/{dataset}/figures/tokenizer/examples.png", dataset=DATASETS),
        expand("results/{dataset}/tokens.npz", dataset=DATASETS),
        expand("results/{dataset}/tokenizer/evaluation.json", dataset=DATASETS),
        expand("results/{dataset}/figures/tokenizer/reconstructions.png", dataset=DATASETS),
        expand("results/tables/{dataset}/generators.csv", dataset=DATASETS),
        expand("results/tables/{dataset}/classification_stability.csv", dataset=DATASETS),
        [f"results/tables/{d}/oracle_validation.{ext}" for d in DATASETS if "oracle" in families_of(d) for ext in ("csv", "png")],
        expand("results/{dataset}/figures/diagnostics/{name}.png", dataset=DATASETS, name=DIAGNOSTIC_FIGURES),
        "results/summary.json",
        expand("results/tables/{dataset}/findings/labels.csv", dataset=DATASETS),  # the report's landing tables
        "results/calibration/labels.png",
        "results/metrics.json",  # DVC's metrics and plots (dvc.yaml)
        expand("results/{dataset}/prior_curves.csv", dataset=DATASETS),
        expand("results/{dataset}/figures/samples", dataset=DATASETS),
        expand("results/{dataset}/figures/probes", dataset=DATASETS),
        # SHA-256 of every file of each unit (what the DVC stages ask for; compare two runs)
        expand("results/{dataset}/{unit}/manifest.json", dataset=DATASETS, unit=["priors", "samples", "probes"]),
