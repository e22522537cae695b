"""Snakemake adapter: a grid of example images per class."""
from ibdiv import data
from ibdiv.figures import grids
from ibdiv.runlog import job

with job(snakemake.log[0], snakemake.threads):
    dataset = data.load_prepared(snakemake.input.data)
    grids.class_examples(dataset, snakemake.output.png, title=f"{snakemake.wildcards.dataset}: examples per class")
