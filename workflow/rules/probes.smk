# Probes (DESIGN §4): each `probes.<name>` entry of the config becomes, per dataset x family
# x seed x operating point, a compact token cache, and a measure.json per dataset and probe.
#
# Two job shapes, the same adapters (workflow/scripts/sample_probes.py, measure_probes.py) and
# library (probes.baseline_cache, probe_cache, probe_measures.measure_probe), byte-identical caches
# and measures:
# - in-house datasets: one job per probe (sample_probe: dataset x probe x family x seed x point;
#   measure_probe: dataset x probe), the baselines by sample_baseline (generators.smk). Start-up
#   does not dominate there: a default sampling job does ~14 CPU-s of work against ~3 CPU-s of
#   start-up, and one job per probe keeps "edit one probe, rerun only its jobs" (grouping reran
#   ~85 % of the default probe stage, ~1,500 CPU-s, for one probe's ~15 %; docs/performance.md).
# - datasets with a pretrained backend (registry model "checkpoint"): one job per run draws the
#   run's baseline and every probe of the run (sample_run_<family>_<point>, the in-house structure
#   reference `independent` of those datasets too), one job per dataset measures every probe
#   (measure_probes_<dataset>). Their start-up (diffusers / transformers imports, ~6 CPU-s more a
#   job; checkpoints of GBs at full size) costs more than a smoke run's sampling: grouping the
#   probes took the pretrained smoke from 84.7 to 51.7 units of CPU; drawing the baselines in the
#   same jobs, 97 -> 88 jobs and its sampling 86 -> 59 CPU-s (docs/performance.md, docs/testing.md).
# The wildcard constraints (dataset) split the two shapes, so no file has two rules.


rule sample_probe:
    input:
        model=sampler_model,
        tokens="results/{dataset}/tokens.npz",
        baseline=baseline_reuse,  # the run's baseline cache where the probe's cell is it (registry.baseline_cell)
        **script_inputs("sample_probes"),
    output:
        "results/{dataset}/probes/{probe}/{family}/seed{seed}/{point}/samples.npz",
    wildcard_constraints:
        dataset=one_of(d for d in DATASETS if d not in GROUPED),
    params:
        probes=job_probes,
        baseline_cells=baseline_cells,
        knobs=point_knobs,
        per_class=config["measure"]["per_class"],
        batch_size=sampling_batch,
        nested_batch=nested_batch,  # from resources.memory_gib (ibdiv.pipeline.sizing)
        seed=config["seed"],
        device=DEVICE,
    log:
        "results/logs/sample_probe/{dataset}_{probe}_{family}_seed{seed}_{point}.log",
    threads: 1
    resources:
        gpu=gpus,
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/sample_probes.py"


# A grouped job's outputs are fixed when the rule is defined and the probes of a run depend on its
# family and point, hence one rule per (family, point), all alike; its params hold only its own
# probes, so editing one probe reruns the runs that draw it (their baselines and other probes'
# caches drawn again, to the same bytes); a point without probes is its baseline alone.
for _family, _point in sampling_groups():

    rule:
        name:
            f"sample_run_{_family}_{_point}"
        input:
            model=sampler_model,
            tokens="results/{dataset}/tokens.npz",
            **script_inputs("sample_probes"),
        output:
            baseline="results/{dataset}/samples/{family}/seed{seed}/{point}/baseline.npz",
            **({"probes": [f"results/{{dataset}}/probes/{probe}/{{family}}/seed{{seed}}/{{point}}/samples.npz"
                           for probe in probes_at(_family, _point, GROUPED)]} if probes_at(_family, _point, GROUPED) else {}),
        wildcard_constraints:
            dataset=one_of(GROUPED),
            family=re.escape(_family),
            point=re.escape(_point),
        params:
            probes=job_probes,  # in output order
            baseline_cells=baseline_cells,
            knobs=point_knobs,
            sampling=sampling_settings,  # the baseline's, as sample_baseline's
            per_class=config["measure"]["per_class"],
            batch_size=sampling_batch,
            nested_batch=nested_batch,  # from resources.memory_gib (ibdiv.pipeline.sizing)
            seed=config["seed"],
            device=DEVICE,
        log:
            run_logfile("sample_run"),
        threads: 1
        resources:
            gpu=gpus,
        conda:
            "../../envs/ibdiv.yaml"
        script:
            "../scripts/sample_probes.py"


rule measure_probe:
    # one job per probe and dataset, not per cache: measuring a cache takes seconds, about what
    # starting a job that loads torch, the tokenizer and the classifier costs
    input:
        samples=lambda w: probe_cache_paths(w.dataset, w.probe),
        tokenizer="results/{dataset}/tokenizer/model.pt",
        classifier="results/{dataset}/classifier/model.pt",
        reference="results/{dataset}/reference/quality.npz",
        **script_inputs("measure_probes"),
    output:
        "results/{dataset}/probes/{probe}/measure.json",
    wildcard_constraints:
        dataset=one_of(d for d in DATASETS if not grouped_dataset(d)),
    params:
        probes=lambda w: {probe: config["probes"][probe] for probe in job_measured_probes(w)},
        runs=lambda w: {probe: probe_runs(w.dataset, probe) for probe in job_measured_probes(w)},
        measure=config["measure"],
        seed=config["seed"],
    log:
        "results/logs/measure_probe/{dataset}_{probe}.log",
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/measure_probes.py"


# A pretrained backend's dataset: one job measures every probe, one measure.json each.
for _dataset in filter(grouped_dataset, DATASETS):
    if not measured_probes(_dataset):
        continue

    rule:
        name:
            f"measure_probes_{_dataset}"
        input:
            samples=lambda w: all_probe_cache_paths(w.dataset),  # probe by probe, in params order
            tokenizer="results/{dataset}/tokenizer/model.pt",
            classifier="results/{dataset}/classifier/model.pt",
            reference="results/{dataset}/reference/quality.npz",
            **script_inputs("measure_probes"),
        output:
            [f"results/{{dataset}}/probes/{probe}/measure.json" for probe in measured_probes(_dataset)],
        wildcard_constraints:
            dataset=re.escape(_dataset),
        params:
            probes=lambda w: {probe: config["probes"][probe] for probe in job_measured_probes(w)},  # output order
            runs=lambda w: {probe: probe_runs(w.dataset, probe) for probe in job_measured_probes(w)},
            measure=config["measure"],
            seed=config["seed"],
        log:
            logfile("measure_probes"),
        threads: 1
        conda:
            "../../envs/ibdiv.yaml"
        script:
            "../scripts/measure_probes.py"


rule measure_baseline:
    # one job per dataset, for the reason given at measure_probe
    input:
        samples=lambda w: sample_paths("results/{dataset}/samples/{family}/seed{seed}/{point}/baseline.npz", w.dataset),
        tokenizer="results/{dataset}/tokenizer/model.pt",
        classifier="results/{dataset}/classifier/model.pt",
        reference="results/{dataset}/reference/quality.npz",
        **script_inputs("measure_baseline"),
    output:
        "results/{dataset}/samples/measure.json",
    params:
        runs=lambda w: sample_runs(w.dataset),
        measure=config["measure"],
        seed=config["seed"],
    log:
        logfile("measure_baseline"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/measure_baseline.py"


rule measure_reference:
    input:
        tokens="results/{dataset}/tokens.npz",
        data="data/prepared/{dataset}.npz",
        classifier="results/{dataset}/classifier/model.pt",
        tokenizer="results/{dataset}/tokenizer/model.pt",
        **script_inputs("measure_reference"),
    output:
        measure="results/{dataset}/reference/measure.json",
        quality="results/{dataset}/reference/quality.npz",
    params:
        measure=config["measure"],
        seed=config["seed"],
    log:
        logfile("measure_reference"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/measure_reference.py"


rule diagnostics_tables:
    input:
        unpack(diagnostics_inputs),
        **script_inputs("diagnostics_tables"),
    output:
        measurements="results/tables/{dataset}/measurements.csv",
        summary="results/tables/{dataset}/summary.csv",
        classification="results/tables/{dataset}/classification.csv",
        stability="results/tables/{dataset}/classification_stability.csv",
        enhancement="results/tables/{dataset}/enhancement.csv",
        headline="results/tables/{dataset}/enhancement_headline.csv",
    params:
        classification=config["classification"],
        probes=config["probes"],
    log:
        logfile("diagnostics_tables"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/diagnostics_tables.py"


rule oracle_validation:
    input:
        tokenizer="results/{dataset}/tokenizer/model.pt",
        clamp=oracle_clamp_measure,
        **script_inputs("oracle_validation"),
    output:
        table="results/tables/{dataset}/oracle_validation.csv",
        # beside its table, not in figures/diagnostics: only datasets with an oracle have it, and
        # DVC declares each diagnostics figure by name (as plots) for every dataset
        figure=report("results/tables/{dataset}/oracle_validation.png", caption="../report/oracle_validation.rst", category="{dataset}", subcategory="diagnostics"),
    params:
        executions=config["measure"]["oracle_executions"],
        method=config["measure"]["method"],
        oracle_seed=SEEDS[0],
        seed=config["seed"],
    log:
        logfile("oracle_validation"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/oracle_validation.py"


rule probe_grids:
    input:
        samples=lambda w: probe_grid_inputs(w.dataset),
        tokenizer="results/{dataset}/tokenizer/model.pt",
        **script_inputs("probe_grids"),
    output:
        report(directory("results/{dataset}/figures/probes"), patterns=["{name}.png"], caption="../report/probe_grids.rst", category="{dataset}", subcategory="intervention grids"),
    params:
        probes=config["probes"],
    log:
        logfile("probe_grids"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/probe_grids.py"


rule sample_grids:
    input:
        samples=lambda w: sample_paths("results/{dataset}/samples/{family}/seed{seed}/{point}/baseline.npz", w.dataset),
        tokenizer="results/{dataset}/tokenizer/model.pt",
        **script_inputs("sample_grids"),
    output:
        report(directory("results/{dataset}/figures/samples"), patterns=["{name}.png"], caption="../report/samples.rst", category="{dataset}", subcategory="samples"),
    params:
        runs=lambda w: sample_runs(w.dataset),
    log:
        logfile("sample_grids"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/sample_grids.py"
