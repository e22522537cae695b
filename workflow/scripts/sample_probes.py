"""Snakemake adapter of both sampling shapes (workflow/rules/probes.smk): the probes `params.probes`
of one family / seed / operating point, one cache each: one probe (sample_probe, in-house datasets),
or on a pretrained backend's dataset, whose jobs' start-up costs more than their sampling, the run's
baseline cache and then every probe of the run (sample_run_<family>_<point>). Each cache is the
same either way (probes.baseline_cache, probes.probe_cache)."""
from ibdiv.core import devices, registry
from ibdiv.measure import probes
from ibdiv.data import tokens
from ibdiv.core.io import load_npz, save_npz
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    ref = tokens.load_token_cache(snakemake.input.tokens, "heldout")
    model = probes.load_sampler(w.family, snakemake.input.model, devices.resolve(p.device))
    run_seed = probes.sampling_seed(p.seed, w.dataset, w.family, w.seed, w.point)
    if "baseline" in snakemake.output.keys():  # a grouped run: its baseline first, as sample_baseline draws it
        cache = probes.draw_baseline(model, ref, p.sampling, p.knobs, run_seed, devices.resolve(p.device), log,
                                     prefix="baseline: ")  # before any probe's peak (gpu-runbook.md)
        save_npz(snakemake.output.baseline, **cache)
        baseline_path, caches = snakemake.output.baseline, snakemake.output.get("probes", [])
    else:
        baseline_path, caches = (snakemake.input.baseline or [None])[0], snakemake.output
    # the run's baseline cache, where a probe's cell is it bit for bit (copied rather than drawn again),
    # read back from its file as a later job would
    baseline = load_npz(baseline_path) if baseline_path and any(c is not None for c in p.baseline_cells.values()) else None
    if p.nested_batch:  # a nested design whose continuations do not fit one call (ibdiv.pipeline.sizing)
        log.info("nested continuations drawn %d a call (resources.memory_gib)", p.nested_batch)
    for (name, spec), path in zip(p.probes.items(), caches, strict=True):
        cell = p.baseline_cells[name]
        if cell is not None:
            log.info("%s: cell %s is the baseline %s", name, cell, baseline_path)
        out = probes.probe_cache(model, name, spec, n_classes=int(ref.labels.max()) + 1, knobs=p.knobs,
                                 per_class=p.per_class, run=(w.dataset, w.family, w.seed, w.point), base_seed=p.seed,
                                 baseline=baseline, baseline_cell=cell, batch_size=p.batch_size,
                                 nested_batch=p.nested_batch)
        out["tokens"] = out["tokens"].astype(tokens.compact_dtype(ref.codebook_size))
        log.info("%s: %s cells, tokens %s", name, len(out["cells"]), out["tokens"].shape)
        if "suppressed_replacements" in out:  # nested design on a process that revises visible codes
            log.info("%s: replacements of committed codes suppressed by freezing the prefix, per cell: %s",
                     name, out["suppressed_replacements"].tolist())
        save_npz(path, **out)
    log.info("%s", probes.peak_memory(devices.resolve(p.device)))  # beside the estimate printed at start
