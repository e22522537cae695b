"""Snakemake adapter: the label calibration suite (confusion table) and the SE calibration."""
import pandas as pd

from ibdiv.verdict import calibration_suite
from ibdiv.core.io import save_text
from ibdiv.core.runlog import job

p, out = snakemake.params, snakemake.output
with job(snakemake.log[0], snakemake.threads) as log:
    args = (p.measure, p.probe, p.classification)
    decoupled = calibration_suite.run_suite(p.calibration["se_replicates"], *args, cases=("decoupled",), progress=True)
    others = tuple(c for c in calibration_suite.CASES if c != "decoupled")
    rest = calibration_suite.run_suite(p.calibration["seeds"], *args, cases=others, progress=True)
    results = pd.concat([decoupled, rest], ignore_index=True)
    confusion = calibration_suite.confusion(results)
    se = calibration_suite.se_calibration(results)
    log.info("confusion (share of seeds per label):\n%s", confusion.to_string())
    log.info("SE calibration (mean SE / spread):\n%s", se.to_string())
    save_text(out.results, results.to_csv(index=False, float_format="%.6g"))
    save_text(out.confusion, confusion.to_csv(float_format="%.4g"))
    save_text(out.se, se.to_csv(index=False, float_format="%.4g"))
