"""Snakemake adapter: the baseline sample cache of one family at one operating point (in-house
datasets; a pretrained dataset's runs draw theirs in sample_probes.py, by the same function)."""
from ibdiv.core import devices, registry
from ibdiv.measure import probes
from ibdiv.data import tokens
from ibdiv.core.io import save_npz
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    ref = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    model = probes.load_sampler(w.family, snakemake.input.model, devices.resolve(p.device))
    seed = probes.sampling_seed(p.seed, w.dataset, w.family, w.seed, w.point)
    cache = probes.draw_baseline(model, ref, p.sampling, p.knobs, seed, devices.resolve(p.device), log)
    save_npz(snakemake.output[0], **cache)
