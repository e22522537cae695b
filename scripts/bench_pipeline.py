"""Pipeline benchmark (not a test): where the time of a whole DAG goes.

    python scripts/bench_pipeline.py --run smoke          # fresh copy, whole DAG, then a no-op dry run
    python scripts/bench_pipeline.py --run quick
    python scripts/bench_pipeline.py --run pretrained-smoke   # the three backends' tiny checkpoints
    python scripts/bench_pipeline.py --results /path/to/finished/checkout   # default run already done

For a run it reports the end-to-end wall time, the no-op dry-run time and where the CPU went (the
whole process tree, Snakemake's own process, the jobs' benchmark files, and what none of them
accounts for: the shell wrappers, the scheduler's solver); for any finished workspace the per-rule
totals from the jobs' benchmark TSVs (jobs, wall s, CPU s, peak RSS: each job records its own process's,
start-up included, when it ends; ibdiv.core.runlog) and
the slowest jobs. Every time is also given in reference units (`ibdiv.pipeline.speed`: one unit =
the CPU seconds of 60 training steps of the default AR prior), measured in the same run, before and
after the DAG (their mean is the unit used; both are printed, so a load change shows). Run it on an
otherwise idle machine: the numbers are wall-clock.
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
CONFIGS = {"smoke": "config/smoke.yaml", "pretrained-smoke": "config/pretrained-smoke.yaml", "quick": "config/quick.yaml",
           "default": "config.yaml"}
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


def reference_unit(workdir: Path) -> float:
    """One reference unit in CPU seconds, measured now in a fresh process on the copy's code."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    out = subprocess.run([sys.executable, "-c", "from ibdiv.pipeline.speed import reference_unit_seconds as u; print(u())"],
                         cwd=workdir, env=env, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def units(seconds: float, unit: float) -> str:
    """`seconds` as `S s = U u` (u: reference units)."""
    return f"{seconds:.1f} s = {seconds / unit:.1f} u"


def time_run(config: str, keep: Path | None, snakemake_args=()) -> tuple[Path, float]:
    """Run the DAG of `config` in a fresh copy; print its wall time, the no-op dry run and where the
    CPU went, in seconds and reference units. Returns the copy and the unit (CPU s) it measured."""
    work = keep or Path(tempfile.mkdtemp(prefix=f"ibdiv-bench-{config}-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, work / name)
    unit_before = reference_unit(work)
    total, cpu = snakemake(work, "--configfile", CONFIGS[config], *snakemake_args)
    noop = min(snakemake(work, "--configfile", CONFIGS[config], "--dry-run")[0] for _ in range(3))
    unit_after = reference_unit(work)
    unit = (unit_before + unit_after) / 2
    print(f"reference unit: {unit:.2f} CPU-s (before the DAG {unit_before:.2f}, after {unit_after:.2f})")
    print(f"{config} DAG end to end: {units(total, unit)} wall   no-op dry run: {units(noop, unit)} (best of 3)   in {work}")
    jobs = benchmark_cpu(work)
    tree, own = cpu["tree"], cpu["snakemake"]
    whole, snake = tree["user"] + tree["sys"], own["user"] + own["sys"]
    print(f"CPU: whole tree {units(whole, unit)} (user {tree['user']:.0f} s, sys {tree['sys']:.0f} s);"
          f" Snakemake itself {units(snake, unit)} (user {own['user']:.0f} s, sys {own['sys']:.0f} s);"
          f" jobs' benchmark files {units(jobs, unit)}; outside the jobs {units(whole - jobs, unit)},"
          f" of which unaccounted {units(whole - jobs - snake, unit)}")
    return work, unit


def job_records(workdir: Path) -> list[tuple[str, str, dict]]:
    """(rule, job name, record) of every job's benchmark file, results/benchmarks/<rule>/<name>.tsv (its
    last row): each job's own process, start-up included (ibdiv.core.runlog.record_resources)."""
    records = []
    for path in sorted((workdir / "results/benchmarks").glob("*/*.tsv")):
        rows = list(csv.DictReader(path.open(), delimiter="\t"))
        if rows:
            records.append((path.parent.name, path.stem, rows[-1]))
    return records


def benchmark_cpu(workdir: Path) -> float:
    """CPU seconds the jobs' benchmark files record."""
    return sum(float(row.get("cpu_time") or 0) for _, _, row in job_records(workdir))


def rule_table(workdir: Path, unit: float | None = None, slowest: int = 8) -> None:
    """Per-rule totals from results/benchmarks/<rule>/*.tsv (the last row of each file); with
    `unit` (CPU s of one reference unit) also wall and CPU in units."""
    rules, jobs = defaultdict(lambda: [0, 0.0, 0.0, 0.0]), []
    for rule, name, row in job_records(workdir):
        wall, cpu = float(row["s"]), float(row.get("cpu_time") or 0)
        rss = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "-", "NA") else 0.0
        total = rules[rule]
        total[0] += 1
        total[1] += wall
        total[2] += cpu
        total[3] = max(total[3], rss)
        jobs.append((wall, f"{rule}/{name}"))
    if not rules:
        print(f"no benchmark files under {workdir / 'results/benchmarks'}")
        return
    in_units = f"{'wall u':>9}{'CPU u':>9}" if unit else ""
    print(f"\n{'rule':<22}{'jobs':>6}{'wall s':>10}{'CPU s':>10}{in_units}{'peak RSS MB':>13}")

    def line(name, n, wall, cpu, rss):
        scaled = f"{wall / unit:>9.2f}{cpu / unit:>9.2f}" if unit else ""
        print(f"{name:<22}{n:>6}{wall:>10.1f}{cpu:>10.1f}{scaled}{rss:>13.0f}")

    for rule, (n, wall, cpu, rss) in sorted(rules.items(), key=lambda kv: -kv[1][1]):
        line(rule, n, wall, cpu, rss)
    n, wall, cpu = (sum(v[i] for v in rules.values()) for i in range(3))
    line("total", n, wall, cpu, max(v[3] for v in rules.values()))
    print(f"\nslowest {slowest} jobs (wall s):")
    for wall, name in sorted(jobs, reverse=True)[:slowest]:
        print(f"  {wall:8.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=sorted(CONFIGS), help="time a fresh run of this config in a temporary copy")
    parser.add_argument("--keep", type=Path, help="with --run: run in this (empty) directory instead")
    parser.add_argument("--results", type=Path, help="summarise the benchmark files of a finished workspace")
    parser.add_argument("--unit", action="store_true", help="with --results: measure the reference unit now and add units")
    parser.add_argument("--snakemake-args", default="", help="with --run: extra snakemake arguments, e.g. '--scheduler greedy'")
    args = parser.parse_args()
    if not args.run and not args.results:
        parser.error("give --run and/or --results")
    if args.run:
        rule_table(*time_run(args.run, args.keep, args.snakemake_args.split()))
    if args.results:
        unit = reference_unit(ROOT) if args.unit else None
        if unit:
            print(f"reference unit measured now: {unit:.2f} CPU-s (not during that run)")
        rule_table(args.results, unit)


if __name__ == "__main__":
    main()
