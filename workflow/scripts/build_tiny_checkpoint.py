"""Snakemake adapter: a tiny random checkpoint folder of a pretrained backend's architecture."""
from ibdiv.backends import pretrained
from ibdiv.core.runlog import job

p = snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    folder = pretrained.build_tiny_checkpoint(snakemake.output[0], p.spec, p.seed)
    log.info("tiny %s checkpoint in %s", p.spec["backend"], folder)
