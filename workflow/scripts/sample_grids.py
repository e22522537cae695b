"""Snakemake adapter: decoded grids of every baseline sample cache (rows = classes)."""
from pathlib import Path

from ibdiv.data import tokenizer
from ibdiv.report.figures import grids
from ibdiv.core.io import load_npz
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    for (family, seed, point), path in zip(p.runs, snakemake.input.samples):
        cache = load_npz(path)
        grids.sample_grid(vq.decode, cache["tokens"], cache["labels"], out / f"{family}_seed{seed}_{point}.png",
                            title=f"{w.dataset}: {family} seed {seed}, {point} (rows = classes)")
    log.info("%d grids", len(snakemake.input.samples))
