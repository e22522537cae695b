"""Snakemake adapter: a grid of example images per class."""
from ibdiv.data import datasets
from ibdiv.report.figures import grids
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads):
    dataset = datasets.load_prepared(snakemake.input.data)
    grids.class_examples(dataset, snakemake.output.png, title=f"{snakemake.wildcards.dataset}: examples per class")
