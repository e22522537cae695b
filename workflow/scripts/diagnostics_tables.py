"""Snakemake adapter: measurement table, classification inputs, labels and their stability
(at full K and at every coarse alphabet: the coarse_k column, 0 = full K)."""
import pandas as pd

from ibdiv.core import registry
from ibdiv.report import tables
from ibdiv.core.io import save_text
from ibdiv.core.runlog import job

p = snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    measurements = tables.measurements_table(snakemake.input.reference, snakemake.input.measured)
    generators = pd.read_csv(snakemake.input.generators)
    classified = tables.classification_tables(measurements, generators, p.probes, p.classification,
                                              snakemake.wildcards.dataset)
    # the enhancement compares D along knobs at full K only (coarse rows would count twice)
    full = tables.at_alphabet(measurements)
    enhancement = tables.enhancement_table(full, p.probes)
    enhancement_name = registry.probe_of_kind(p.probes, "enhancement")
    headline = tables.enhancement_headline(enhancement, enhancement_name, full) if not enhancement.empty else pd.DataFrame()
    log.info("\n%s", classified["classification"][["family", "seed", "point", "coarse_k", "kappa", "delta", "eta",
                                                   "decoupling_index", "label"]].to_string())
    # the paired replicates are lists (in measure.json); the CSV keeps the numbers
    outputs = {"measurements": measurements.drop(columns=[tables.PAIRED], errors="ignore"), **classified,
               "enhancement": enhancement, "headline": headline}
    for name, table in outputs.items():
        save_text(snakemake.output[name], table.to_csv(index=False, float_format="%.6g"))
