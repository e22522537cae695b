"""Snakemake adapter: train the evaluation CNN and report held-out accuracy."""
import numpy as np

from ibdiv.data import classifier, datasets, shapes
from ibdiv.core.seeds import derive_seed
from ibdiv.core.io import save_json
from ibdiv.core.runlog import job

with job(snakemake.log[0], snakemake.threads) as log:
    cfg, name = snakemake.params.cfg, snakemake.wildcards.dataset
    train = datasets.load_prepared(snakemake.input.data, "train")
    heldout = datasets.load_prepared(snakemake.input.data, "heldout")
    n_layouts = shapes.N_LAYOUTS if train.layouts is not None else 0
    model = classifier.train_classifier(
        train.images, train.labels, train.layouts, classifier.ClassifierConfig(train.n_classes, n_layouts),
        steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=derive_seed(snakemake.params.seed, name, "classifier"),
    )
    pred = classifier.predict(model, heldout.images)
    metrics = {"heldout_accuracy": float(np.mean(pred["pred"] == heldout.labels)), "n_heldout": len(heldout.labels)}
    if n_layouts:
        metrics["heldout_layout_accuracy"] = float(np.mean(pred["layout_pred"] == heldout.layouts))
    log.info("%s", metrics)
    classifier.save_classifier(snakemake.output.model, model)
    save_json(snakemake.output.metrics, metrics)
