"""The locks resolve against PyPI alone, as on a machine without this one's local torch wheel or
pip configuration (--isolated ignores pip.conf, PIP_* variables and find-links). A dry run checks
every pin exists and every file pip would take has a hash in the lock; nothing is installed.
Needs PyPI: skipped, saying so, where it cannot be reached."""
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPI = "https://pypi.org/simple"
# PyPI's CUDA wheels are tagged manylinux_2_17 ... _2_28; --platform takes each tag literally
LINUX_X86_64 = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 29)] + ["manylinux2014_x86_64", "linux_x86_64"]

pytestmark = pytest.mark.slow


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen(f"{PYPI}/pip/", timeout=10).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def pypi():
    if not pypi_reachable():
        pytest.skip(f"{PYPI} cannot be reached: the lock's resolution against PyPI is not checked here")


def dry_run(lock: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--no-deps",
           "--require-hashes", "--quiet", "--index-url", PYPI, "-r", str(lock), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_pypi_alone_installs_both_locks_and_checks_their_hashes(pypi, tmp_path):
    """Three dry runs at once (each is mostly waiting on the index): requirements.lock; the CUDA
    closure of PyPI's Linux torch for Linux x86_64; and torch's entry with one digit of its
    PyPI Linux hash flipped, which must be refused (so the dry runs do check hashes)."""
    lock = (ROOT / "requirements.lock").read_text()
    good = "60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7"  # PyPI's cp311 x86_64 torch
    torch_entry = lock[lock.index("\ntorch==") + 1:].split("\n    # via")[0]
    assert good in torch_entry
    (tmp_path / "bad.lock").write_text(torch_entry.replace(good, good[:-1] + "8") + "\n")
    platforms = [arg for tag in LINUX_X86_64 for arg in ("--platform", tag)]
    runs = {
        "requirements.lock": dry_run(ROOT / "requirements.lock"),
        "requirements-cuda.lock": dry_run(ROOT / "requirements-cuda.lock", "--only-binary=:all:", "--python-version",
                                          "3.11", *platforms, "--target", str(tmp_path / "target")),
        "wrong hash": dry_run(tmp_path / "bad.lock", "--only-binary=:all:", "--python-version", "3.11", *platforms,
                              "--target", str(tmp_path / "target")),
    }
    results = {}
    for name, proc in runs.items():
        err = proc.communicate()[1]  # reads the pipes to the end (waiting first could deadlock on a full pipe)
        results[name] = (proc.returncode, err)
    for name in ("requirements.lock", "requirements-cuda.lock"):
        rc, err = results[name]
        assert rc == 0, f"{name} does not install from PyPI alone:\n{err[-3000:]}"
    rc, err = results["wrong hash"]
    assert rc != 0 and "hash" in err.lower(), err[-2000:]
