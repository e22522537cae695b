"""Snakemake adapter: the headline numbers of every dataset in one JSON file, and the flat
numbers DVC compares experiments by (results/metrics.json: the quantities and the labels,
as codes)."""
from ibdiv.core.io import save_json
from ibdiv.core.runlog import job
from ibdiv.report.tables import dvc_metrics, headline_summary

i = snakemake.input
with job(snakemake.log[0], snakemake.threads) as log:
    summary = headline_summary(snakemake.params.datasets, i.stability, i.classification, i.headline, i.generators,
                               confusion_path=i.confusion)
    log.info("%s", summary)
    save_json(snakemake.output.summary, summary)
    save_json(snakemake.output.metrics, dvc_metrics(snakemake.params.datasets, i.stability, i.generators,
                                                           classification_paths=i.classification))
