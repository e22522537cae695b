"""Schedule replay (not a test): how long a finished run's jobs would take on N cores in another order.

    python scripts/replay_schedule.py /path/to/finished/run                  # the run itself, and a replay without priorities
    python scripts/replay_schedule.py RUN --priority train_prior=1 label_calibration=1 prepare_data=2

Reads the run's Snakemake log (`.snakemake/log/`, the newest: each job's rule, inputs and outputs,
in the order the jobs started) and each job's own wall time (its benchmark record,
`results/benchmarks/...`, written by ibdiv.core.runlog; the log's whole-second stamps where a job has
none). The dependencies are the files one job writes and another reads. The replay is list scheduling as
Snakemake's greedy scheduler does it: whenever a core is free, the ready job of the highest priority,
then of the largest inputs. It prints the run's own wall time and idle core-seconds, and the replay's
for each order: what a change of priorities buys before running the DAG again. Job times are taken
as they were measured, so jobs that would have run beside others (and shared caches, memory
bandwidth) are not re-timed.
"""
from __future__ import annotations

import argparse
import csv
import heapq
import re
from datetime import datetime
from pathlib import Path

from ibdiv.core.runlog import benchmark_path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
FIELD = re.compile(r"^    (input|output|log|jobid): (.*)$")


def parse_log(text: str) -> dict[int, dict]:
    """{jobid: {rule, input, output, log, start, end}} of a Snakemake log (times in seconds)."""
    jobs, stamp, current = {}, None, None
    for line in text.splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": m[1], "start": stamp, "input": [], "output": [], "log": None}
        elif current is not None and (m := FIELD.match(line)):
            if m[1] == "jobid":
                jobs[int(m[2])], current = current, None
            else:
                current[m[1]] = m[2].split(", ") if m[1] != "log" else m[2]
        elif m := re.match(r"^Finished jobid: (\d+)", line):
            jobs[int(m[1])]["end"] = stamp
    return jobs


def job_seconds(run: Path, job: dict) -> float:
    """The job's own wall time from its benchmark record, else from the log's stamps."""
    record = benchmark_path(job["log"]) if job["log"] else None
    rows = list(csv.DictReader((run / record).open(), delimiter="\t")) if record and (run / record).is_file() else []
    return float(rows[-1]["s"]) if rows else max(job["end"] - job["start"], 0.0)


def replay(jobs: dict, seconds: dict, sizes: dict, priority: dict, cores: int) -> float:
    """Makespan of list scheduling: a free core takes the ready job of the highest (priority, input size)."""
    producer = {path: j for j, job in jobs.items() for path in job["output"]}
    waiting = {j: {producer[p] for p in job["input"] if p in producer} for j, job in jobs.items()}
    children = {j: [] for j in jobs}
    for j, parents in waiting.items():
        for parent in parents:
            children[parent].append(j)
    key = lambda j: (priority.get(jobs[j]["rule"], 0), sizes[j])  # noqa: E731
    ready = [j for j, parents in waiting.items() if not parents]
    running, now = [], 0.0
    while ready or running:
        ready.sort(key=key)
        while ready and len(running) < cores:
            j = ready.pop()
            heapq.heappush(running, (now + seconds[j], j))
        now, done = heapq.heappop(running)
        for child in children[done]:
            waiting[child].discard(done)
            if not waiting[child]:
                ready.append(child)
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run's working directory")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--priority", nargs="*", default=[], metavar="RULE=N",
                        help="rule priorities of the order to replay (others 0)")
    args = parser.parse_args()
    log = max((args.run / ".snakemake/log").glob("*.snakemake.log"))
    jobs = {j: job for j, job in parse_log(log.read_text()).items() if "end" in job}
    seconds = {j: job_seconds(args.run, job) for j, job in jobs.items()}
    sizes = {j: sum((args.run / p).stat().st_size for p in job["input"] if (args.run / p).is_file())
             for j, job in jobs.items()}
    total = sum(seconds.values())
    wall = max(job["end"] for job in jobs.values()) - min(job["start"] for job in jobs.values())
    print(f"{log.name}: {len(jobs)} jobs, {total:.0f} s of job wall time, at best {total / args.cores:.0f} s "
          f"on {args.cores} cores")
    print(f"  the run itself        {wall:7.0f} s wall, {args.cores * wall - total:6.0f} idle core-s")
    orders = {"no priorities": {}}
    if args.priority:
        orders[" ".join(args.priority)] = {rule: int(n) for rule, n in (p.split("=") for p in args.priority)}
    for name, priority in orders.items():
        span = replay(jobs, seconds, sizes, priority, args.cores)
        print(f"  replay, {name}: {span:7.0f} s wall, {args.cores * span - total:6.0f} idle core-s")


if __name__ == "__main__":
    main()
