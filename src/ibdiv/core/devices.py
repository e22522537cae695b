"""Where training and sampling jobs compute: `device: auto | cpu | cuda` (DESIGN §10).

An execution setting, not science: it is given to Snakemake (`--config device=cuda`), not in
config.yaml. Every random draw still comes from a CPU RNG (ibdiv.families.backbone.uniform), so the
device changes only the arithmetic; the CPU is the tested default.
"""
from __future__ import annotations

import os

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve(name: str) -> torch.device:
    """The torch device for a setting; `cuda` on a machine without CUDA fails here, naming why,
    instead of somewhere inside torch. Choosing CUDA also switches torch to its deterministic
    kernels (process-wide), so that the same device and seed give the same caches."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise RuntimeError(f"device: cuda was asked for, but torch {torch.__version__} ({build}) sees no CUDA "
                           "device on this machine; run with device=cpu or device=auto")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS reads it when it first starts
    torch.use_deterministic_algorithms(True)
    return torch.device("cuda")
