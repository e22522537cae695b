"""Snakemake adapter: the report's landing tables of one dataset (ibdiv.report.findings)."""
import pandas as pd

from ibdiv.report import findings
from ibdiv.verdict.classification import suite_flags
from ibdiv.core.io import save_text
from ibdiv.core.runlog import job

i, o = snakemake.input, snakemake.output
with job(snakemake.log[0], snakemake.threads) as log:
    generators = pd.read_csv(i.generators)
    tables = {
        o.labels: findings.labels_table(pd.read_csv(i.stability), generators,
                                        suite_flags(pd.read_csv(i.confusion, index_col=0))),
        o.classification: findings.classification_table(pd.read_csv(i.classification)),
        o.generators: findings.generators_summary(generators),
    }
    for path, table in tables.items():
        log.info("%s\n%s", path, table.to_string())
        save_text(path, table.to_csv(index=False))
