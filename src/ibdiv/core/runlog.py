"""Run-time plumbing for pipeline jobs: log files, thread counts, timing.

Snakemake does not redirect a script's output; `job()` sends stdout/stderr (including
tqdm progress bars) to the rule's log file so that every job leaves a readable trace.

A job that ends well also records what it cost, results/benchmarks/<rule>/<name>.tsv beside its
results/logs/<rule>/<name>.log: wall seconds since its process started, CPU seconds and peak
memory, read from the kernel's own accounting (getrusage) when it ends. The rules have no
`benchmark:` directive: Snakemake's benchmark thread samples a job's process tree instead, every
0.5 s for 15 s and then every 30 s, so it misses up to 30 s of a long job's CPU, and each sample
reads /proc/<pid>/smaps for the unique / proportional set sizes, ~17 ms of the kernel's time for a
torch process of 1.2 GB (measured): a few per cent of a 2-core machine spent watching the jobs.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import resource
import sys
import time
from pathlib import Path

log = logging.getLogger("ibdiv")


@contextlib.contextmanager
def job(log_path, threads: int = 1):
    """Log to `log_path` and cap torch's threads at the rule's `threads` (the scripts import
    their torch-using modules first; a job that never imports torch does not pay for it)."""
    threads = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by a torch imported later in the job
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        start = time.time()
        try:
            yield log
            log.info("done in %.1f s", time.time() - start)
            record_resources(log_path)
            # Python's shutdown collects every object a job made or imported (torch's alone: tens of
            # thousands of modules, functions and classes): ~0.5 CPU-s a job, measured, a third of
            # a small job. Frozen objects are left out of that collection; the OS frees the memory.
            gc.freeze()
        except BaseException:
            log.exception("failed after %.1f s", time.time() - start)
            raise
        finally:
            log.removeHandler(handler)
            sys.stdout.flush()


BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "cpu_time", "user", "sys")  # s, max_rss and cpu_time as Snakemake names them


def benchmark_path(log_path) -> Path | None:
    """Where a job's resource record goes: its log's path with the `logs` directory replaced by
    `benchmarks` and a .tsv suffix; None for a log outside any `logs` directory (not a pipeline job)."""
    parts = Path(log_path).parts
    if "logs" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("logs")
    return Path(*parts[:i], "benchmarks", *parts[i + 1:]).with_suffix(".tsv")


def record_resources(log_path) -> None:
    """Write this process's cost so far to benchmark_path(log_path): wall seconds since the process
    started, peak resident memory (MB), user + system CPU seconds of the process and of the children
    it waited for (its start-up, imports included: everything a job costs but the scheduler's own work)."""
    import psutil  # a Snakemake dependency

    from ibdiv.core.io import save_text

    path = benchmark_path(log_path)
    if path is None:
        return
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime
    wall = time.time() - psutil.Process().create_time()
    peak = max(own.ru_maxrss, children.ru_maxrss) / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)  # bytes / KiB
    clock = time.strftime("%H:%M:%S", time.gmtime(wall))
    values = (f"{wall:.4f}", clock, f"{peak:.2f}", f"{user + system:.2f}", f"{user:.2f}", f"{system:.2f}")
    save_text(path, "\t".join(BENCHMARK_COLUMNS) + "\n" + "\t".join(values) + "\n")
