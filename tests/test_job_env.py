"""The allocation settings the Snakefile gives every job (issue 26): glibc keeps a freed big
buffer in the heap instead of unmapping it (and page-faulting fresh zeroed pages for the next)."""
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

SNAKEFILE = Path(__file__).resolve().parents[1] / "Snakefile"

# One 64 MiB temporary, like torch's training and sampling buffers, allocated and freed; prints
# glibc's bytes in mmapped blocks while it lives and the heap's free bytes after it is freed.
ALLOCATE = """
import ctypes
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
buffer = np.empty(8 * 2**20)
buffer[:] = 1.0
mapped = libc.mallinfo2().hblkhd
del buffer
print(mapped, libc.mallinfo2().fordblks)
"""
BUFFER = 64 * 2**20


def job_malloc_env() -> dict:
    """The MALLOC_* variables the Snakefile sets, as the jobs see them."""
    found = re.findall(r'os\.environ\.setdefault\("(MALLOC_\w+_)", str\((\d+) \* 2\*\*20\)\)', SNAKEFILE.read_text())
    return {name: str(int(mib) * 2**20) for name, mib in found}


def allocate(env: dict) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", ALLOCATE], env={"PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True, check=True)
    mapped, kept = out.stdout.split()
    return int(mapped), int(kept)


def test_snakefile_sets_both_malloc_thresholds():
    assert set(job_malloc_env()) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}


def _glibc_has_mallinfo2() -> bool:
    name, version = platform.libc_ver()
    return name == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 33)


@pytest.mark.skipif(not _glibc_has_mallinfo2(), reason="glibc's malloc and its mallinfo2 (glibc >= 2.33)")
def test_job_malloc_settings_keep_freed_buffers_in_the_heap():
    env = job_malloc_env()
    assert allocate({})[0] >= BUFFER  # glibc's defaults: mmapped, and unmapped when freed
    mapped, kept = allocate(env)
    assert mapped < BUFFER and kept >= BUFFER  # from the heap, and still there for the next one
    # either setting alone does not do it (why the Snakefile sets both)
    assert allocate({"MALLOC_MMAP_THRESHOLD_": env["MALLOC_MMAP_THRESHOLD_"]})[1] < BUFFER  # trimmed
    assert allocate({"MALLOC_TRIM_THRESHOLD_": env["MALLOC_TRIM_THRESHOLD_"]})[0] >= BUFFER  # mmapped
