"""The reference unit of machine speed: every time the project quotes is also given in it, so a
budget measured on one machine can be checked on another (machines here differ ~3x per CPU-second
and are often shared).

One unit = the CPU seconds of a fixed workload on one thread: 60 training steps of the default
AR prior (config.yaml's `prior` block) on the default shapes sizes (K 64, 16 tokens, 8 classes),
evaluated once. Measure it in the same run as the thing it scales: `python -m ibdiv.pipeline.speed`.
"""
from __future__ import annotations

import time
from pathlib import Path

UNIT_STEPS = 60
DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "config.yaml"
K, N, C = 64, 16, 8


def reference_unit_seconds(config_path: str | Path = DEFAULT_CONFIG) -> float:
    """CPU seconds (process time, one thread) of the reference workload."""
    import torch
    import yaml

    from ibdiv.families.training import train_prior

    cfg = {**yaml.safe_load(Path(config_path).read_text())["prior"], "steps": UNIT_STEPS, "eval_every": UNIT_STEPS}
    gen = torch.Generator().manual_seed(0)
    tokens, labels = torch.randint(0, K, (4096, N), generator=gen), torch.randint(0, C, (4096,), generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        train_prior("ar", tokens[:3584], labels[:3584], tokens[3584:], labels[3584:], K=K, C=C, cfg=cfg, seed=0,
                    progress=False)
        return time.process_time() - start
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    print(f"reference unit: {reference_unit_seconds():.2f} CPU-s ({UNIT_STEPS} training steps of the default AR prior, 1 thread)")
