"""Devices (DESIGN §10): every random draw comes from a CPU RNG and is moved to the device, so
the same seed on the same machine gives byte-identical checkpoints, samples and probe caches,
in this process and in a fresh one. Across machines only the numbers are promised, within a
tolerance (test_reference_numbers.py): another CPU's kernels may round differently."""
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ibdiv.core import devices
from ibdiv.measure import probes
from ibdiv.families.training import save_model, train_prior

K, N, C = 16, 16, 3
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.1, "batch_size": 32, "warmup": 2,
        "lr": 3e-3, "steps": 6, "eval_every": 3}
KNOBS = {"ar": {"cfg_scale": 1.5, "top_k": 8}, "mim": {"steps": 8, "choice_temperature": 4.5, "cfg_scale": 2.0},
         "diffusion": {"steps": 8, "top_p": 0.9, "cfg_scale": 2.0}, "independent": {"temperature": 0.9}}
PROBES = [
    {"kind": "noise", "target": "condition", "sigmas": [0.0, 0.5]},
    {"kind": "noise", "target": "codebook", "sigmas": [0.5]},
    {"kind": "enhancement", "cut_fraction": 0.25, "condition_sigmas": [0.5], "codebook_sigmas": [0.5]},
    {"kind": "path_clamp", "cut_fractions": [0.5], "paths": 3, "continuations": 2},
    {"kind": "decoupling", "cut_fraction": 0.25, "sigma": 0.5, "paths": 3, "continuations": 2},
]
EMBEDDING_FAMILIES = ("ar", "mim", "diffusion")


def tiny_tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (n,), generator=g)
    tokens = (labels[:, None] * 5 + torch.randint(0, 4, (n, N), generator=g)) % K
    return tokens, labels


def fingerprint(**device) -> str:
    """SHA-256 over what a tiny run of every family writes: the checkpoint file, training curve,
    baseline samples and every probe's cells (tokens, log-probs, nested extras)."""
    h = hashlib.sha256()
    train, held = tiny_tokens(256, 0), tiny_tokens(64, 1)
    for family, knobs in KNOBS.items():
        model, curve, bits = train_prior(family, *train, *held, K=K, C=C, cfg=TINY, seed=3, progress=False, **device)
        with tempfile.TemporaryDirectory() as folder:  # the checkpoint file, byte for byte
            save_model(Path(folder) / "model.pt", model)
            h.update((Path(folder) / "model.pt").read_bytes())
        h.update(repr([curve, bits]).encode())
        out = probes.sample_flat(model, C, 5, knobs, seed=11, batch_size=8)
        arrays = [out["tokens"], out["labels"], out["logprobs"]]
        for probe in PROBES if family in EMBEDDING_FAMILIES else PROBES[3:4]:
            cells = probes.run_probe(model, probe, C, knobs, per_class=4, seed=11, noise_seed=12, batch_size=8)
            arrays += [cells[key] for key in sorted(cells)]
        for array in arrays:
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_same_seed_on_this_machine_gives_byte_identical_results_in_a_fresh_process():
    """Run twice: here and in a new interpreter (fresh allocator, fresh thread pools); never
    against a hash recorded on another machine."""
    torch.set_num_threads(1)
    here = fingerprint(device="cpu")
    fresh = subprocess.run([sys.executable, __file__], capture_output=True, text=True, check=True).stdout.strip()
    assert here == fresh and len(here) == 64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_same_device_and_seed_give_identical_results_on_cuda():
    cuda = devices.resolve("cuda")
    assert fingerprint(device=cuda) == fingerprint(device=cuda)


def test_cuda_on_a_machine_without_it_fails_naming_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="device: cuda was asked for.*device=cpu or device=auto"):
        devices.resolve("cuda")
    assert devices.resolve("auto") == devices.resolve("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        devices.resolve("gpu")


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(fingerprint())
