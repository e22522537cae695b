# Helpers shared by the rule files: axes from config, code inputs, log/benchmark paths.

DATASETS = list(config["datasets"])


wildcard_constraints:
    dataset="|".join(DATASETS),


def dataset_section(section):
    """Params function: one section of `datasets.<dataset>` (narrow params => narrow reruns)."""

    def get(wildcards):
        return config["datasets"][wildcards.dataset][section]

    return get


def dataset_source(wildcards):
    """The dataset entry without the tokenizer/classifier sections (what prepare_data reads)."""
    spec = config["datasets"][wildcards.dataset]
    return {k: v for k, v in spec.items() if k not in ("tokenizer", "classifier")}


def code(*modules):
    """Library modules a rule runs, declared as inputs so that a real edit (checksum)
    reruns the rule while a mere timestamp change does not (see profiles/default)."""
    shared = ("io", "runlog", "config")
    return [f"src/ibdiv/{m}.py" for m in dict.fromkeys((*modules, *shared))]


def logfile(rule):
    return f"results/logs/{rule}/{{dataset}}.log"


def benchfile(rule):
    return f"results/benchmarks/{rule}/{{dataset}}.tsv"
