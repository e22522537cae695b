"""Snakemake adapter: every diagnostic figure of one dataset (PNG + PDF + the CSV behind it),
drawn at full K (coarse_k 0); the coarse alphabets' numbers are in the tables. Which figures and
how each is drawn: ibdiv.report.figures.catalogue (one row per figure)."""
import pandas as pd

from ibdiv.core import registry
from ibdiv.report.figures import catalogue, diagnostic_plots
from ibdiv.core.runlog import job

out, probes = snakemake.output, snakemake.params.probes
with job(snakemake.log[0], snakemake.threads) as log:
    m, summary, classified = (pd.read_csv(path).query("coarse_k == 0") for path in (
        snakemake.input.measurements, snakemake.input.summary, snakemake.input.classification))
    given = {"measurements": m, "summary": summary, "classification": classified, "probes": probes,
             "iso_quality_probe": registry.iso_quality_probe(probes),
             "clamp_probe": registry.probe_of_kind(probes, "path_clamp"), "nested_kinds": registry.NESTED_KINDS}
    assert set(given) | {"path"} == set(catalogue.ARGUMENTS)
    for figure in catalogue.DIAGNOSTIC_FIGURES:
        function, args, keywords = catalogue.call(figure)
        values = {**given, "path": getattr(out, figure.name)}
        getattr(diagnostic_plots, function)(*(values[a] for a in args), **{k: values[v] for k, v in keywords.items()})
    log.info("figures written")
