"""Snakemake adapter: held-out reconstruction quality, code usage, classifier accuracy on
reconstructions next to originals, and the reconstruction figure."""
from ibdiv.data import classifier, datasets, tokenizer, tokens
from ibdiv.report.figures import grids
from ibdiv.core.io import save_json
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    heldout = datasets.load_prepared(snakemake.input.data, "heldout")
    vq = tokenizer.load_tokenizer(snakemake.input.tokenizer)
    cnn = classifier.load_classifier(snakemake.input.classifier)
    metrics, recon = tokens.evaluate_reconstructions(vq, cnn, heldout)
    log.info("%s", metrics)
    save_json(snakemake.output.metrics, metrics)
    grids.reconstructions(heldout, recon, snakemake.output.figure, title=f"{snakemake.wildcards.dataset}: originals (odd rows) vs VQ decodings (even rows)")
