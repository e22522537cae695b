"""Pipeline benchmark (not a test): where the time of a whole DAG goes.

    python scripts/bench_pipeline.py --run smoke          # fresh copy, whole DAG, then a no-op dry run
    python scripts/bench_pipeline.py --run quick
    python scripts/bench_pipeline.py --results /path/to/finished/checkout   # default run already done

For a run it reports the end-to-end wall time, the no-op dry-run time and where the CPU went (the
whole process tree, Snakemake's own process, the jobs' benchmark files, and what none of them
accounts for: job start-up outside the measured process, the scheduler's solver); for any finished
workspace the per-rule totals from Snakemake's benchmark TSVs (jobs, wall s, CPU s, peak RSS) and
the slowest jobs. Run it on an otherwise idle machine: the numbers are wall-clock.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["Snakefile", "workflow", "src", "profiles", "envs", "config.yaml", "config"]
CONFIGS = {"smoke": "config/smoke.yaml", "quick": "config/quick.yaml", "default": "config.yaml"}


def snakemake(workdir: Path, *args: str) -> tuple[float, dict]:
    """Seconds one snakemake invocation takes (raises on failure), and where its CPU went:
    `tree` = user/sys seconds of the whole process tree (Snakemake and every job, scheduler
    solver and shell wrappers included), `snakemake` = the Snakemake process's own."""
    # the copy's own code: the venv's editable install would import the checkout, which may be edited meanwhile
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    own = _own_cpu_until_exit(proc)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = {"user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime}
    return wall, {"tree": tree, "snakemake": own}


def _own_cpu_until_exit(proc: subprocess.Popen) -> dict:
    """The process's own user/sys CPU seconds, read every half second until it exits (the last
    reading is at most half a second short)."""
    import psutil

    handle, own = psutil.Process(proc.pid), {"user": 0.0, "sys": 0.0}
    while proc.poll() is None:
        try:
            times = handle.cpu_times()
            own = {"user": times.user, "sys": times.system}
        except psutil.Error:  # exited between poll() and the read
            pass
        time.sleep(0.5)
    return own


def time_run(config: str, keep: Path | None, snakemake_args=()) -> Path:
    work = keep or Path(tempfile.mkdtemp(prefix=f"ibdiv-bench-{config}-"))
    for name in COPIED:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, work / name)
    total, cpu = snakemake(work, "--configfile", CONFIGS[config], *snakemake_args)
    noop = min(snakemake(work, "--configfile", CONFIGS[config], "--dry-run")[0] for _ in range(3))
    print(f"{config} DAG end to end: {total:.1f} s wall   no-op dry run: {noop:.2f} s (best of 3)   in {work}")
    jobs = benchmark_cpu(work)
    tree, own = cpu["tree"], cpu["snakemake"]
    print(f"CPU s: whole tree {tree['user'] + tree['sys']:.0f} (user {tree['user']:.0f}, sys {tree['sys']:.0f});"
          f" Snakemake itself {own['user'] + own['sys']:.0f} (user {own['user']:.0f}, sys {own['sys']:.0f});"
          f" jobs' benchmark files {jobs:.0f}; unaccounted {tree['user'] + tree['sys'] - jobs - own['user'] - own['sys']:.0f}")
    return work


def benchmark_cpu(workdir: Path) -> float:
    """CPU seconds the jobs' own benchmark files record (last row of each)."""
    total = 0.0
    for path in (workdir / "results/benchmarks").glob("*/*.tsv"):
        rows = list(csv.DictReader(path.open(), delimiter="\t"))
        total += float(rows[-1].get("cpu_time") or 0) if rows else 0.0
    return total


def rule_table(workdir: Path, slowest: int = 8) -> None:
    """Per-rule totals from results/benchmarks/<rule>/*.tsv (the last row of each file)."""
    rules, jobs = defaultdict(lambda: [0, 0.0, 0.0, 0.0]), []
    for path in sorted((workdir / "results/benchmarks").glob("*/*.tsv")):
        rows = list(csv.DictReader(path.open(), delimiter="\t"))
        if not rows:
            continue
        row, rule = rows[-1], path.parent.name
        wall, cpu = float(row["s"]), float(row.get("cpu_time") or 0)
        rss = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "-", "NA") else 0.0
        total = rules[rule]
        total[0] += 1
        total[1] += wall
        total[2] += cpu
        total[3] = max(total[3], rss)
        jobs.append((wall, f"{rule}/{path.stem}"))
    if not rules:
        print(f"no benchmark files under {workdir / 'results/benchmarks'}")
        return
    print(f"\n{'rule':<22}{'jobs':>6}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>13}")
    for rule, (n, wall, cpu, rss) in sorted(rules.items(), key=lambda kv: -kv[1][1]):
        print(f"{rule:<22}{n:>6}{wall:>10.1f}{cpu:>10.1f}{rss:>13.0f}")
    n, wall, cpu = (sum(v[i] for v in rules.values()) for i in range(3))
    print(f"{'total':<22}{n:>6}{wall:>10.1f}{cpu:>10.1f}{max(v[3] for v in rules.values()):>13.0f}")
    print(f"\nslowest {slowest} jobs (wall s):")
    for wall, name in sorted(jobs, reverse=True)[:slowest]:
        print(f"  {wall:8.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(CONFIGS), help="time a fresh run of this config in a temporary copy")
    parser.add_argument("--keep", type=Path, help="with --run: run in this (empty) directory instead")
    parser.add_argument("--results", type=Path, help="summarise the benchmark files of a finished workspace")
    parser.add_argument("--snakemake-args", default="", help="with --run: extra snakemake arguments, e.g. '--scheduler greedy'")
    args = parser.parse_args()
    if not args.run and not args.results:
        parser.error("give --run and/or --results")
    if args.run:
        rule_table(time_run(args.run, args.keep, args.snakemake_args.split()))
    if args.results:
        rule_table(args.results)


if __name__ == "__main__":
    main()
