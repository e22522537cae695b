"""Snakemake adapter: every flat estimand and quality metric of one baseline sample cache."""
import numpy as np

from ibdiv import classifier, diagnostics, tokenizer
from ibdiv.config import derive_seed
from ibdiv.io import load_npz, save_json
from ibdiv.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    cache = load_npz(snakemake.input.samples)
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    rng = np.random.default_rng(derive_seed(p.seed, w.dataset, w.family, w.seed, w.point, "baseline", "measure"))
    stacked = {"tokens": cache["tokens"][None], "labels": cache["labels"], "logprobs": cache["logprobs"][None]}
    reference = diagnostics.load_quality_reference(snakemake.input.reference)
    row = diagnostics.measure_flat(stacked, vq.cfg.codebook_size, p.measure, rng, vq, cnn, reference)[0]
    log.info("D=%.3f H(Z)=%.3f acc=%.3f", row["d"]["value"], row["h_z"]["value"], row["conditioning_accuracy"])
    save_json(snakemake.output.measure, row)
