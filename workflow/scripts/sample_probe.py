"""Snakemake adapter: draw every cell of one probe for one family / seed / operating point."""
import numpy as np

from ibdiv.core import devices, registry
from ibdiv.measure import probes
from ibdiv.data import tokens
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import load_npz, save_npz
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    ref = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    model = probes.load_sampler(w.family, snakemake.input.model, devices.resolve(p.device))
    seed = probes.sampling_seed(p.seed, w.dataset, w.family, w.seed, w.point)
    noise_seed = derive_seed(p.seed, w.dataset, w.family, w.seed, w.point, w.probe, "noise")
    # the cell that is the baseline cache bit for bit, copied rather than drawn again
    given = {cell: probes.baseline_as_cell(load_npz(path), seed=seed)
             for cell, path in zip(p.baseline_cell, snakemake.input.baseline)}
    if given:
        log.info("cell %s is the baseline %s", *given, *snakemake.input.baseline)
    if p.nested_batch:  # a nested design whose continuations do not fit one call (ibdiv.pipeline.sizing)
        log.info("nested continuations drawn %d a call (resources.memory_gib)", p.nested_batch)
    out = probes.run_probe(model, p.probe, int(ref.labels.max()) + 1, p.knobs, per_class=p.per_class,
                           seed=seed, noise_seed=noise_seed, batch_size=p.batch_size, given=given,
                           nested_batch=p.nested_batch)
    out["tokens"] = out["tokens"].astype(tokens.compact_dtype(ref.codebook_size))
    out["cells"] = np.array([str(c) for c in probes.probe_cells(p.probe)])
    log.info("%s: %s cells, tokens %s", w.probe, len(out["cells"]), out["tokens"].shape)
    if "suppressed_replacements" in out:  # nested design on a process that revises visible codes
        log.info("replacements of committed codes suppressed by freezing the prefix, per cell: %s",
                 out["suppressed_replacements"].tolist())
    log.info("%s", probes.peak_memory(devices.resolve(p.device)))  # beside the estimate printed at start
    save_npz(snakemake.output[0], **out)
