"""Snakemake adapter: check and hash a backend's checkpoint folder; add the conditions."""
from ibdiv.backends import checkpoints, pretrained
from ibdiv.core.io import save_json
from ibdiv.core.runlog import job

spec = snakemake.params.spec
with job(snakemake.log[0], snakemake.threads) as log:
    backend = pretrained.backend_spec(checkpoints.record(snakemake.input.folder, spec["backend"]), spec)
    log.info("%s checkpoint %s: sha256 %s, grid %d, VQ images %d px, conditions %s", spec["backend"],
             backend["folder"], backend["sha256"], backend["grid"], backend["vq_image_size"], backend["conditions"])
    save_json(snakemake.output[0], backend)
