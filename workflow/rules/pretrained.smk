# Pretrained backends (DESIGN §12; llamagen, amused, vq_diffusion): a `source: pretrained`
# dataset gets its checkpoint (a tiny random one built here, or the configured folder) checked and
# recorded in results/{dataset}/backend.json, which every job loading the backend takes as input;
# its real images come from one folder per condition; its "tokenizer" is a pointer to the
# backend's VQ; its generator is not trained but scored. Everything downstream is the in-house DAG.


rule build_tiny_checkpoint:
    """A random model of the backend's architecture at the configured tiny sizes (smoke runs)."""
    input:
        **script_inputs("build_tiny_checkpoint"),
    output:
        directory("data/pretrained/{dataset}/checkpoint"),
    params:
        spec=backend_entry,
        seed=config["seed"],
    wildcard_constraints:
        dataset="|".join(PRETRAINED) or "NO_DATASET",
    log:
        logfile("build_tiny_checkpoint"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/build_tiny_checkpoint.py"


rule render_condition_images:
    """Demo reference images (render_shapes): condition i drawn as shapes class i, PNG folders."""
    input:
        **script_inputs("render_condition_images"),
    output:
        directory("data/pretrained/{dataset}/images"),
    params:
        names=lambda w: [c["name"] for c in config["datasets"][w.dataset]["conditions"]],
        n_per_condition=lambda w: config["datasets"][w.dataset]["render_shapes"]["n_per_condition"],
        image_size=lambda w: config["datasets"][w.dataset]["image_size"],  # resized to the VQ's size when prepared
        seed=config["seed"],
    wildcard_constraints:
        dataset="|".join(PRETRAINED) or "NO_DATASET",
    log:
        logfile("render_condition_images"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/render_condition_images.py"


rule record_checkpoint:
    """The checkpoint folder checked by the backend, its weight files checked complete (a truncated
    download is refused here) and hashed, .cache/ left out (ibdiv.backends.checkpoints.record), with
    the conditions as the backend reads them: the input of every job that loads the backend."""
    input:
        folder=checkpoint_folder,
        # the backend's code: a real edit reruns every job that loads it (they read backend.json)
        backend_code=backend_code,
        **script_inputs("record_checkpoint"),
    output:
        "results/{dataset}/backend.json",
    params:
        spec=backend_entry,
        stamp=checkpoint_stamp,
    wildcard_constraints:
        dataset="|".join(PRETRAINED) or "NO_DATASET",
    log:
        logfile("record_checkpoint"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/record_checkpoint.py"


rule prepare_pretrained_data:
    """The real images of every condition: grey at image_size (the classifier), RGB at the
    backend VQ's size (the reference tokens); the held-out split as for in-house data."""
    input:
        images=condition_images,
        backend="results/{dataset}/backend.json",
        **script_inputs("prepare_pretrained_data"),
    output:
        "data/prepared/{dataset}.npz",
    params:
        spec=dataset_source,
        seed=config["seed"],
    wildcard_constraints:
        dataset="|".join(PRETRAINED) or "NO_DATASET",
    log:
        logfile("prepare_pretrained_data"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/prepare_pretrained_data.py"


rule backend_tokenizer:
    """The dataset's tokenizer file: a pointer to the backend's VQ (ibdiv.data.backend_tokenizer), so every
    rule reading results/{dataset}/tokenizer/model.pt works unchanged."""
    input:
        backend="results/{dataset}/backend.json",
        **script_inputs("backend_tokenizer"),
    output:
        model="results/{dataset}/tokenizer/model.pt",
    wildcard_constraints:
        dataset="|".join(PRETRAINED) or "NO_DATASET",
    log:
        logfile("backend_tokenizer"),
    threads: 1
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/backend_tokenizer.py"


rule score_checkpoint:
    """Held-out bits/token of the backend on the real held-out tokens (what train_prior reports
    for a trained family); the same for every seed: the weights do not depend on it."""
    input:
        model="results/{dataset}/backend.json",
        tokens="results/{dataset}/tokens.npz",
        **script_inputs("score_checkpoint"),
    output:
        metrics="results/{dataset}/priors/{family}/seed{seed}/metrics.json",
    params:
        device=DEVICE,
        seed=config["seed"],
        rows_per_call=score_rows,  # from resources.memory_gib (ibdiv.pipeline.sizing); the result does not depend on it
    wildcard_constraints:
        dataset="|".join(PRETRAINED) or "NO_DATASET",
        family="|".join(BACKEND_FAMILIES) or "NO_FAMILY",
    log:
        "results/logs/score_checkpoint/{dataset}_{family}_seed{seed}.log",
    threads: 1
    resources:
        gpu=gpus,
    conda:
        "../../envs/ibdiv.yaml"
    script:
        "../scripts/score_checkpoint.py"
