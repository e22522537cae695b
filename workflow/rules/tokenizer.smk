# VQ tokenizer: train, encode token caches, evaluate reconstructions.


rule train_tokenizer:
    input:
        data="data/prepared/{dataset}.npz",
        **script_inputs("train_tokenizer"),
    output:
        model="results/{dataset}/tokenizer/model.pt",
        curve="results/{dataset}/tokenizer/curve.csv",
    params:
        cfg=dataset_section("tokenizer"),
        seed=config["seed"],
    wildcard_constraints:
        dataset="|".join(IN_HOUSE) or "NO_DATASET",  # a pretrained dataset's is the backend's VQ
    log:
        logfile("train_tokenizer"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/train_tokenizer.py"


rule encode_tokens:
    input:
        data="data/prepared/{dataset}.npz",
        tokenizer="results/{dataset}/tokenizer/model.pt",
        **script_inputs("encode_tokens"),
    output:
        "results/{dataset}/tokens.npz",
    log:
        logfile("encode_tokens"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/encode_tokens.py"


rule evaluate_tokenizer:
    input:
        data="data/prepared/{dataset}.npz",
        tokenizer="results/{dataset}/tokenizer/model.pt",
        classifier="results/{dataset}/classifier/model.pt",
        **script_inputs("evaluate_tokenizer"),
    output:
        metrics="results/{dataset}/tokenizer/evaluation.json",
        figure=report("results/{dataset}/figures/tokenizer/reconstructions.png", caption="../report/reconstructions.rst", category="{dataset}", subcategory="data"),
    log:
        logfile("evaluate_tokenizer"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/evaluate_tokenizer.py"
