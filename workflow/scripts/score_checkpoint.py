"""Snakemake adapter: a pretrained backend's held-out bits/token on the real held-out tokens."""
import torch

from ibdiv.core import devices, registry
from ibdiv.measure import probes
from ibdiv.data import tokens
from ibdiv.core.io import save_json
from ibdiv.core.seeds import derive_seed
from ibdiv.core.runlog import job

w = snakemake.wildcards
with job(snakemake.log[0], snakemake.threads) as log:
    held = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    model = probes.load_sampler(w.family, snakemake.input.model, devices.resolve(snakemake.params.device))
    module = registry.implementation(w.family)
    device = next(model.parameters()).device
    with torch.no_grad():
        # the ELBO bound of MIM / diffusion backends draws masks: from a seeded CPU generator (DESIGN §10)
        masks = torch.Generator().manual_seed(derive_seed(snakemake.params.seed, w.dataset, w.family, w.seed, "score"))
        # rows_per_call rows a network call (the masked backends' Monte-Carlo bound: masked rows; LlamaGen's
        # exact NLL: sequences), sized from resources.memory_gib at start (ibdiv.pipeline.sizing);
        # without a budget, the backend's default
        chunk = snakemake.params.rows_per_call
        sized = {} if chunk is None else {"rows_per_call": chunk}
        log.info("held-out score of %d sequences, %s", len(held.tokens),
                 f"{chunk} rows a network call (resources.memory_gib)" if sized else "the backend's default chunk")
        bits = float(module.heldout_bits_per_token(model, torch.from_numpy(held.tokens).to(device),
                                                   torch.from_numpy(held.labels).to(device), masks, **sized))
    metrics = {"family": w.family, "seed": int(w.seed), "heldout_bits_per_token": bits,
               "n_parameters": sum(p.numel() for p in model.parameters()),
               "likelihood": "exact NLL" if registry.family(w.family).exact_likelihood else "ELBO bound",
               "pretrained": True}
    log.info("%s", probes.peak_memory(device))  # beside the estimate printed at start
    log.info("%s", metrics)
    save_json(snakemake.output.metrics, metrics)
