# Figures from the tables, the headline summary, and captions for `snakemake --report`.

rule diagnostic_figures:
    input:
        measurements="results/tables/{dataset}/measurements.csv",
        summary="results/tables/{dataset}/summary.csv",
        classification="results/tables/{dataset}/classification.csv",
        oracle=lambda w: oracle_outputs(w.dataset),  # so one target builds every table of the dataset
        code=code("figures"),
        script="workflow/scripts/diagnostic_figures.py",
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
    log:
        logfile("diagnostic_figures"),
    benchmark:
        benchfile("diagnostic_figures")
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/diagnostic_figures.py"


rule summary:
    input:
        unpack(summary_inputs),
        code=code("tables"),
        script="workflow/scripts/summary.py",
    output:
        summary="results/summary.json",
        metrics="results/metrics.json",
    params:
        datasets=DATASETS,
    log:
        "results/logs/summary/summary.log",
    benchmark:
        "results/benchmarks/summary/summary.tsv"
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/summary.py"
