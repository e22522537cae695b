"""The cluster path on a real cluster engine (issue 14): a one-node SLURM on this machine
(`scripts/slurm_localhost.sh`: munge, slurmctld, slurmd, no slurmdbd) runs the smoke DAG through
`--profile profiles/slurm` with the pinned executor plugin, every job as its own sbatch job, and
the results are byte-identical to the local smoke run's.

Opt-in: runs only with IBDIV_SLURM=1 (the script installs slurm-wlm and munge with apt if they
are missing), because it takes 20+ minutes on 2 cores (a SLURM job starts Snakemake twice) and
the README's test command must stay near 15. Starting the daemons needs root. Without slurmdbd `sacct` answers "Slurm accounting
storage is disabled", and with the plugin's default status command the run then hangs (the plugin
drops jobs it cannot query); so the run polls with `squeue`, which sees finished jobs for the
cluster's MinJobAge (300 s)."""
import hashlib
import os
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT, copy_repository

SCRIPT = ROOT / "scripts/slurm_localhost.sh"
TIMEOUT_S = 3600  # a lost job would otherwise hang the run forever (see the module docstring)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("IBDIV_SLURM") != "1",
                       reason="opt-in (20+ min): IBDIV_SLURM=1 starts a one-node SLURM here (installing it "
                              "with apt as root if needed) and runs the smoke DAG through profiles/slurm"),
]


def _running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def local_cluster():
    """The one-node cluster, started by the script; stopped afterwards if this test started it."""
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM daemons needs root (scripts/slurm_localhost.sh)")
    was_running = _running("slurmctld")
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"slurm_localhost.sh failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    yield
    if not was_running:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


def run_through_slurm(work):
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile", "config/smoke.yaml",
           "--slurm-status-command", "squeue",
           # The smoke jobs take seconds; the plugin's default 40 s before the first status
           # query (and after every finished job) would make the run mostly waiting.
           "--slurm-init-seconds-before-status-checks", "5"]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        run_id = re.search(r"SLURM run ID: (\S+)", out)
        if run_id:  # its jobs carry the run id as their name
            subprocess.run(["scancel", "--name", run_id[1]], capture_output=True)
        raise AssertionError(f"the SLURM run did not finish in {TIMEOUT_S} s:\n{out[-4000:]}")
    assert proc.returncode == 0, f"the SLURM run failed:\n{out[-6000:]}"
    return out


def digests(root):
    """SHA-256 of every result file the determinism test compares (prepared data, every sample
    cache, checkpoint, measurement and table), by path relative to `root`."""
    found = {}
    for sub in ("data/prepared", "results/shapes", "results/tables"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file() and path.suffix in (".npz", ".json", ".csv", ".pt"):
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    found["results/summary.json"] = hashlib.sha256((root / "results/summary.json").read_bytes()).hexdigest()
    return found


def test_smoke_dag_through_the_slurm_profile_equals_the_local_run(local_cluster, smoke_run, tmp_path_factory):
    work = copy_repository(tmp_path_factory.mktemp("slurm"))
    out = run_through_slurm(work)
    assert "Using profiles profiles/slurm" in out
    # Every job but the target rule `all` (a local rule) went through sbatch.
    total = int(re.search(r"^total\s+(\d+)$", out, re.M)[1])
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == total - 1 and len(set(submitted)) == len(submitted), (total, len(submitted))

    local, cluster = digests(smoke_run), digests(work)
    assert sorted(cluster) == sorted(local)
    differ = [path for path in local if cluster[path] != local[path]]
    assert not differ, f"{len(differ)} of {len(local)} files differ from the local run, e.g. {differ[:10]}"
    kinds = Counter(re.sub(r".*/", "", p) for p in local)
    assert kinds["baseline.npz"] >= 9 and kinds["samples.npz"] >= 19, kinds  # the smoke DAG's sample jobs
    assert sum(p.startswith("results/tables/") and p.endswith(".csv") for p in local) > 5
