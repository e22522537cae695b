"""Snakemake adapter: train one family on one dataset with one seed."""
import time

import pandas as pd
import torch

from ibdiv.core import devices, registry
from ibdiv.data import tokens
from ibdiv.families import training
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import save_json, save_text
from ibdiv.core.runlog import job

w = snakemake.wildcards
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    device = devices.resolve(snakemake.params.device)
    train = tokens.load_token_cache(snakemake.input.tokens, "train")
    held = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    as_tensor = lambda a: torch.from_numpy(a)
    start = time.time()
    model, curve, bits = training.train_prior(
        w.family, as_tensor(train.tokens), as_tensor(train.labels), as_tensor(held.tokens), as_tensor(held.labels),
        K=train.codebook_size, C=int(train.labels.max()) + 1, cfg=snakemake.params.cfg,
        seed=derive_seed(snakemake.params.seed, w.dataset, w.family, w.seed, "train"), device=device,
    )
    seconds = time.time() - start
    best = min(curve, key=lambda row: row["heldout_bits"])
    metrics = {
        "family": w.family, "seed": int(w.seed), "heldout_bits_per_token": bits,
        "best_step": best["step"], "selection_bits_per_token": best["heldout_bits"],
        "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "likelihood": "exact NLL" if training.has_exact_likelihood(w.family) else "ELBO bound",
    }
    log.info("%s; trained in %.1f s on %s", metrics, seconds, device)  # timing stays out of results: they must be reproducible
    training.save_model(snakemake.output.model, model)
    save_text(snakemake.output.curve, pd.DataFrame(curve).to_csv(index=False))
    save_json(snakemake.output.metrics, metrics)
