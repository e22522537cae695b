"""Snakemake adapter: every diagnostic figure of one dataset (PNG + PDF + the CSV behind it),
drawn at full K (coarse_k 0); the coarse alphabets' numbers are in the tables."""
import pandas as pd

from ibdiv import figures
from ibdiv.runlog import job

out = snakemake.output
with job(snakemake.log[0], snakemake.threads) as log:
    m, summary, classified = (pd.read_csv(path).query("coarse_k == 0") for path in (
        snakemake.input.measurements, snakemake.input.summary, snakemake.input.classification))
    figures.ib_plane(m, classified, out.ib_plane)
    figures.iso_quality(m, out.iso_quality)
    figures.allocation(m, out.allocation)
    figures.layout_commitment(m, out.layout_commitment)
    figures.responses(m, out.responses)
    figures.decoupling_matrices(summary, out.decoupling)
    figures.pareto(m, out.pareto)
    log.info("figures written")
