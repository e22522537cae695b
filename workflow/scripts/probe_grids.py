"""Snakemake adapter: decoded sample grids of every probe cache (first seed, neutral point)."""
from pathlib import Path

from ibdiv import figures, probes, tokenizer
from ibdiv.io import load_npz
from ibdiv.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    for path in snakemake.input.samples:
        probe, family = Path(path).parts[-5], Path(path).parts[-4]
        kind = p.probes[probe]["kind"]
        what = "rows = cells, columns = classes" if kind in probes.FLAT_KINDS else "class 0; rows = cell x path, columns = continuations"
        figures.probe_grid(vq.decode, load_npz(path), out / f"{probe}_{family}.png", nested=kind not in probes.FLAT_KINDS,
                           title=f"{w.dataset}: {probe}, {family} ({what})")
    log.info("%d grids", len(snakemake.input.samples))
