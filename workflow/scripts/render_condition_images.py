"""Snakemake adapter: demo reference images, one PNG folder per condition."""
from ibdiv.backends import pretrained
from ibdiv.core.runlog import job
from ibdiv.core.seeds import derive_seed

p = snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    pretrained.render_condition_images(snakemake.output[0], p.names, p.n_per_condition, p.image_size,
                                       derive_seed(p.seed, snakemake.wildcards.dataset, "render"))
    log.info("%d images of %d px for each of %s", p.n_per_condition, p.image_size, p.names)
