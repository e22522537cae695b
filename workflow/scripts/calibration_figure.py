"""Snakemake adapter: the label calibration figure (confusion shares and SE ratios)."""
import pandas as pd

from ibdiv.figures import calibration_plots
from ibdiv.runlog import job

with job(snakemake.log[0], snakemake.threads):
    confusion = pd.read_csv(snakemake.input.confusion, index_col="case")
    calibration_plots.calibration_confusion(confusion, pd.read_csv(snakemake.input.se), snakemake.output.png)
