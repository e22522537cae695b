"""Snakemake adapter: does the nested estimator recover the oracle's known split? At full K
(coarse_k FULL_K) and at every coarse alphabet the clamp was measured at, with the truth counted
through the same map (DESIGN §13)."""
import pandas as pd

from ibdiv.measure import coarse, diagnostics
from ibdiv.data import tokenizer
from ibdiv.report.figures import calibration_plots
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import load_json, save_text
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    runs = load_json(snakemake.input.clamp)["runs"]
    run = next(r for r in runs if r["family"] == "oracle" and r["seed"] == int(p.oracle_seed))
    # the alphabets the clamp was measured at, so truth and estimates always match
    maps = coarse.tokenizer_maps(vq, [int(k) for k in run.get("coarse", {})], p.seed)
    truth = diagnostics.oracle_ground_truth(vq, p.executions, derive_seed(p.seed, w.dataset, "oracle-truth"), p.method, maps)
    rows = [{"coarse_k": coarse.FULL_K, **row} for row in diagnostics.oracle_validation(truth, run["measurements"])]
    for k, cells in run.get("coarse", {}).items():
        rows += [{"coarse_k": int(k), **row} for row in diagnostics.oracle_validation(truth["coarse"][k], cells)]
    table = pd.DataFrame(rows)
    log.info("\n%s", table.to_string())
    save_text(snakemake.output.table, table.to_csv(index=False, float_format="%.6g"))
    calibration_plots.truth_vs_estimate(table[table.coarse_k == coarse.FULL_K], snakemake.output.figure,
                              title=f"{w.dataset}: oracle, nested estimator vs ground truth")
