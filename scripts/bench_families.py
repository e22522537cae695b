"""Benchmark the generator families on synthetic tokens (project default backbone).

Reports per family: seconds per training step (batch 128), samples/s at the standard operating
point, the fraction of this machine's measured matmul throughput that sampling achieves (model
FLOPs estimated analytically), and the AR KV-cache speed-up over recomputing the prefix.

    python scripts/bench_families.py [--threads 1] [--samples 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from ibdiv.families import mim
from ibdiv.core import registry
from ibdiv.core.config import load_config
from ibdiv.families.sampling import sample
from ibdiv.families.training import DEFAULT_CFG

N, K, C = 16, 64, 8
ARCH = {**DEFAULT_CFG, "d_model": 96, "n_layers": 3, "n_heads": 4}
BATCH = 128


def matmul_gflops(size: int = 512, repeats: int = 50) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops(n_queries: int, n_keys: int, d: int, layers: int) -> float:
    """Matmul FLOPs of n_queries token positions attending to n_keys keys each."""
    per_token = layers * (24 * d * d + 4 * n_keys * d) + 2 * d * K
    return n_queries * per_token


def sampling_flops(family: str, knobs: dict, n: int) -> float:
    d, layers = ARCH["d_model"], ARCH["n_layers"]
    guidance = 2 if knobs.get("cfg_scale", 1.0) != 1.0 else 1
    if family == "ar":  # one new query per step, attending to the prefix (KV cache)
        return guidance * n * sum(forward_flops(1, i + 1, d, layers) for i in range(N))
    if family in ("mim", "diffusion"):  # a full bidirectional pass per step
        return guidance * n * knobs["steps"] * forward_flops(N + 1, N + 1, d, layers)
    return 0.0


def synthetic_data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (n,), generator=g)
    base = (labels[:, None] * 7 + torch.arange(N)) % K
    tokens = torch.where(torch.rand(n, N, generator=g) < 0.6, base, torch.randint(0, K, (n, N), generator=g))
    return tokens, labels


def seconds_per_training_step(family: str, tokens, labels, steps: int = 20) -> float:
    module = registry.implementation(family)
    model = module.PRIOR.build(K, N, C, ARCH).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    elapsed = 0.0
    for step in range(steps + 3):  # the first 3 steps warm up the allocator
        idx = torch.randint(0, len(tokens), (BATCH,), generator=g)
        start = time.perf_counter()
        loss = module.training_loss(model, tokens[idx], labels[idx], g)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step >= 3:
            elapsed += time.perf_counter() - start
    return elapsed / steps


def time_sampling(model, knobs: dict, n: int) -> float:
    classes = torch.arange(n) % C
    sample(model, classes[:64], knobs, torch.Generator().manual_seed(0))  # warm-up
    start = time.perf_counter()
    sample(model, classes, knobs, torch.Generator().manual_seed(1))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--config", default="config.yaml", help="operating points are read from here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    points = load_config(args.config)["families"]
    peak = matmul_gflops()
    tokens, labels = synthetic_data(4096)
    print(f"threads={args.threads}  matmul 512x512: {peak:.1f} GFLOP/s  "
          f"N={N} K={K} C={C} d={ARCH['d_model']} layers={ARCH['n_layers']} heads={ARCH['n_heads']} "
          f"batch={BATCH}  samples={args.samples}")
    header = f"{'family':<12}{'params':>9}{'s/step':>9}{'samples/s':>11}{'GFLOP/s':>9}{'of peak':>9}  standard knobs"
    print(header)
    print("-" * len(header))
    for family in (f for f in registry.CONFIGURABLE if f in points):  # the oracle needs a trained tokenizer
        module, learned = registry.implementation(family), registry.family(family).learned
        model = module.PRIOR.build(K, N, C, ARCH).eval()
        if not learned:
            model.fit(tokens, labels)
        params = sum(p.numel() for p in model.parameters())
        step = seconds_per_training_step(family, tokens, labels) if learned else float("nan")
        knobs = {**module.KNOBS, **points[family]["standard"]}
        seconds = time_sampling(model, knobs, args.samples)
        gflops = sampling_flops(family, knobs, args.samples) / seconds / 1e9
        shown = {key: value for key, value in knobs.items() if value != module.KNOBS[key]}
        if family == "mim":
            shown = {key: knobs[key] for key in ("steps", "choice_temperature")}
        print(f"{family:<12}{params:>9}{step:>9.4f}{args.samples / seconds:>11.0f}"
              f"{gflops:>9.2f}{gflops / peak:>9.1%}  {shown}")
    ar_model = registry.implementation("ar").PRIOR.build(K, N, C, ARCH).eval()
    knobs = {**registry.implementation("ar").KNOBS, **points["ar"]["standard"]}
    cached = time_sampling(ar_model, {**knobs, "kv_cache": True}, args.samples)
    recomputed = time_sampling(ar_model, {**knobs, "kv_cache": False}, args.samples)
    print(f"AR KV cache: {args.samples / cached:.0f} samples/s vs {args.samples / recomputed:.0f} "
          f"recomputing the prefix: speed-up x{recomputed / cached:.2f}")
    print(f"MIM committed schedule at T=12: {mim.committed_after_step(N, 12, 'cosine')}")


if __name__ == "__main__":
    main()
