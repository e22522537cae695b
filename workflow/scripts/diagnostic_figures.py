"""Snakemake adapter: every diagnostic figure of one dataset (PNG + PDF + the CSV behind it),
drawn at full K (coarse_k 0); the coarse alphabets' numbers are in the tables."""
import pandas as pd

from ibdiv.core import registry
from ibdiv.report.figures import diagnostic_plots
from ibdiv.core.runlog import job

out, probes = snakemake.output, snakemake.params.probes
with job(snakemake.log[0], snakemake.threads) as log:
    m, summary, classified = (pd.read_csv(path).query("coarse_k == 0") for path in (
        snakemake.input.measurements, snakemake.input.summary, snakemake.input.classification))
    diagnostic_plots.ib_plane(m, classified, out.ib_plane)
    clamp = registry.probe_of_kind(probes, "path_clamp")
    diagnostic_plots.iso_quality(m, out.iso_quality, registry.iso_quality_probe(probes))
    diagnostic_plots.allocation(m, out.allocation, clamp)
    diagnostic_plots.layout_commitment(m, out.layout_commitment, clamp)
    diagnostic_plots.responses(m, out.responses)
    diagnostic_plots.decoupling_matrices(summary, out.decoupling)
    diagnostic_plots.pareto(m, out.pareto, nested_kinds=registry.NESTED_KINDS)
    log.info("figures written")
