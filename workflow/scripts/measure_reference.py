"""Snakemake adapter: the real held-out data measured like any sample set (same code, same N)."""
import numpy as np

from ibdiv import classifier, diagnostics, metrics, tokenizer, tokens
from ibdiv.config import derive_seed
from ibdiv.io import save_json
from ibdiv.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    held = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    rng = np.random.default_rng(derive_seed(p.seed, w.dataset, "reference", "measure"))
    nan = np.full(held.tokens.shape, np.nan, dtype=np.float32)  # no sampler log-probs for data
    cache = {"tokens": held.tokens[None], "labels": held.labels, "logprobs": nan[None]}
    row = diagnostics.measure_flat(cache, held.codebook_size, p.measure, rng, vq, cnn)[0]
    log.info("D=%.3f H(Z)=%.3f acc=%.3f", row["d"]["value"], row["h_z"]["value"], row["conditioning_accuracy"])
    train = tokens.load_token_cache(snakemake.input.tokens, "train")
    # memorisation's baseline, measured once here and read by every measuring job
    row["heldout_nn_hamming"] = metrics.memorisation(held.tokens, train.tokens, held.tokens).ref_nn_hamming
    save_json(snakemake.output[0], row)
