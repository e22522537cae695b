"""Snakemake adapter: train the VQ-VAE tokenizer and save its learning curve."""
import pandas as pd

from ibdiv.data import datasets, tokenizer
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import save_text
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    cfg, name = snakemake.params.cfg, snakemake.wildcards.dataset
    train = datasets.load_prepared(snakemake.input.data, "train")
    heldout = datasets.load_prepared(snakemake.input.data, "heldout")
    arch = {k: cfg[k] for k in ("grid", "codebook_size", "code_dim", "channels")}
    model, curve = tokenizer.train_tokenizer(
        train.images, heldout.images, tokenizer.TokenizerConfig(image_size=train.images.shape[1], **arch),
        steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=derive_seed(snakemake.params.seed, name, "tokenizer"),
        eval_every=max(1, cfg["steps"] // 6),
    )
    log.info("final: %s", curve[-1])
    tokenizer.save_tokenizer(snakemake.output.model, model)
    save_text(snakemake.output.curve, pd.DataFrame(curve).to_csv(index=False))
