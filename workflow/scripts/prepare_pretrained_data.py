"""Snakemake adapter: a pretrained dataset's real images (one folder per condition) prepared."""
from ibdiv.data import datasets
from ibdiv.backends import pretrained
from ibdiv.core.io import load_json
from ibdiv.core.runlog import job
from ibdiv.core.seeds import derive_seed

with job(snakemake.log[0], snakemake.threads) as log:
    spec, seed = snakemake.params.spec, snakemake.params.seed
    backend = load_json(snakemake.input.backend)
    dataset, rgb = pretrained.load_prepared_source(spec, backend)
    heldout = datasets.stratified_split(dataset.labels, spec["heldout_fraction"], derive_seed(seed, snakemake.wildcards.dataset, "split"))
    log.info("%d images, grey %s, rgb %s, %d conditions, %d held out", len(dataset.labels), dataset.images.shape[1:],
             rgb.shape[1:], dataset.n_classes, heldout.sum())
    datasets.save_prepared(snakemake.output[0], dataset, heldout, rgb=rgb)
