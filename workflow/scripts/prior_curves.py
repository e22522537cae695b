"""Snakemake adapter: every prior's training curve of one dataset in one long table (run, family,
seed, step, train_loss, heldout_bits), the file DVC plots (one line per run, see dvc.yaml)."""
import pandas as pd

from ibdiv.core.io import save_text
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    tables = []
    for (family, seed), path in zip(snakemake.params.runs, snakemake.input.curves):
        curve = pd.read_csv(path)
        tables.append(curve.assign(run=f"{family}/seed{seed}", family=family, seed=int(seed)))
    table = pd.concat(tables, ignore_index=True)
    table = table[["run", "family", "seed", *[c for c in table.columns if c not in ("run", "family", "seed")]]]
    log.info("%d curves, %d rows", len(tables), len(table))
    save_text(snakemake.output[0], table.to_csv(index=False))
