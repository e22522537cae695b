"""Snakemake adapter: the label calibration figure (confusion shares and SE ratios)."""
import pandas as pd

from ibdiv.report.figures import calibration_plots
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads):
    confusion = pd.read_csv(snakemake.input.confusion, index_col="case")
    calibration_plots.calibration_confusion(confusion, pd.read_csv(snakemake.input.se), snakemake.output.png)
