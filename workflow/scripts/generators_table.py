"""Snakemake adapter: one table of every family, seed and operating point of a dataset."""
from ibdiv.core.io import save_text
from ibdiv.core.runlog import job
from ibdiv.report.tables import generators_table

with job(snakemake.log[0], snakemake.threads) as log:
    table = generators_table(snakemake.input.priors, snakemake.input.baseline, snakemake.input.classifier)
    log.info("\n%s", table.to_string())
    save_text(snakemake.output[0], table.to_csv(index=False, float_format="%.6g"))
