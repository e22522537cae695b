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
import time  # noqa: E402
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


# The files of the two whole-DAG runs first, then the next heaviest, so that pytest-xdist (which
# hands out whole files in collection order with scripts/test.sh's --no-loadscope-reorder, a new
# file to a worker once it has at most 2 tests left) starts the pretrained smoke on one worker and
# the shared smoke run on the other, and every other file fills in around them, longest first (a
# long file handed out last would end the run alone). In the default order both runs could land on
# one worker, or the second worker could sit waiting for the smoke run's file lock. The pretrained
# file is the critical path (its fixture alone is ~half the suite's wall time), so the worker that
# builds the smoke run takes the calibration suite, the kill-and-resume run and the DVC tests while
# it runs; test_lock_resolution mostly waits on PyPI (~30 s wall, little CPU) and must not be last.
HEAVY_FILES_FIRST = ("test_pretrained_e2e.py", "test_pipeline_e2e.py", "test_calibration.py", "test_reruns.py",
                     "test_dvc.py", "test_lock_resolution.py", "test_profiles.py", "test_devices.py")


def write_tables(folder: Path, **frames) -> dict:
    """Each DataFrame as <folder>/<name>.csv (the table files the report's readers take): name -> path."""
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def pytest_collection_modifyitems(items):
    """A test that reads a whole smoke run is end-to-end, whatever its file says: the tiers must
    hold without remembering to mark each one. The heavy files go first (HEAVY_FILES_FIRST)."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
    rank = {name: i for i, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def shared_once(tmp_path_factory, name: str, build):
    """A folder built once per test run and shared by every test that only reads it. Under
    pytest-xdist the workers share it too: the first to ask builds it under a file lock, the
    others wait and reuse it (each worker would otherwise rebuild it)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        work = tmp_path_factory.mktemp(name)
        build(work)
        return work
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # the same for every worker of this run
    work, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)  # a half-built folder of a worker that failed
            work.mkdir()
            build(work)
            done.touch()
    return work


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole DAG on the smoke config, in a temporary copy of the repository (shared by the
    end-to-end, determinism and DVC tests; read-only: tests that change it work on a copy)."""
    return shared_once(tmp_path_factory, "smoke", lambda work: snakemake(copy_repository(work)))


_SESSION_START = time.perf_counter()


def pytest_terminal_summary(terminalreporter):
    """With IBDIV_REPORT_UNIT=1 (CI sets it): the suite's wall time also in reference units, the
    machine-speed measure of ibdiv.pipeline.speed, so a time on one machine can be compared with a
    target set on another (docs/performance.md)."""
    if os.environ.get("IBDIV_REPORT_UNIT") != "1" or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from ibdiv.pipeline.speed import reference_unit_seconds

    wall = time.perf_counter() - _SESSION_START
    unit = reference_unit_seconds()
    terminalreporter.write_line(f"ibdiv: suite wall time {wall:.0f} s = {wall / unit:.1f} reference units "
                                f"(unit here: {unit:.2f} CPU-s, measured after the suite)")
