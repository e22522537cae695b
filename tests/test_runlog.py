"""A job's log and its own resource record (ibdiv.core.runlog): what the benchmark tables read."""
import csv
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from ibdiv.core.runlog import benchmark_path

SRC = Path(__file__).resolve().parents[1] / "src"


def run_job(tmp_path, log: str, body: str) -> subprocess.CompletedProcess:
    """A job script in a fresh process (its own getrusage): burns ~0.3 CPU-s before `job()` (start-up),
    allocates and touches `mb` MB and runs a child that burns ~0.3 CPU-s inside it, then `body`."""
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        import numpy as np
        from ibdiv.core.runlog import job

        def burn(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass

        burn(0.3)
        with job({log!r}):
            block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
            subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"], check=True)
            {body}
        import gc
        print("frozen", gc.get_freeze_count())
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})


def test_benchmark_path_mirrors_the_log_path():
    assert benchmark_path("results/logs/sample_probe/shapes_x.log") == Path("results/benchmarks/sample_probe/shapes_x.tsv")
    assert benchmark_path("/w/results/logs/summary/summary.log") == Path("/w/results/benchmarks/summary/summary.tsv")
    assert benchmark_path("/tmp/job.log") is None


def test_a_finished_job_records_its_whole_process_s_cpu_and_peak_memory(tmp_path):
    done = run_job(tmp_path, "results/logs/rule/name.log", "pass")
    assert done.returncode == 0, done.stderr
    (row,) = csv.DictReader((tmp_path / "results/benchmarks/rule/name.tsv").open(), delimiter="\t")
    cpu, wall = float(row["cpu_time"]), float(row["s"])
    assert cpu >= 0.85  # start-up burn + its own allocation + the child's burn: all of the job's process tree
    assert abs(cpu - float(row["user"]) - float(row["sys"])) < 0.02
    assert wall >= 0.5 and float(row["max_rss"]) > 290  # MB: the 300 MB block
    assert "done in" in (tmp_path / "results/logs/rule/name.log").read_text()
    # what the job made and imported is frozen: Python's shutdown collection skips it (~0.5 CPU-s a job)
    assert int(done.stdout.split()[-1]) > 10_000


def test_a_failed_job_or_a_log_outside_logs_records_nothing(tmp_path):
    failed = run_job(tmp_path, "results/logs/rule/name.log", "raise RuntimeError('bad input')")
    assert failed.returncode != 0 and "bad input" in (tmp_path / "results/logs/rule/name.log").read_text()
    assert not (tmp_path / "results/benchmarks").exists()
    assert run_job(tmp_path, "elsewhere/name.log", "pass").returncode == 0
    assert not (tmp_path / "elsewhere/name.tsv").exists() and not (tmp_path / "results/benchmarks").exists()


def test_no_rule_asks_snakemake_to_sample_its_job():
    """Jobs write their own record; a `benchmark:` directive would have Snakemake's thread overwrite it
    with a sampled one and read every job's /proc/<pid>/smaps every 0.5 s (~17 ms of kernel time each)."""
    rules = Path(__file__).resolve().parents[1] / "workflow/rules"
    files = [*rules.glob("*.smk"), rules.parents[1] / "Snakefile"]
    assert len(files) > 3
    assert not [f.name for f in files if re.search(r"^\s*benchmark\s*:", f.read_text(), re.M)]
