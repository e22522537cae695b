"""Run-time plumbing for pipeline jobs: log files, thread counts, timing.

Snakemake does not redirect a script's output; `job()` sends stdout/stderr (including
tqdm progress bars) to the rule's log file so that every job leaves a readable trace.
"""
from __future__ import annotations

import contextlib
import logging
import os
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
        except BaseException:
            log.exception("failed after %.1f s", time.time() - start)
            raise
        finally:
            log.removeHandler(handler)
            sys.stdout.flush()
