"""The measurements of one probe's sample caches in one dataset (DESIGN §4): every estimand of
every cell of every run, as measure.json holds them. A measuring job measures every probe of a
dataset with one tokenizer, classifier and quality reference loaded once."""
from __future__ import annotations

import numpy as np

from ibdiv.core import registry
from ibdiv.core.seeds import derive_seed
from ibdiv.data import classifier, tokenizer
from ibdiv.measure import coarse, diagnostics


def load_readers(tokenizer_path, classifier_path, reference_path, measure: dict, base_seed: int) -> tuple:
    """(vq, cnn, reference, maps): what every measuring job reads its caches with: the tokenizer
    (decoding, K), the classifier (accuracy, layouts), the real data's quality reference and the
    coarse alphabets' code maps of `measure["coarse_k"]`."""
    vq = tokenizer.load_tokenizer(tokenizer_path)
    cnn = classifier.load_classifier(classifier_path)
    reference = diagnostics.load_quality_reference(reference_path)
    return vq, cnn, reference, coarse.tokenizer_maps(vq, measure.get("coarse_k", []), base_seed)


def measure_probe(name: str, probe: dict, runs, caches, *, dataset: str, measure: dict, base_seed: int, vq, cnn,
                  reference, maps, log=None) -> dict:
    """measure.json of probe `name`: `runs` (family, seed, point) and their loaded `caches`, in the
    same order. Each run draws from its own stream, derived from the probe's name and the run, so
    neither the other runs nor the other probes measured by the same job change its numbers."""
    K = vq.cfg.codebook_size
    nested, decoupling = probe["kind"] in registry.NESTED_KINDS, probe["kind"] == "decoupling"
    measured = []
    for (family, seed, point), cache in zip(runs, caches, strict=True):
        run_seed = derive_seed(base_seed, dataset, family, seed, point, name, "measure")
        rng = np.random.default_rng(run_seed)
        if not nested:
            rows = diagnostics.measure_flat(cache, K, measure, rng, vq, cnn, reference,
                                            registry.family(family).exact_likelihood,
                                            paired_seed=derive_seed(base_seed, dataset, family, seed, point, "paired"))
        else:
            rows = diagnostics.measure_nested(cache, K, measure, rng, vq, cnn, cnn.cfg.n_layouts, reference)
        if decoupling:  # paired responses, kept with the unperturbed cell
            cells = [{key: cache[key][i] for key in ("tokens", "frozen")} for i in range(len(rows))]
            rows[0]["responses"] = diagnostics.decoupling_responses(cells, K, measure, rng)
        measured.append({"family": family, "seed": int(seed), "point": point,
                         "cells": [str(c) for c in cache["cells"]], "measurements": rows,
                         "coarse": diagnostics.measure_coarse(cache, maps, measure, run_seed, nested=nested,
                                                              decoupling=decoupling)})
        if log:
            log.info("%s: %s seed %s %s: %d cells measured", name, family, seed, point, len(rows))
    return {"probe": name, "kind": probe["kind"], "runs": measured}
