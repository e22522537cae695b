"""Snakemake adapter: the report's landing tables of one dataset (ibdiv.findings)."""
import pandas as pd

from ibdiv import findings
from ibdiv.io import save_text
from ibdiv.runlog import job

i, o = snakemake.input, snakemake.output
with job(snakemake.log[0], snakemake.threads) as log:
    generators = pd.read_csv(i.generators)
    tables = {
        o.labels: findings.labels_table(pd.read_csv(i.stability), generators),
        o.classification: findings.classification_table(pd.read_csv(i.classification)),
        o.generators: findings.generators_summary(generators),
    }
    for path, table in tables.items():
        log.info("%s\n%s", path, table.to_string())
        save_text(path, table.to_csv(index=False))
