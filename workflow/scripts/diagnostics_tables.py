"""Snakemake adapter: measurement table, classification inputs, labels and their stability."""
import pandas as pd

from ibdiv import classification, registry, tables
from ibdiv.io import save_text
from ibdiv.runlog import job

p = snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    measurements = tables.measurements_table(snakemake.input.reference, snakemake.input.measured)
    generators = pd.read_csv(snakemake.input.generators)
    summary = tables.summary_table(measurements, generators, p.probes, p.classification["iso_accuracy"])
    summary.insert(0, "dataset", snakemake.wildcards.dataset)
    classified = classification.classify_rows(summary, p.classification)
    stability = classification.stability(classified)
    enhancement = tables.enhancement_table(measurements, p.probes)
    enhancement_name = registry.probe_of_kind(p.probes, "enhancement")
    headline = tables.enhancement_headline(enhancement, enhancement_name, measurements) if not enhancement.empty else pd.DataFrame()
    log.info("\n%s", classified[["family", "seed", "point", "kappa", "delta", "eta", "decoupling_index", "label"]].to_string())
    outputs = {"measurements": measurements, "summary": summary, "classification": classified,
               "stability": stability, "enhancement": enhancement, "headline": headline}
    for name, table in outputs.items():
        save_text(snakemake.output[name], table.to_csv(index=False, float_format="%.6g"))
