"""Measuring-code benchmark (not a test): one run of a measuring job at config.yaml's sizes.

    python scripts/bench_measure.py            # CPU seconds and reference units, best of 3
    python scripts/bench_measure.py --out x.json   # also write the measured numbers (compare two checkouts)

Synthetic caches with the default shapes (K 64, N 16, 8 classes): a nested run (3 path-clamp
cells of P 40 × R 20, layout commitment, K' = 16 with the decoupling responses) and a flat run
(3 cells of 200 images per class: the estimands and the quality metrics against a reference of
16,000 training grids, on random features: no decoder or classifier). The same seed gives the
same inputs in every checkout, so `--out` files of two checkouts are byte-identical when the
numbers are. The reference unit (`ibdiv.pipeline.speed`) is measured in the same process.
"""
from __future__ import annotations

import argparse
import json
import os
import time

# One BLAS thread, as the Snakefile gives every job, set before numpy starts OpenBLAS: without it
# OpenBLAS spins a thread per core and eigvalsh alone took 4.7 of a flat run's 10.3 CPU-s
# (0.15 with one thread; the "54 % in eigvalsh" of issue 26's profile was this, not the jobs).
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from ibdiv.measure import coarse, diagnostics, metrics  # noqa: E402
from ibdiv.pipeline.speed import reference_unit_seconds  # noqa: E402

C, P, R, N, K, PER_CLASS, N_LAYOUTS = 8, 40, 20, 16, 64, 200, 18
CFG = {"method": "chao_shen", "per_class": PER_CLASS, "n_boot": 100, "n_null": 100, "n_boot_paths": 30,
       "n_null_paths": 50, "n_sets": 200, "margin_se": 1.0}  # config.yaml's measure block


def nested_cache(rng: np.random.Generator, cells: int = 3) -> dict:
    """Path-structured tokens: each path has its own codes, continuations stray from them, and
    the frozen cells keep the path's code."""
    base = rng.integers(0, K, size=(cells, C, P, 1, N))
    stray = rng.integers(-3, 4, size=(cells, C, P, R, N)) * (rng.random((cells, C, P, R, N)) < 0.6)
    frozen = rng.random((cells, C, P, N)) < 0.25
    tokens = np.where(frozen[:, :, :, None, :], base, np.clip(base + stray, 0, K - 1))
    return {"tokens": tokens, "frozen": frozen, "committed_fraction": frozen.mean((1, 2, 3)),
            "process_fraction": np.full(cells, 0.25)}


def flat_inputs(rng: np.random.Generator, cells: int = 3) -> tuple[dict, dict]:
    labels = np.repeat(np.arange(C), PER_CLASS)
    centre = rng.integers(0, K, size=(C, N))
    tokens = np.clip(centre[labels][None] + rng.integers(-6, 7, size=(cells, len(labels), N)), 0, K - 1)
    cache = {"tokens": tokens, "labels": labels, "features": rng.normal(size=(cells, len(labels), 32)),
             "logprobs": -rng.random((cells, len(labels), N))}
    train = rng.integers(0, K, size=(16_000, N))
    reference = {"features": rng.normal(size=(len(labels), 32)), "labels": labels, "train_tokens": train,
                 "heldout_tokens": rng.integers(0, K, size=(4_000, N)), "heldout_nn_hamming": 0.5}
    if hasattr(metrics, "RowSet"):  # what diagnostics.load_quality_reference adds (where it exists)
        reference["train_rows"] = metrics.RowSet(train)
        reference["heldout_copy_rate"] = reference["train_rows"].copy_rate(reference["heldout_tokens"])
    return cache, reference


def run_nested(cache: dict) -> list:
    rng = np.random.default_rng(5)
    layouts = np.random.default_rng(6).integers(0, N_LAYOUTS, size=(C, P, R))
    rows = [diagnostics.nested_estimands({k: v[i] for k, v in cache.items()}, K, CFG, rng, layouts, N_LAYOUTS)
            for i in range(len(cache["tokens"]))]
    code_map = coarse.kmeans(np.random.default_rng(1).normal(size=(K, 8)), 16, 0)
    return [rows, diagnostics.measure_coarse(cache, {16: code_map}, CFG, 7, nested=True, decoupling=True)]


def run_flat(cache: dict, reference: dict) -> list:
    rng, rows = np.random.default_rng(5), []
    for cell in range(len(cache["tokens"])):
        tokens = cache["tokens"][cell]
        row = diagnostics.flat_estimands(tokens, cache["labels"], K, CFG, rng, cache["logprobs"][cell])
        row["quality"] = diagnostics.quality_metrics(tokens, cache["labels"], cache["features"][cell], reference,
                                                     PER_CLASS, rng)
        rows.append(row)
    return rows


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append(time.process_time() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the measured numbers here (JSON)")
    args = parser.parse_args()
    nested = nested_cache(np.random.default_rng(0))
    flat, reference = flat_inputs(np.random.default_rng(1))
    unit = reference_unit_seconds()
    nested_s, nested_out = best_of(lambda: run_nested(nested), args.repeats)
    flat_s, flat_out = best_of(lambda: run_flat(flat, reference), args.repeats)
    print(f"reference unit: {unit:.2f} CPU-s")
    print(f"nested run (3 cells + layouts + K'=16 with responses): {nested_s:.2f} CPU-s = {nested_s / unit:.2f} u")
    print(f"flat run (3 cells, estimands + quality): {flat_s:.2f} CPU-s = {flat_s / unit:.2f} u")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"nested": nested_out, "flat": flat_out}, fh, default=float)


if __name__ == "__main__":
    main()
