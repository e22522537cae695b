"""Run-time plumbing for pipeline jobs: log files, thread counts, timing.

Snakemake does not redirect a script's output; `job()` sends stdout/stderr (including
tqdm progress bars) to the rule's log file so that every job leaves a readable trace.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("ibdiv")


@contextlib.contextmanager
def job(log_path, threads: int = 1):
    import torch

    torch.set_num_threads(max(1, int(threads)))
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
