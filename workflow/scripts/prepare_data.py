"""Snakemake adapter: build, validate and split one dataset."""
from ibdiv.data import datasets
from ibdiv.core.seeds import derive_seed
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    spec, seed = snakemake.params.spec, snakemake.params.seed
    dataset = datasets.load_source(spec, derive_seed(seed, snakemake.wildcards.dataset, "data"))
    heldout = datasets.stratified_split(dataset.labels, spec["heldout_fraction"], derive_seed(seed, snakemake.wildcards.dataset, "split"))
    log.info("%d images %s, %d classes, %d held out", len(dataset.labels), dataset.images.shape[1:], dataset.n_classes, heldout.sum())
    datasets.save_prepared(snakemake.output[0], dataset, heldout)
