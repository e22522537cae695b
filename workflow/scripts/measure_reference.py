"""Snakemake adapter: the real held-out data measured like any sample set (same code, same N), and
the quality reference every measuring job compares its samples with."""
import numpy as np

from ibdiv.data import classifier, datasets, tokenizer, tokens
from ibdiv.measure import coarse, diagnostics
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import save_json
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    held = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    train = tokens.load_token_cache(snakemake.input.tokens, "train")
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    run_seed = derive_seed(p.seed, w.dataset, "reference", "measure")
    rng = np.random.default_rng(run_seed)
    nan = np.full(held.tokens.shape, np.nan, dtype=np.float32)  # no sampler log-probs for data
    cache = {"tokens": held.tokens[None], "labels": held.labels, "logprobs": nan[None]}
    row = diagnostics.measure_flat(cache, held.codebook_size, p.measure, rng, vq, cnn)[0]
    log.info("D=%.3f H(Z)=%.3f acc=%.3f", row["d"]["value"], row["h_z"]["value"], row["conditioning_accuracy"])
    # the per-position estimands again on coarse tokens (DESIGN §13), each with the map it used
    maps = coarse.tokenizer_maps(vq, p.measure.get("coarse_k", []), p.seed)
    measured = diagnostics.measure_coarse(cache, maps, p.measure, run_seed, nested=False)
    row["coarse"] = {k: {**cells[0], "code_map": maps[int(k)].tolist()} for k, cells in measured.items()}
    images = datasets.load_prepared(snakemake.input.data, "heldout")
    reference = diagnostics.quality_reference(images.images, images.labels, held.tokens, train.tokens, cnn)
    row["heldout_nn_hamming"] = reference["heldout_nn_hamming"]  # memorisation's baseline
    diagnostics.save_quality_reference(snakemake.output.quality, reference)
    save_json(snakemake.output.measure, row)
