# Probes (DESIGN §4): each `probes.<name>` entry of the config becomes, per dataset x family
# x seed x operating point, a compact token cache, and a measure.json per dataset.
#
# Sampling: one job per run (dataset, family, seed, point) draws every probe of that run, one cache
# per probe at the same paths as before. Start-up (Python, torch, the library, the model; a text
# backend's diffusers) cost about as much as a probe's sampling, so one job a probe paid it ~4x as
# often (docs/performance.md). A job's outputs are fixed when the rule is defined and the probes of
# a run depend on its family and point, hence one rule per (family, point), all alike; its params
# hold only its own probes, so editing one probe reruns the runs that draw it (and their other
# probes' caches), not the other runs.
import re

for _family, _point in sampling_groups():

    rule:
        name:
            f"sample_probes_{_family}_{_point}"
        input:
            model=sampler_model,
            tokens="results/{dataset}/tokens.npz",
            baseline=baseline_reuse,  # the run's baseline cache where a cell is it (registry.baseline_cell)
            **script_inputs("sample_probes"),
        output:
            [f"results/{{dataset}}/probes/{probe}/{{family}}/seed{{seed}}/{{point}}/samples.npz"
             for probe in probes_at(_family, _point)],
        wildcard_constraints:
            family=re.escape(_family),
            point=re.escape(_point),
        params:
            probes=group_probes,  # in output order
            baseline_cells=baseline_cells,
            knobs=point_knobs,
            per_class=config["measure"]["per_class"],
            batch_size=sampling_batch,
            nested_batch=nested_batch,  # from resources.memory_gib (ibdiv.pipeline.sizing)
            seed=config["seed"],
            device=DEVICE,
        log:
            run_logfile("sample_probes"),
        benchmark:
            run_benchfile("sample_probes")
        threads: 1
        resources:
            gpu=gpus,
        conda:
            "../../envs/ibdiv.yaml"
        script:
            "../scripts/sample_probes.py"


# Measuring: one job per dataset measures every probe, one measure.json each (loading the tokenizer,
# classifier and quality reference and starting up cost about what measuring a smoke probe does).
# Editing one probe reruns its sampling jobs, which rewrite their runs' other caches too (above),
# so those probes' measurements rerun anyway; one rule per dataset, its outputs being its probes'.
for _dataset in DATASETS:
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
            probes=lambda w: {probe: config["probes"][probe] for probe in measured_probes(w.dataset)},  # output order
            runs=lambda w: {probe: probe_runs(w.dataset, probe) for probe in measured_probes(w.dataset)},
            measure=config["measure"],
            seed=config["seed"],
        log:
            logfile("measure_probes"),
        benchmark:
            benchfile("measure_probes")
        threads: 1
        conda:
            "../../envs/ibdiv.yaml"
        script:
            "../scripts/measure_probes.py"


rule measure_baseline:
    # one job per dataset, for the reason given at measure_probes
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
    benchmark:
        benchfile("measure_baseline")
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
    benchmark:
        benchfile("measure_reference")
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
    benchmark:
        benchfile("diagnostics_tables")
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
    benchmark:
        benchfile("oracle_validation")
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
    benchmark:
        benchfile("probe_grids")
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
    benchmark:
        benchfile("sample_grids")
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/sample_grids.py"
