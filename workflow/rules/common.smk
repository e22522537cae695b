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


SEEDS = [str(s) for s in config["seeds"]]
POINTS = ["neutral", "standard"]


def families_of(dataset):
    """Configured families, plus the oracle where the dataset's true generator is known."""
    oracle = ["oracle"] if config["datasets"][dataset]["source"] == "shapes" else []
    return list(config["families"]) + oracle


def points_of(family):
    return ["neutral"] if family == "oracle" else POINTS


def sample_runs(dataset):
    """(family, seed, point) of every baseline sample cache of a dataset."""
    return [(f, s, p) for f in families_of(dataset) for s in SEEDS for p in points_of(f)]


def sample_paths(pattern, dataset):
    return [pattern.format(dataset=dataset, family=f, seed=s, point=p) for f, s, p in sample_runs(dataset)]


def sampler_model(wildcards):
    """The model a sampler reads: the prior checkpoint, or for the oracle the tokenizer."""
    if wildcards.family == "oracle":
        return f"results/{wildcards.dataset}/tokenizer/model.pt"
    return f"results/{wildcards.dataset}/priors/{wildcards.family}/seed{wildcards.seed}/model.pt"


def point_knobs(wildcards):
    if wildcards.family == "oracle":
        return {}
    return config["families"][wildcards.family][wildcards.point]


wildcard_constraints:
    family="ar|mim|diffusion|independent|oracle",
    seed=r"\d+",
    point="neutral|standard",


def run_logfile(rule):
    return f"results/logs/{rule}/{{dataset}}_{{family}}_seed{{seed}}_{{point}}.log"


def run_benchfile(rule):
    return f"results/benchmarks/{rule}/{{dataset}}_{{family}}_seed{{seed}}_{{point}}.tsv"


def probe_spec(wildcards):
    return config["probes"][wildcards.probe]
