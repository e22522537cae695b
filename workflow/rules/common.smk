# Helpers shared by the rule files: axes from config, code inputs, log/benchmark paths.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # this checkout's library (codegraph: stdlib only)
from ibdiv.codegraph import code_files

sys.path.pop(0)

DATASETS = list(config["datasets"])
SEEDS = [str(s) for s in config["seeds"]]
POINTS = ["neutral", "standard"]

# Where training and sampling jobs compute (DESIGN §10): an execution setting, given as
# `snakemake --config device=cuda` (or in a profile), not science in config.yaml. A param, so that
# switching devices reruns those jobs (the arithmetic differs); cuda jobs declare one `gpu` for
# cluster profiles to place them (auto takes a GPU only where the job happens to land on one).
DEVICE = config.get("device", "cpu")


def gpus(wildcards):
    """GPUs a training or sampling job asks for (the oracle renders with numpy on the CPU)."""
    return 1 if DEVICE == "cuda" and wildcards.family != "oracle" else 0


def check_settings_against_data():
    """Settings that depend on the data (matched N per class vs held-out images, token grid vs
    image size, ...) fail here, before any job, naming the key to change (ibdiv.preflight:
    the images per class are read without building the datasets; no job imports it)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # this checkout's library
    try:
        from ibdiv.preflight import check_dataset_settings, known_class_counts
    except ImportError:  # a bare Snakemake (e.g. --sdm conda without the package): jobs still fail later
        return
    finally:
        sys.path.pop(0)
    counts = {d: known_class_counts(config["datasets"][d], f"data/prepared/{d}.npz") for d in DATASETS}
    check_dataset_settings(config, counts)


check_settings_against_data()


def dataset_section(section):
    """Params function: one section of `datasets.<dataset>` (narrow params => narrow reruns)."""

    def get(wildcards):
        return config["datasets"][wildcards.dataset][section]

    return get


def dataset_source(wildcards):
    """The dataset entry without the tokenizer/classifier sections (what prepare_data reads)."""
    spec = config["datasets"][wildcards.dataset]
    return {k: v for k, v in spec.items() if k not in ("tokenizer", "classifier")}


def script_inputs(name):
    """The adapter `workflow/scripts/<name>.py` and every `ibdiv` file it imports, directly or
    through the package (read with ast by ibdiv.codegraph, not typed here, so they cannot drift
    from the code). Declared as inputs so that a real edit (checksum) reruns the rule while a
    mere timestamp change does not (see profiles/default)."""
    script = f"workflow/scripts/{name}.py"
    root = Path(workflow.basedir).resolve()
    code = [str(path.relative_to(root)) for path in code_files(root / script, root / "src")]
    return {"script": script, "code": code}


def logfile(rule):
    return f"results/logs/{rule}/{{dataset}}.log"


def benchfile(rule):
    return f"results/benchmarks/{rule}/{{dataset}}.tsv"


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


def run_logfile(rule):
    return f"results/logs/{rule}/{{dataset}}_{{family}}_seed{{seed}}_{{point}}.log"


def run_benchfile(rule):
    return f"results/benchmarks/{rule}/{{dataset}}_{{family}}_seed{{seed}}_{{point}}.tsv"


def probe_spec(wildcards):
    return config["probes"][wildcards.probe]


def prior_runs():
    """(family, seed) of every trained prior (the oracle is not trained)."""
    return [(f, s) for f in config["families"] for s in SEEDS]


def generator_table_inputs(wildcards):
    d = wildcards.dataset
    return {
        "priors": [f"results/{d}/priors/{f}/seed{s}/metrics.json" for f in config["families"] for s in SEEDS],
        "baseline": f"results/{d}/samples/measure.json",
        "classifier": f"results/{d}/classifier/metrics.json",
    }


def probe_runs(dataset, probe):
    """(family, seed, point) the probe applies to: perturbing probes need embeddings (not the
    independent counts nor the oracle); a knob sweep needs knobs (not the oracle)."""
    spec = config["probes"][probe]
    families = [f for f in families_of(dataset) if f in spec.get("families", families_of(dataset))]
    if spec["kind"] in ("noise", "decoupling", "enhancement"):
        families = [f for f in families if f in ("ar", "mim", "diffusion")]
    if spec["kind"] == "sweep":
        families = [f for f in families if f != "oracle"]
    return [(f, s, p) for f in families for s in SEEDS for p in points_of(f) if p in spec.get("points", POINTS)]


def probe_cache_paths(dataset, probe):
    """The sample caches of one probe, in probe_runs order."""
    return [f"results/{dataset}/probes/{probe}/{f}/seed{s}/{p}/samples.npz" for f, s, p in probe_runs(dataset, probe)]


def probe_measure_paths(dataset):
    return [f"results/{dataset}/probes/{probe}/measure.json" for probe in config["probes"] if probe_runs(dataset, probe)]


def all_probe_cache_paths(dataset):
    return [path for probe in config["probes"] for path in probe_cache_paths(dataset, probe)]


def diagnostics_inputs(wildcards):
    d = wildcards.dataset
    return {
        "reference": f"results/{d}/reference/measure.json",
        "measured": [f"results/{d}/samples/measure.json", *probe_measure_paths(d)],
        "generators": f"results/tables/{d}/generators.csv",
        "classifier": f"results/{d}/classifier/metrics.json",
    }


def oracle_clamp_measure(wildcards):
    """The path-clamp measurements, holding the oracle's (first seed): the estimates to validate."""
    probe = next(n for n, p in config["probes"].items() if p["kind"] == "path_clamp")
    return f"results/{wildcards.dataset}/probes/{probe}/measure.json"


DIAGNOSTIC_FIGURES = ["ib_plane", "iso_quality", "allocation", "layout_commitment", "responses", "decoupling", "pareto"]


def summary_inputs(wildcards):
    return {
        "stability": expand("results/tables/{dataset}/classification_stability.csv", dataset=DATASETS),
        "classification": expand("results/tables/{dataset}/classification.csv", dataset=DATASETS),
        "headline": expand("results/tables/{dataset}/enhancement_headline.csv", dataset=DATASETS),
        "generators": expand("results/tables/{dataset}/generators.csv", dataset=DATASETS),
    }


def probe_grid_inputs(dataset):
    """Probe caches drawn as sample grids: the first seed, neutral point, every probe and family."""
    return [p for p in all_probe_cache_paths(dataset)
            if f"/seed{SEEDS[0]}/neutral/" in p]


def unit_files(wildcards):
    """Every file of one DVC unit (priors / samples / probes) of a dataset: what its manifest lists."""
    d, unit = wildcards.dataset, wildcards.unit
    if unit == "priors":
        return [f"results/{d}/priors/{f}/seed{s}/{name}" for f in config["families"] for s in SEEDS
                for name in ("model.pt", "curve.csv", "metrics.json")]
    if unit == "samples":
        return [*sample_paths("results/{dataset}/samples/{family}/seed{seed}/{point}/baseline.npz", d),
                f"results/{d}/samples/measure.json"]
    return [*all_probe_cache_paths(d), *probe_measure_paths(d)]


def oracle_outputs(dataset):
    return [f"results/tables/{dataset}/oracle_validation.csv"] if "oracle" in families_of(dataset) else []
