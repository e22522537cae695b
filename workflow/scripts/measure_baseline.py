"""Snakemake adapter: every flat estimand and quality metric of every baseline sample cache of a dataset."""
import numpy as np

from ibdiv.measure import diagnostics, probe_measures
from ibdiv.core import registry
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import load_npz, save_json
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    vq, cnn, reference, maps = probe_measures.load_readers(snakemake.input.tokenizer, snakemake.input.classifier,
                                                           snakemake.input.reference, p.measure, p.seed)
    runs = []
    for (family, seed, point), path in zip(p.runs, snakemake.input.samples):
        cache = load_npz(path)
        run_seed = derive_seed(p.seed, w.dataset, family, seed, point, "baseline", "measure")
        rng = np.random.default_rng(run_seed)
        stacked = {"tokens": cache["tokens"][None], "labels": cache["labels"], "logprobs": cache["logprobs"][None]}
        # the run's paired seed, as measure_probe's: gains against the baseline are paired too
        row = diagnostics.measure_flat(stacked, vq.cfg.codebook_size, p.measure, rng, vq, cnn, reference,
                                      registry.family(family).exact_likelihood,
                                      paired_seed=derive_seed(p.seed, w.dataset, family, seed, point, "paired"))[0]
        log.info("%s seed %s %s: D=%.3f H(Z)=%.3f acc=%.3f", family, seed, point, row["d"]["value"],
                 row["h_z"]["value"], row["conditioning_accuracy"])
        runs.append({"family": family, "seed": int(seed), "point": point, "cells": [""], "measurements": [row],
                     "coarse": diagnostics.measure_coarse(stacked, maps, p.measure, run_seed, nested=False)})
    # the layout of a probe's measure.json: the tables read baselines and probes alike
    save_json(snakemake.output[0], {"probe": "baseline", "kind": "flat", "runs": runs})
