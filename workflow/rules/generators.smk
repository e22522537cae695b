# Generator families: train (dataset x family x seed), baseline sample caches
# (x operating point) and a table of likelihoods and conditioning accuracy; the caches are
# measured (and drawn as sample grids) by `measure_baseline` in probes.smk.


rule train_prior:
    input:
        tokens="results/{dataset}/tokens.npz",
        **script_inputs("train_prior"),
    output:
        model="results/{dataset}/priors/{family}/seed{seed}/model.pt",
        curve="results/{dataset}/priors/{family}/seed{seed}/curve.csv",
        metrics="results/{dataset}/priors/{family}/seed{seed}/metrics.json",
    params:
        cfg=config["prior"],
        seed=config["seed"],
        device=DEVICE,
    wildcard_constraints:
        family="|".join(PRIOR_FAMILIES) or "NO_FAMILY",  # pretrained backends are scored, not trained
    log:
        "results/logs/train_prior/{dataset}_{family}_seed{seed}.log",
    threads: 1
    resources:
        gpu=gpus,
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/train_prior.py"


rule prior_curves:
    """Every prior's training curve of a dataset in one table: what DVC plots (dvc.yaml)."""
    input:
        curves=lambda w: [f"results/{w.dataset}/priors/{f}/seed{s}/curve.csv" for f, s in prior_runs()],
        **script_inputs("prior_curves"),
    output:
        "results/{dataset}/prior_curves.csv",
    params:
        runs=lambda w: prior_runs(),
    log:
        logfile("prior_curves"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/prior_curves.py"


rule sample_baseline:
    input:
        model=sampler_model,
        tokens="results/{dataset}/tokens.npz",
        **script_inputs("sample_baseline"),
    output:
        "results/{dataset}/samples/{family}/seed{seed}/{point}/baseline.npz",
    wildcard_constraints:
        dataset=one_of(d for d in DATASETS if d not in GROUPED),  # theirs: sample_run_<family>_<point> (probes.smk)
    params:
        knobs=point_knobs,
        sampling=sampling_settings,
        seed=config["seed"],
        device=DEVICE,
    log:
        run_logfile("sample_baseline"),
    threads: 1
    resources:
        gpu=gpus,
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/sample_baseline.py"


rule generators_table:
    input:
        unpack(generator_table_inputs),
        **script_inputs("generators_table"),
    output:
        "results/tables/{dataset}/generators.csv",
    log:
        logfile("generators_table"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/generators_table.py"


rule manifest:
    """SHA-256 of every file of one unit: the target DVC stages ask for, and a quick way to
    compare two runs (same config and seed => same manifest)."""
    input:
        files=unit_files,
        **script_inputs("manifest"),
    output:
        "results/{dataset}/{unit}/manifest.json",
    wildcard_constraints:
        unit="priors|samples|probes",
    log:
        "results/logs/manifest/{dataset}_{unit}.log",
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/manifest.py"
