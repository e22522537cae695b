"""Snakemake adapter of both measuring shapes (workflow/rules/probes.smk): every estimand of every
cell of every sample cache of the probes `params.probes` of one dataset, one measure.json per probe
(ibdiv.measure.probe_measures): one probe (measure_probe, in-house datasets) or every probe of a
pretrained backend's dataset (measure_probes_<dataset>, tokenizer, classifier and reference loaded once)."""
from ibdiv.measure import probe_measures
from ibdiv.core import registry
from ibdiv.core.io import load_npz, save_json
from ibdiv.core.runlog import job

w, p = snakemake.wildcards, snakemake.params
with job(snakemake.log[0], snakemake.threads) as log:
    registry.declare(snakemake.config)  # families the config brings itself
    vq, cnn, reference, maps = probe_measures.load_readers(snakemake.input.tokenizer, snakemake.input.classifier,
                                                           snakemake.input.reference, p.measure, p.seed)
    samples = iter(snakemake.input.samples)  # every probe's caches, probe by probe in params order
    for (name, spec), out in zip(p.probes.items(), snakemake.output, strict=True):
        runs = p.runs[name]
        caches = [load_npz(next(samples)) for _ in runs]
        save_json(out, probe_measures.measure_probe(name, spec, runs, caches, dataset=w.dataset, measure=p.measure,
                                                    base_seed=p.seed, vq=vq, cnn=cnn, reference=reference, maps=maps,
                                                    log=log))
