# Figures from the tables, the headline summary, and captions for `snakemake --report`.

rule diagnostic_figures:
    # one PNG (with its caption workflow/report/<name>.rst), PDF and CSV per row of the figure
    # catalogue (ibdiv.report.figures.catalogue, DIAGNOSTIC_FIGURES in common.smk)
    input:
        measurements="results/tables/{dataset}/measurements.csv",
        summary="results/tables/{dataset}/summary.csv",
        classification="results/tables/{dataset}/classification.csv",
        oracle=lambda w: oracle_outputs(w.dataset),  # so one target builds every table of the dataset
        **script_inputs("diagnostic_figures"),
    output:
        **{
            name: report(
                f"results/{{dataset}}/figures/diagnostics/{name}.png",
                caption=f"../report/{name}.rst",
                category="{dataset}",
                subcategory="diagnostics",
            )
            for name in DIAGNOSTIC_FIGURES
        },
        pdf=[f"results/{{dataset}}/figures/diagnostics/{name}.pdf" for name in DIAGNOSTIC_FIGURES],
        csv=[f"results/{{dataset}}/figures/diagnostics/{name}.csv" for name in DIAGNOSTIC_FIGURES],
    params:
        probes=config["probes"],  # the figures find their probes by kind (registry.probe_of_kind)
    log:
        logfile("diagnostic_figures"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/diagnostic_figures.py"


rule findings_tables:
    """The report's landing tables (workflow/report/workflow.rst shows them): labels, the
    per-seed classification with margin and rule, the generators; formatted for reading."""
    input:
        stability="results/tables/{dataset}/classification_stability.csv",
        classification="results/tables/{dataset}/classification.csv",
        generators="results/tables/{dataset}/generators.csv",
        confusion="results/calibration/confusion.csv",  # which labels the run's own suite backs
        **script_inputs("findings_tables"),
    output:
        labels="results/tables/{dataset}/findings/labels.csv",
        classification="results/tables/{dataset}/findings/classification.csv",
        generators="results/tables/{dataset}/findings/generators.csv",
    log:
        logfile("findings_tables"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/findings_tables.py"


rule summary:
    input:
        unpack(summary_inputs),
        confusion="results/calibration/confusion.csv",
        **script_inputs("summary"),
    output:
        summary="results/summary.json",
        metrics="results/metrics.json",
    params:
        datasets=DATASETS,
    log:
        "results/logs/summary/summary.log",
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/summary.py"


rule label_calibration:
    """The label calibration suite and the SE calibration (DESIGN §5): constructed generators
    with known labels through the run's own probe design (P, R, N, σ, cut, coarse alphabets K'),
    estimands and rule; no training needed. The findings flag labels it does not back."""
    input:
        **script_inputs("label_calibration"),
    output:
        results="results/calibration/replicates.csv",
        confusion="results/calibration/confusion.csv",
        se="results/calibration/se_calibration.csv",
    params:
        calibration=config["calibration"],
        # coarse_k included: the suite runs at the run's own design, its coarse alphabets too
        measure=config["measure"],
        probe=lambda w: config["probes"][registry.probe_of_kind(config["probes"], "decoupling")],
        classification=config["classification"],
    log:
        "results/logs/label_calibration/label_calibration.log",
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/label_calibration.py"


rule calibration_figure:
    """Its own job, so that editing the figures does not rerun the suite."""
    input:
        confusion="results/calibration/confusion.csv",
        se="results/calibration/se_calibration.csv",
        **script_inputs("calibration_figure"),
    output:
        png=report("results/calibration/labels.png", caption="../report/calibration.rst", category="calibration"),
        pdf="results/calibration/labels.pdf",
        csv="results/calibration/labels.csv",
    log:
        "results/logs/calibration_figure/calibration_figure.log",
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/calibration_figure.py"
