"""Numbers measured from tiny fixed checkpoints (tests/data/tiny_<family>.pt): what a colleague
on another machine must reproduce within TOLERANCE when sampling and measuring from the same
checkpoint (DESIGN §10; docs/methods.md "Determinism").

Regenerate (only when the sampler or an estimator changes on purpose, and say why in the commit):
    .venv/bin/python tests/reference_numbers.py --write
which trains the checkpoints once (K 16, 16 tokens, 3 classes) and measures them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from ibdiv.families.training import load_model, save_model, train_prior
from ibdiv.measure import diagnostics, probes

DATA = Path(__file__).resolve().parent / "data"
TABLE = DATA / "reference_numbers.json"
K, N, C = 16, 16, 3
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.1, "batch_size": 32, "warmup": 2,
        "lr": 3e-3, "steps": 30, "eval_every": 10}
POINTS = {"ar": {"neutral": {}, "standard": {"cfg_scale": 1.5, "top_k": 8}},
          "mim": {"neutral": {}, "standard": {"steps": 8, "choice_temperature": 4.5, "cfg_scale": 2.0}},
          "diffusion": {"neutral": {}, "standard": {"steps": 8, "top_p": 0.9, "cfg_scale": 2.0}}}
MEASURE = {"method": "chao_shen", "per_class": 64, "n_boot": 20, "n_null": 5, "n_boot_paths": 10, "n_null_paths": 5,
           "n_sets": 20, "margin_se": 1.0}
PATH_CLAMP = {"kind": "path_clamp", "cut_fractions": [0.25], "paths": 12, "continuations": 6}
# Entropies in bits of 3 x 64 samples of 16 tokens. The uniforms behind every draw come from the CPU
# RNG and are the same everywhere; another CPU's kernels only round the logits differently (~1e-7),
# so a draw flips only where two Gumbel-perturbed logits tie that closely: rare, but in AR a flip
# changes the rest of its sample. 0.02 bit allows a couple of such samples per class and is still
# 3-8x below what temperature 0.7 instead of 1 moves (test_reference_numbers checks that it would).
TOLERANCE = 0.02


def _tiny_tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (n,), generator=g)
    tokens = (labels[:, None] * 5 + torch.randint(0, 4, (n, N), generator=g)) % K
    return tokens, labels


def checkpoint(family: str) -> Path:
    return DATA / f"tiny_{family}.pt"


def measure(model, knobs: dict) -> dict[str, float]:
    """The numbers a colleague compares: flat estimands and the path split of one cut."""
    torch.set_num_threads(1)
    flat = probes.sample_flat(model, C, MEASURE["per_class"], knobs, seed=11, batch_size=64)
    est = diagnostics.flat_estimands(flat["tokens"], flat["labels"], K, MEASURE, np.random.default_rng(0))
    cells = probes.run_probe(model, PATH_CLAMP, C, knobs, per_class=1, seed=12, noise_seed=13, batch_size=64)
    cell = {key: value[0] for key, value in cells.items()}
    split = diagnostics.nested_estimands(cell, K, MEASURE, np.random.default_rng(0))
    return {"h_z": est["h_z"]["value"], "h_pos": est["h_pos"]["value"], "d": est["d"]["value"],
            "logprob_per_token": float(np.mean(flat["logprobs"])),
            "d_exec": split["d_exec"]["value"], "d_tot": split["d_tot"]["value"]}


def measure_all() -> dict:
    return {family: {point: measure(load_model(checkpoint(family)), knobs) for point, knobs in points.items()}
            for family, points in POINTS.items()}


def write() -> None:
    DATA.mkdir(exist_ok=True)
    train, held = _tiny_tokens(512, 0), _tiny_tokens(128, 1)
    for family in POINTS:
        model, _, _ = train_prior(family, *train, *held, K=K, C=C, cfg=TINY, seed=3, progress=False)
        save_model(checkpoint(family), model)
    TABLE.write_text(json.dumps(measure_all(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    print(json.dumps(measure_all(), indent=2, sort_keys=True))
