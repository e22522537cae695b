"""Snakemake adapter: decoded grids of every baseline sample cache (rows = classes)."""
from pathlib import Path

from ibdiv import figures, tokenizer
from ibdiv.io import load_npz
from ibdiv.runlog import job
from ibdiv.tables import run_keys

w = snakemake.wildcards
with job(snakemake.log[0], snakemake.threads) as log:
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    for path in snakemake.input.samples:
        run = run_keys(path)
        cache = load_npz(path)
        name = f"{run['family']}_seed{run['seed']}_{run['point']}"
        figures.sample_grid(vq.decode, cache["tokens"], cache["labels"], out / f"{name}.png",
                            title=f"{w.dataset}: {run['family']} seed {run['seed']}, {run['point']} (rows = classes)")
    log.info("%d grids", len(snakemake.input.samples))
