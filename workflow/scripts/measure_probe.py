"""Snakemake adapter: every estimand of every cell of one probe cache."""
import numpy as np

from ibdiv import classifier, diagnostics, probes, tokenizer
from ibdiv.config import derive_seed
from ibdiv.io import load_npz, save_json
from ibdiv.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    cache = load_npz(snakemake.input.samples)
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    rng = np.random.default_rng(derive_seed(p.seed, w.dataset, w.family, w.seed, w.point, w.probe, "measure"))
    reference = diagnostics.load_quality_reference(snakemake.input.reference)
    K = vq.cfg.codebook_size
    if p.probe["kind"] in probes.FLAT_KINDS:
        rows = diagnostics.measure_flat(cache, K, p.measure, rng, vq, cnn, reference)
    else:
        rows = diagnostics.measure_nested(cache, K, p.measure, rng, vq, cnn, cnn.cfg.n_layouts, reference)
    result = {"probe": w.probe, "kind": p.probe["kind"], "cells": [str(c) for c in cache["cells"]], "measurements": rows}
    log.info("%d cells measured", len(rows))
    save_json(snakemake.output[0], result)
