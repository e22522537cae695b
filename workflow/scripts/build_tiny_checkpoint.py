"""Snakemake adapter: a tiny random checkpoint folder of a pretrained backend's architecture."""
from ibdiv import pretrained
from ibdiv.runlog import job

p = snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    folder = pretrained.build_tiny_checkpoint(snakemake.output[0], p.backend, p.tiny, p.n_classes, p.seed)
    log.info("tiny %s checkpoint (%d classes) in %s", p.backend, p.n_classes, folder)
