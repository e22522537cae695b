# Helpers shared by the rule files (axes from config, code inputs, log paths; a job records its own
# benchmark beside its log: ibdiv.core.runlog).
import re
import sys
from pathlib import Path

# Families and probe kinds come from the registry (torch-free), the diagnostic figures from their
# catalogue and code inputs from the import graph (codegraph), both standard library only; all from
# this checkout's src/ like the jobs' code; `declare` adds the families the config brings itself,
# and fails naming the key.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from ibdiv.core import registry
from ibdiv.pipeline.codegraph import code_files
from ibdiv.report.figures import catalogue as figure_catalogue

sys.path.pop(0)
registry.declare(config)

DATASETS = list(config["datasets"])
# `source: pretrained` datasets (DESIGN §12): a backend's checkpoint and real images per condition;
# their tokenizer is the backend's VQ (rules in pretrained.smk), the others train their own
PRETRAINED = [d for d in DATASETS if config["datasets"][d]["source"] == "pretrained"]
IN_HOUSE = [d for d in DATASETS if d not in PRETRAINED]
PRIOR_FAMILIES = [f for f in config["families"] if registry.family(f).model == "prior"]  # trained by the DAG
BACKEND_FAMILIES = [f for f in config["families"] if registry.family(f).model == "checkpoint"]
SEEDS = [str(s) for s in config["seeds"]]
POINTS = list(registry.POINTS)

# Where training and sampling jobs compute (DESIGN §10): an execution setting, given as
# `snakemake --config device=cuda` (or in a profile), not science in config.yaml. A param, so that
# switching devices reruns those jobs (the arithmetic differs); cuda jobs declare one `gpu` for
# cluster profiles to place them (auto takes a GPU only where the job happens to land on one).
DEVICE = config.get("device", "cpu")


def gpus(wildcards):
    """GPUs a training or sampling job asks for (a "tokenizer" family, the oracle, renders with
    numpy on the CPU)."""
    return 1 if DEVICE == "cuda" and registry.family(wildcards.family).model != "tokenizer" else 0


def check_settings_against_data():
    """Settings that depend on the data (matched N per class vs held-out images, token grid vs
    image size, ...) fail here, before any job, naming the key to change (ibdiv.pipeline.preflight:
    the images per class are read without building the datasets; no job imports it)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # this checkout's library
    try:
        from ibdiv.pipeline.preflight import check_dataset_settings, known_class_counts
    except ImportError:  # a bare Snakemake (e.g. --sdm conda without the package): jobs still fail later
        return
    finally:
        sys.path.pop(0)
    counts = {d: known_class_counts(config["datasets"][d], f"data/prepared/{d}.npz") for d in DATASETS}
    check_dataset_settings(config, counts)


check_settings_against_data()


def size_backend_jobs():
    """Every job that loads a configured backend checkpoint, sized before any job runs
    (ibdiv.pipeline.sizing: config files and weight headers only): its estimated peak memory and
    FLOPs per sample printed, checked against `resources.memory_gib` (a job that does not fit
    stops the start, naming the key to lower), the batch of `sampling.batch_size: auto` and the
    held-out score's chunk derived from it."""
    from ibdiv.pipeline.sizing import check_resources

    plan = check_resources(config)
    for line in plan.lines:
        print(f"ibdiv sizing: {line}", file=sys.stderr)
    return plan


SIZING = size_backend_jobs()


def sampling_batch(wildcards):
    """Samples per sampling call of a dataset: sampling.batch_size, or the size `auto` resolves to."""
    return SIZING.datasets[wildcards.dataset].batch


def sampling_settings(wildcards):
    """The `sampling` section with the dataset's batch size resolved."""
    return {**config["sampling"], "batch_size": sampling_batch(wildcards)}


def nested_batch(wildcards):
    """Continuations per call of a backend's nested probe (None: all in one call; set where the budget
    splits them). The in-house families of the dataset (the independent reference) draw in one call."""
    if registry.family(wildcards.family).model != "checkpoint":
        return None
    return SIZING.datasets[wildcards.dataset].nested_batch


def score_rows(wildcards):
    """Masked rows per network call of a backend's held-out score (None: no budget, the backend's default)."""
    return SIZING.datasets[wildcards.dataset].score_rows


def dataset_section(section):
    """Params function: one section of `datasets.<dataset>` (narrow params => narrow reruns)."""

    def get(wildcards):
        return config["datasets"][wildcards.dataset][section]

    return get


def dataset_source(wildcards):
    """The dataset entry without the tokenizer/classifier sections (what prepare_data reads);
    a pretrained dataset's condition folders with the demo renders' paths filled in."""
    spec = config["datasets"][wildcards.dataset]
    out = {k: v for k, v in spec.items() if k not in ("tokenizer", "classifier", "checkpoint")}
    if spec["source"] == "pretrained":
        out["conditions"] = [{**c, "images": f} for c, f in zip(spec["conditions"], condition_folders(wildcards.dataset))]
    return out


def condition_folders(dataset):
    """The real-image folder of each condition of a pretrained dataset (the demo renders where
    `render_shapes` is set)."""
    spec = config["datasets"][dataset]
    if "render_shapes" in spec:
        return [f"data/pretrained/{dataset}/images/{c['name']}" for c in spec["conditions"]]
    return [c["images"] for c in spec["conditions"]]


def condition_images(wildcards):
    """What prepare_pretrained_data reads: the demo renders' folder, or each condition's folder."""
    d = wildcards.dataset
    return [f"data/pretrained/{d}/images"] if "render_shapes" in config["datasets"][d] else condition_folders(d)


def backend_entry(wildcards):
    """What the backend rules read of a pretrained dataset's entry (not its classifier settings,
    whose change must not rerun the checkpoint's record)."""
    spec = config["datasets"][wildcards.dataset]
    return {k: spec[k] for k in ("backend", "checkpoint", "conditions", "image_size")}


def checkpoint_stamp(wildcards):
    """Sizes and mtimes of a configured checkpoint folder's files (a param of record_checkpoint: a
    file replaced in place reruns the record); none for the tiny folder the DAG builds itself."""
    ckpt = config["datasets"][wildcards.dataset]["checkpoint"]
    if isinstance(ckpt, dict):
        return []
    from ibdiv.backends.checkpoints import stamp  # numpy via ibdiv.core.io: only where a pretrained dataset is configured

    return stamp(ckpt)


def checkpoint_folder(wildcards):
    """A pretrained dataset's checkpoint folder: the tiny one the DAG builds, or the configured one."""
    ckpt = config["datasets"][wildcards.dataset]["checkpoint"]
    return f"data/pretrained/{wildcards.dataset}/checkpoint" if isinstance(ckpt, dict) else ckpt


def script_inputs(name):
    """The adapter `workflow/scripts/<name>.py` and every `ibdiv` file it imports, directly or
    through the package (read with ast by ibdiv.pipeline.codegraph, not typed here, so they cannot drift
    from the code). Declared as inputs so that a real edit (checksum) reruns the rule while a
    mere timestamp change does not (see profiles/default)."""
    script = f"workflow/scripts/{name}.py"
    root = Path(workflow.basedir).resolve()
    code = [str(path.relative_to(root)) for path in code_files(root / script, root / "src")]
    return {"script": script, "code": code}


def backend_code(wildcards):
    """The pretrained backend's own module and every `ibdiv` file it imports. codegraph does not
    follow backends from the registry (editing one must not retrain the in-house priors), so the
    rule every backend-loading job depends on (record_checkpoint) declares them itself."""
    dotted = registry.family(config["datasets"][wildcards.dataset]["backend"]).implementation.partition(":")[0]
    root = Path(workflow.basedir).resolve()
    path = root.joinpath("src", *dotted.split(".")).with_suffix(".py")
    return sorted({str(path.relative_to(root)), *(str(f.relative_to(root)) for f in code_files(path, root / "src"))})


def all_families():
    """Every family of some dataset, in first-seen order."""
    return list(dict.fromkeys(f for d in DATASETS for f in families_of(d)))


def logfile(rule):
    return f"results/logs/{rule}/{{dataset}}.log"



def families_of(dataset):
    """Configured families, plus the oracle where the dataset's true generator is known."""
    spec = config["datasets"][dataset]
    return registry.families_for(config["families"], spec["source"], spec.get("backend"))


def points_of(family):
    return list(registry.family(family).points)


def sample_runs(dataset):
    """(family, seed, point) of every baseline sample cache of a dataset."""
    return [(f, s, p) for f in families_of(dataset) for s in SEEDS for p in points_of(f)]


def sample_paths(pattern, dataset):
    return [pattern.format(dataset=dataset, family=f, seed=s, point=p) for f, s, p in sample_runs(dataset)]


def sampler_model(wildcards):
    """The model a sampler reads: the prior checkpoint, or for the oracle the tokenizer."""
    if registry.family(wildcards.family).model == "tokenizer":
        return f"results/{wildcards.dataset}/tokenizer/model.pt"
    if registry.family(wildcards.family).model == "checkpoint":  # the checkpoint's record + conditions
        return f"results/{wildcards.dataset}/backend.json"
    return f"results/{wildcards.dataset}/priors/{wildcards.family}/seed{wildcards.seed}/model.pt"


def point_knobs(wildcards):
    """The knobs of an operating point (none for a family that is not configured: the oracle)."""
    if wildcards.family not in config["families"]:
        return {}
    return config["families"][wildcards.family][wildcards.point]


def run_logfile(rule):
    return f"results/logs/{rule}/{{dataset}}_{{family}}_seed{{seed}}_{{point}}.log"



def probe_spec(wildcards):
    return config["probes"][wildcards.probe]


def prior_runs():
    """(family, seed) of every trained prior (the oracle and the pretrained backends are not trained)."""
    return [(f, s) for f in PRIOR_FAMILIES for s in SEEDS]


def scored_families(dataset):
    """Families of a dataset with held-out bits/token: the trained priors, and the pretrained
    backend (scored on the real held-out tokens by score_checkpoint)."""
    return [f for f in families_of(dataset) if registry.family(f).model in ("prior", "checkpoint")]


def generator_table_inputs(wildcards):
    d = wildcards.dataset
    return {
        "priors": [f"results/{d}/priors/{f}/seed{s}/metrics.json" for f in scored_families(d) for s in SEEDS],
        "baseline": f"results/{d}/samples/measure.json",
        "classifier": f"results/{d}/classifier/metrics.json",
    }


def probe_runs(dataset, probe):
    """(family, seed, point) the probe applies to: the probe's own `families` and `points`, and
    what the registry says it needs (perturbing probes: embeddings; a sweep: its knob)."""
    spec = config["probes"][probe]
    families = [f for f in families_of(dataset)
                if f in spec.get("families", families_of(dataset)) and registry.applies(spec, f)]
    return [(f, s, p) for f in families for s in SEEDS for p in points_of(f) if p in spec.get("points", POINTS)]


def probe_cache_paths(dataset, probe):
    """The sample caches of one probe, in probe_runs order."""
    return [f"results/{dataset}/probes/{probe}/{f}/seed{s}/{p}/samples.npz" for f, s, p in probe_runs(dataset, probe)]


def starts_up_heavily(family):
    """A pretrained backend (its model a published checkpoint): a job that draws from it imports
    diffusers / transformers and loads the checkpoint, which costs more than sampling a probe, so its
    datasets' sampling and probe measuring are grouped (probes.smk says why, with the numbers)."""
    return registry.family(family).model == "checkpoint"


def grouped_dataset(dataset):
    """A dataset with a pretrained backend: one job per run draws its baseline and probes
    (sample_run_<family>_<point>, every family of the dataset, the in-house structure reference
    included) and one job measures its probes (measure_probes_<dataset>)."""
    return any(starts_up_heavily(f) for f in families_of(dataset))


GROUPED = [d for d in DATASETS if grouped_dataset(d)]


def one_of(names):
    """A wildcard constraint matching exactly `names` (and nothing when there is none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def probes_at(family, point, datasets=None):
    """The probes drawn at one family's operating point, in config order (the same in every
    dataset of `datasets`, default all, that has the family: probe_runs depends on the family, not the dataset)."""
    found = {tuple(probe for probe in config["probes"] if (family, SEEDS[0], point) in probe_runs(d, probe))
             for d in (DATASETS if datasets is None else datasets) if family in families_of(d)}
    assert len(found) <= 1, f"probes at {family}/{point} differ between datasets: {found}"
    return list(found.pop()) if found else []


def sampling_groups():
    """(family, point) of every grouped sampling job kind (rules sample_run_<family>_<point>,
    probes.smk): every family and operating point of the datasets with a pretrained backend."""
    families = dict.fromkeys(f for d in GROUPED for f in families_of(d))
    return [(f, p) for f in families for p in points_of(f)]


def job_probes(wildcards):
    """{probe: its config} a sampling job draws, in output order: its own probe (sample_probe), or
    every probe of its run (sample_run_<family>_<point>), never another run's."""
    names = [wildcards.probe] if hasattr(wildcards, "probe") else probes_at(wildcards.family, wildcards.point, GROUPED)
    return {probe: config["probes"][probe] for probe in names}


def baseline_cells(wildcards):
    """{probe: its cell that is the run's baseline cache, or None} (registry.baseline_cell)."""
    return {probe: registry.baseline_cell(spec, config["measure"]["per_class"], config["sampling"]["baseline_per_class"])
            for probe, spec in job_probes(wildcards).items()}


def baseline_reuse(wildcards):
    """The run's baseline cache, as a list: [it] where one of the job's probes copies a cell from it, else []."""
    if all(cell is None for cell in baseline_cells(wildcards).values()):
        return []
    w = wildcards
    return [f"results/{w.dataset}/samples/{w.family}/seed{w.seed}/{w.point}/baseline.npz"]


def job_measured_probes(wildcards):
    """The probes a measuring job measures, in output order: its own (measure_probe), or every
    probe of its dataset (measure_probes_<dataset>)."""
    return [wildcards.probe] if hasattr(wildcards, "probe") else measured_probes(wildcards.dataset)


def measured_probes(dataset):
    """The probes with a cache in the dataset, in config order."""
    return [probe for probe in config["probes"] if probe_runs(dataset, probe)]


def probe_measure_paths(dataset):
    return [f"results/{dataset}/probes/{probe}/measure.json" for probe in measured_probes(dataset)]


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
    probe = registry.probe_of_kind(config["probes"], "path_clamp")
    if probe is None:
        raise ValueError("the oracle validation needs a probe of kind path_clamp under `probes`")
    return f"results/{wildcards.dataset}/probes/{probe}/measure.json"


# the diagnostic figures' names (files and captions): their table, ibdiv.report.figures.catalogue
DIAGNOSTIC_FIGURES = figure_catalogue.NAMES


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
        return [f"results/{d}/priors/{f}/seed{s}/{name}" for f in scored_families(d) for s in SEEDS
                for name in (("model.pt", "curve.csv", "metrics.json") if f in PRIOR_FAMILIES else ("metrics.json",))]
    if unit == "samples":
        return [*sample_paths("results/{dataset}/samples/{family}/seed{seed}/{point}/baseline.npz", d),
                f"results/{d}/samples/measure.json"]
    return [*all_probe_cache_paths(d), *probe_measure_paths(d)]


def oracle_outputs(dataset):
    return [f"results/tables/{dataset}/oracle_validation.csv"] if "oracle" in families_of(dataset) else []
