"""Snakemake adapter: the SHA-256 of every file of one unit, as JSON."""
import hashlib
from pathlib import Path

from ibdiv.io import save_json
from ibdiv.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    digests = {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in sorted(snakemake.input.files)}
    log.info("%d files", len(digests))
    save_json(snakemake.output[0], digests)
