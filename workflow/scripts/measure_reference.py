"""Snakemake adapter: the real held-out data measured like any sample set (same code, same N), and
the quality reference every measuring job compares its samples with."""
import numpy as np

from ibdiv import classifier, data, diagnostics, tokenizer, tokens
from ibdiv.seeds import derive_seed
from ibdiv.io import save_json
from ibdiv.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    held = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    train = tokens.load_token_cache(snakemake.input.tokens, "train")
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    rng = np.random.default_rng(derive_seed(p.seed, w.dataset, "reference", "measure"))
    nan = np.full(held.tokens.shape, np.nan, dtype=np.float32)  # no sampler log-probs for data
    cache = {"tokens": held.tokens[None], "labels": held.labels, "logprobs": nan[None]}
    row = diagnostics.measure_flat(cache, held.codebook_size, p.measure, rng, vq, cnn)[0]
    log.info("D=%.3f H(Z)=%.3f acc=%.3f", row["d"]["value"], row["h_z"]["value"], row["conditioning_accuracy"])
    images = data.load_prepared(snakemake.input.data, "heldout")
    reference = diagnostics.quality_reference(images.images, images.labels, held.tokens, train.tokens, cnn)
    row["heldout_nn_hamming"] = reference["heldout_nn_hamming"]  # memorisation's baseline
    diagnostics.save_quality_reference(snakemake.output.quality, reference)
    save_json(snakemake.output.measure, row)
