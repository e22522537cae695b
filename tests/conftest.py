"""Test-wide settings: hypothesis without a per-example deadline (CI shares 2 cores with
the end-to-end Snakemake run, so wall-clock deadlines would make property tests flaky) and
derandomised, so every CI run checks the same examples. BLAS single-threaded before numpy is
first imported (see the Snakefile: spinning BLAS threads made small matmuls 17x slower)."""
import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("ibdiv", deadline=None, derandomize=True)
settings.load_profile("ibdiv")


ROOT = Path(__file__).resolve().parents[1]
COPIED = ["Snakefile", "workflow", "src", "profiles", "envs", "scripts", "config.yaml", "config", ".gitignore",
          "pyproject.toml"]


def snakemake(workdir, *args, check=True, configfile="config/smoke.yaml"):
    """Snakemake on the smoke config in `workdir`; raises with its output tail on failure."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", configfile, *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def copy_repository(work: Path) -> Path:
    for name in COPIED:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    return work


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole DAG on the smoke config, in a temporary copy of the repository (shared by the
    end-to-end, determinism and DVC tests)."""
    work = copy_repository(tmp_path_factory.mktemp("smoke"))
    snakemake(work)
    return work
