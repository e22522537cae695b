"""Snakemake adapter: the headline numbers of every dataset in one JSON file."""
from ibdiv.io import save_json
from ibdiv.runlog import job
from ibdiv.tables import headline_summary

i = snakemake.input
with job(snakemake.log[0], snakemake.threads) as log:
    summary = headline_summary(snakemake.params.datasets, i.stability, i.classification, i.headline, i.generators)
    log.info("%s", summary)
    save_json(snakemake.output[0], summary)
