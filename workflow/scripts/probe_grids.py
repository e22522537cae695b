"""Snakemake adapter: decoded sample grids of every probe cache (first seed, neutral point)."""
from pathlib import Path

from ibdiv.core import registry
from ibdiv.data import tokenizer
from ibdiv.report.figures import grids
from ibdiv.core.io import load_npz
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    for path in snakemake.input.samples:
        probe, family = Path(path).parts[-5], Path(path).parts[-4]
        nested = p.probes[probe]["kind"] in registry.NESTED_KINDS
        what = "class 0; rows = cell x path, columns = continuations" if nested else "rows = cells, columns = classes"
        grids.probe_grid(vq.decode, load_npz(path), out / f"{probe}_{family}.png", nested=nested,
                           title=f"{w.dataset}: {probe}, {family} ({what})")
    log.info("%d grids", len(snakemake.input.samples))
