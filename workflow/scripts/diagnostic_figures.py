"""Snakemake adapter: every diagnostic figure of one dataset (PNG + PDF + the CSV behind it)."""
import pandas as pd

from ibdiv import figures
from ibdiv.runlog import job

out = snakemake.output
with job(snakemake.log[0], snakemake.threads) as log:
    m = pd.read_csv(snakemake.input.measurements)
    summary = pd.read_csv(snakemake.input.summary)
    classified = pd.read_csv(snakemake.input.classification)
    figures.ib_plane(m, classified, out.ib_plane)
    figures.iso_quality(m, out.iso_quality)
    figures.allocation(m, out.allocation)
    figures.layout_commitment(m, out.layout_commitment)
    figures.responses(m, out.responses)
    figures.decoupling_matrices(summary, out.decoupling)
    figures.pareto(m, out.pareto)
    log.info("figures written")
