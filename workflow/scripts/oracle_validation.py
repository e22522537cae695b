"""Snakemake adapter: does the nested estimator recover the oracle's known split?"""
import pandas as pd

from ibdiv import diagnostics, figures, tokenizer
from ibdiv.seeds import derive_seed
from ibdiv.io import load_json, save_text
from ibdiv.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    truth = diagnostics.oracle_ground_truth(vq, p.executions, derive_seed(p.seed, w.dataset, "oracle-truth"), p.method)
    runs = load_json(snakemake.input.clamp)["runs"]
    cells = next(r["measurements"] for r in runs if r["family"] == "oracle" and r["seed"] == int(p.oracle_seed))
    table = pd.DataFrame(diagnostics.oracle_validation(truth, cells))
    log.info("\n%s", table.to_string())
    save_text(snakemake.output.table, table.to_csv(index=False, float_format="%.6g"))
    figures.truth_vs_estimate(table, snakemake.output.figure, title=f"{w.dataset}: oracle, nested estimator vs ground truth")
