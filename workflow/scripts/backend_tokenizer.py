"""Snakemake adapter: the dataset's tokenizer file as a pointer to the backend's VQ."""
from ibdiv.data import backend_tokenizer
from ibdiv.core.io import load_json
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    backend = load_json(snakemake.input.backend)
    backend_tokenizer.write_pointer(snakemake.output.model, backend)
    vq = backend_tokenizer.load_pointer(snakemake.output.model)  # loads now: a broken VQ fails here, not downstream
    log.info("%s VQ: K=%d, grid %d, %d px images, decoded to %d px grey", backend["family"], vq.cfg.codebook_size,
             vq.cfg.grid, vq.vq_image_size, vq.cfg.image_size)
