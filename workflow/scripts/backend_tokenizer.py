"""Snakemake adapter: the dataset's tokenizer file as a pointer to the backend's VQ."""
from ibdiv import pretrained
from ibdiv.io import load_json
from ibdiv.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    spec = load_json(snakemake.input.backend)
    pretrained.write_tokenizer_pointer(snakemake.output.model, spec)
    vq = pretrained.load_tokenizer_pointer(snakemake.output.model)  # loads now: fail here, not downstream
    log.info("%s VQ: K=%d, grid %d, %d px images, decoded to %d px grey", spec["family"], vq.cfg.codebook_size,
             vq.cfg.grid, vq.vq_image_size, vq.cfg.image_size)
