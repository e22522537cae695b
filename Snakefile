# ibdiv: information-bottleneck diagnostics of generative diversity.
# Thin entry point: config + schema validation, rule files, and the default target.
from snakemake.utils import min_version, validate

min_version("9.0")

# `--configfile config.quick.yaml` replaces config.yaml instead of merging into it, so
# a smaller config never inherits the default datasets.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    family="ar|mim|diffusion|independent|oracle",
    seed=r"\d+",
    point="|".join(POINTS),
    probe="|".join(config["probes"]) or "NONE",


include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
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
        "results/metrics.json",  # DVC's metrics and plots (dvc.yaml)
        expand("results/{dataset}/prior_curves.csv", dataset=DATASETS),
        expand("results/{dataset}/figures/samples", dataset=DATASETS),
        expand("results/{dataset}/figures/probes", dataset=DATASETS),
        # SHA-256 of every file of each unit (what the DVC stages ask for; compare two runs)
        expand("results/{dataset}/{unit}/manifest.json", dataset=DATASETS, unit=["priors", "samples", "probes"]),
