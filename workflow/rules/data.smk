# Data: build each dataset once (validated, fixed split) and draw example images.


rule prepare_data:
    input:
        **script_inputs("prepare_data"),
    output:
        "data/prepared/{dataset}.npz",
    params:
        spec=dataset_source,
        seed=config["seed"],
    wildcard_constraints:
        dataset="|".join(IN_HOUSE) or "NO_DATASET",  # pretrained datasets: prepare_pretrained_data
    log:
        logfile("prepare_data"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/prepare_data.py"


rule figure_examples:
    input:
        data="data/prepared/{dataset}.npz",
        **script_inputs("figure_examples"),
    output:
        png=report("results/{dataset}/figures/tokenizer/examples.png", caption="../report/examples.rst", category="{dataset}", subcategory="data"),
    log:
        logfile("figure_examples"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/figure_examples.py"


rule train_classifier:
    input:
        data="data/prepared/{dataset}.npz",
        **script_inputs("train_classifier"),
    output:
        model="results/{dataset}/classifier/model.pt",
        metrics="results/{dataset}/classifier/metrics.json",
    params:
        cfg=dataset_section("classifier"),
        seed=config["seed"],
    log:
        logfile("train_classifier"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/train_classifier.py"
