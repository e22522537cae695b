"""Snakemake adapter: every diagnostic figure of one dataset (PNG + PDF + the CSV behind it)."""
import pandas as pd

from ibdiv import figures, registry
from ibdiv.runlog import job

out, probes = snakemake.output, snakemake.params.probes
with job(snakemake.log[0], snakemake.threads) as log:
    m = pd.read_csv(snakemake.input.measurements)
    summary = pd.read_csv(snakemake.input.summary)
    classified = pd.read_csv(snakemake.input.classification)
    figures.ib_plane(m, classified, out.ib_plane)
    clamp = registry.probe_of_kind(probes, "path_clamp")
    figures.iso_quality(m, out.iso_quality, registry.iso_quality_probe(probes))
    figures.allocation(m, out.allocation, clamp)
    figures.layout_commitment(m, out.layout_commitment, clamp)
    figures.responses(m, out.responses)
    figures.decoupling_matrices(summary, out.decoupling)
    figures.pareto(m, out.pareto, nested_kinds=registry.NESTED_KINDS)
    log.info("figures written")
