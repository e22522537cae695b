"""Probe-sampling benchmark (not a test): one sample_probe job's work per (family, probe) of config.yaml.

    python scripts/bench_sampling.py                 # CPU-s and reference units of every default job shape
    python scripts/bench_sampling.py --only ar/decoupling --profile   # cProfile of one of them
    python scripts/bench_sampling.py --out x.json    # also write each cache's sha256 (compare two checkouts)

Default-sized priors (config.yaml's `prior` architecture, K 64, N 16, 8 classes: shapes) with
seeded untrained weights (a forward pass costs the same as a trained one's; the draws differ, the
work does not), the independent family counted from random tokens. Each job is what the workflow
adapter runs (probes.probe_cache, one thread), without the process start-up (~1.8 CPU-s a job,
docs/performance.md) and without writing the cache. The enhancement's (0, 0) cell is the baseline,
given as the adapter does. The same seed gives the same caches in every checkout, so the `--out`
files of two checkouts are identical when the samples are. The reference unit
(`ibdiv.pipeline.speed`) is measured in the same process.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ibdiv.core import registry
from ibdiv.measure import probes
from ibdiv.pipeline.speed import reference_unit_seconds

K, N, C = 64, 16, 8
CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def build(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = registry.implementation(family).PRIOR.build(K, N, C, {**CONFIG["prior"]})
    if family == "independent":
        gen = torch.Generator().manual_seed(0)
        model.fit(torch.randint(0, K, (4000, N), generator=gen), torch.randint(0, C, (4000,), generator=gen))
    return model.eval()


def jobs(config: dict) -> list[tuple[str, str, str]]:
    """(family, probe, point) of every distinct sample_probe job shape of the default DAG (the
    oracle aside: it renders with numpy and is not an in-house prior)."""
    out = []
    for name, spec in config["probes"].items():
        for family in ("ar", "mim", "diffusion", "independent"):
            if family not in spec.get("families", [family]) or not registry.applies(spec, family):
                continue
            for point in spec.get("points", list(config["families"][family])):
                out.append((family, name, point))
    return out


def baseline_cell(name: str):
    return registry.baseline_cell(CONFIG["probes"][name], CONFIG["measure"]["per_class"],
                                  CONFIG["sampling"]["baseline_per_class"])


def prepare_baseline(model, family: str, name: str, point: str, baselines: dict) -> None:
    """The run's baseline cache, as sample_baseline writes it, where the probe copies a cell of it."""
    if baseline_cell(name) is None or (family, point) in baselines:
        return
    knobs, per_class = CONFIG["families"][family][point] or {}, CONFIG["measure"]["per_class"]
    seed = probes.sampling_seed(CONFIG["seed"], "shapes", family, 0, point)
    flat = probes.sample_flat(model, C, per_class, knobs, seed, batch_size=CONFIG["sampling"]["batch_size"])
    baselines[(family, point)] = {**flat, "seed": np.int64(seed)}


def run_job(model, family: str, name: str, point: str, baselines: dict) -> dict:
    spec, per_class = CONFIG["probes"][name], CONFIG["measure"]["per_class"]
    knobs = CONFIG["families"][family][point] or {}
    run = ("shapes", family, 0, point)
    cell = baseline_cell(name)
    baseline = baselines.get((family, point)) if cell is not None else None
    return probes.probe_cache(model, name, spec, n_classes=C, knobs=knobs, per_class=per_class, run=run,
                              base_seed=CONFIG["seed"], baseline=baseline, baseline_cell=cell,
                              batch_size=CONFIG["sampling"]["batch_size"])


def digest(cache: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(cache):
        value = np.ascontiguousarray(cache[key])
        h.update(key.encode() + str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="family/probe[/point] (repeatable); default: all")
    parser.add_argument("--profile", action="store_true", help="cProfile each job (process time), top 25")
    parser.add_argument("--out", help="write each cache's sha256 and CPU-s here (JSON)")
    parser.add_argument("--no-unit", action="store_true", help="skip measuring the reference unit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    unit = None if args.no_unit else reference_unit_seconds()
    models, baselines, results = {}, {}, {}
    for family, name, point in jobs(CONFIG):
        key = f"{family}/{name}/{point}"
        if args.only and not any(key == o or key.startswith(o + "/") for o in args.only):
            continue
        model = models.setdefault(family, build(family))
        prepare_baseline(model, family, name, point, baselines)  # not timed: sample_baseline's work
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        start = time.process_time()
        if profiler:
            profiler.enable()
        cache = run_job(model, family, name, point, baselines)
        if profiler:
            profiler.disable()
        seconds = time.process_time() - start
        results[key] = {"cpu_s": seconds, "sha256": digest(cache)}
        units = f" = {seconds / unit:.3f} u" if unit else ""
        print(f"{key:42s} {seconds:7.2f} CPU-s{units}  {results[key]['sha256'][:12]}", flush=True)
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    if unit:
        print(f"reference unit: {unit:.2f} CPU-s; total {sum(r['cpu_s'] for r in results.values()):.1f} CPU-s")
    if args.out:
        Path(args.out).write_text(json.dumps({"unit": unit, "jobs": results}, indent=1))


if __name__ == "__main__":
    main()
