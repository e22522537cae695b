"""Snakemake adapter: check and hash a backend's checkpoint folder; add the conditions' class ids."""
from ibdiv import checkpoints, pretrained
from ibdiv.io import save_json
from ibdiv.runlog import job

p = snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    spec = pretrained.backend_spec(checkpoints.record(snakemake.input.folder, p.backend), p.class_ids, p.image_size)
    log.info("%s checkpoint %s: sha256 %s, grid %d, class ids %s", p.backend, spec["folder"], spec["sha256"],
             spec["grid"], spec["class_ids"])
    save_json(snakemake.output[0], spec)
