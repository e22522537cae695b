"""Snakemake adapter: the SHA-256 of every file of one unit, as JSON."""
from ibdiv.core.io import file_sha256, save_json
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    digests = {path: file_sha256(path) for path in sorted(snakemake.input.files)}
    log.info("%d files", len(digests))
    save_json(snakemake.output[0], digests)
