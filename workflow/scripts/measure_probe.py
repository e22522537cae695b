"""Snakemake adapter: every estimand of every cell of every sample cache of one probe."""
import numpy as np

from ibdiv.data import classifier, tokenizer
from ibdiv.measure import coarse, diagnostics
from ibdiv.core import registry
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import load_npz, save_json
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    reference = diagnostics.load_quality_reference(snakemake.input.reference)
    K = vq.cfg.codebook_size
    maps = coarse.tokenizer_maps(vq, p.measure.get("coarse_k", []), p.seed)
    nested, decoupling = p.probe["kind"] in registry.NESTED_KINDS, p.probe["kind"] == "decoupling"
    runs = []
    for (family, seed, point), path in zip(p.runs, snakemake.input.samples):
        cache = load_npz(path)
        # each run keeps its own stream: adding or dropping a family changes no other run's numbers
        run_seed = derive_seed(p.seed, w.dataset, family, seed, point, w.probe, "measure")
        rng = np.random.default_rng(run_seed)
        if not nested:
            rows = diagnostics.measure_flat(cache, K, p.measure, rng, vq, cnn, reference,
                                            registry.family(family).exact_likelihood,
                                            paired_seed=derive_seed(p.seed, w.dataset, family, seed, point, "paired"))
        else:
            rows = diagnostics.measure_nested(cache, K, p.measure, rng, vq, cnn, cnn.cfg.n_layouts, reference)
        if decoupling:  # paired responses, kept with the unperturbed cell
            cells = [{key: cache[key][i] for key in ("tokens", "frozen")} for i in range(len(rows))]
            rows[0]["responses"] = diagnostics.decoupling_responses(cells, K, p.measure, rng)
        runs.append({"family": family, "seed": int(seed), "point": point,
                     "cells": [str(c) for c in cache["cells"]], "measurements": rows,
                     "coarse": diagnostics.measure_coarse(cache, maps, p.measure, run_seed, nested=nested, decoupling=decoupling)})
        log.info("%s seed %s %s: %d cells measured", family, seed, point, len(rows))
    save_json(snakemake.output[0], {"probe": w.probe, "kind": p.probe["kind"], "runs": runs})
