"""End to end on a pretrained backend (DESIGN §12, issue 13): the DAG on config.pretrained-smoke.yaml
(a tiny random LlamaGen checkpoint and demo reference images, both built by the DAG), in a
temporary copy of the repository."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import copy_repository, snakemake

pytestmark = pytest.mark.e2e
CONFIG = "config.pretrained-smoke.yaml"
D = "llamagen_tiny"
TARGETS = [f"results/tables/{D}/classification.csv", f"results/tables/{D}/generators.csv",
           f"results/tables/{D}/findings/labels.csv", f"results/{D}/figures/samples",
           f"results/{D}/figures/probes", f"results/{D}/tokenizer/evaluation.json"]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    work = copy_repository(tmp_path_factory.mktemp("pretrained_smoke"))
    snakemake(work, "--", *TARGETS, configfile=CONFIG)  # `--`: --configfile takes several values
    return work


def test_llamagen_is_classified(pretrained_run):
    table = pd.read_csv(pretrained_run / f"results/tables/{D}/classification.csv")
    assert "llamagen" in set(table["family"])


def test_tokens_are_the_backend_vq_s_codes_of_the_real_images(pretrained_run):
    cfg = yaml.safe_load((pretrained_run / CONFIG).read_text())["datasets"][D]
    tiny, n = cfg["checkpoint"]["tiny"], cfg["render_shapes"]["n_per_condition"]
    cache = np.load(pretrained_run / f"results/{D}/tokens.npz")
    assert cache["tokens"].shape == (n * len(cfg["conditions"]), tiny["grid"] ** 2)
    assert int(cache["codebook_size"]) == tiny["vq"]["codebook_size"]
    backend = json.loads((pretrained_run / f"results/{D}/backend.json").read_text())
    assert backend["class_ids"] == [c["class_id"] for c in cfg["conditions"]]
    assert ".snakemake_timestamp" not in backend["files"]


def test_backend_is_scored_not_trained(pretrained_run):
    generators = pd.read_csv(pretrained_run / f"results/tables/{D}/generators.csv")
    assert set(generators["family"]) == {"llamagen", "independent"}
    assert generators["heldout_bits_per_token"].notna().all()
    assert not (pretrained_run / f"results/{D}/priors/llamagen/seed0/model.pt").exists()


def test_second_run_has_nothing_to_do(pretrained_run):
    out = snakemake(pretrained_run, "-n", "--", *TARGETS, configfile=CONFIG).stdout
    assert "Nothing to be done" in out or "Job stats" not in out, out[-2000:]
