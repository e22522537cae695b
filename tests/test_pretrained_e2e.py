"""End to end on the pretrained backends (DESIGN §12): the whole DAG on config/pretrained-smoke.yaml
(tiny random LlamaGen, aMUSEd and VQ-Diffusion checkpoints and demo reference images, all built by
the DAG), report included, in a temporary copy of the repository."""
import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, copy_repository, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.pretrained]
pytest.importorskip("diffusers")
CONFIG = "config/pretrained-smoke.yaml"
BACKENDS = {"llamagen_tiny": "llamagen", "amused_tiny": "amused", "vq_diffusion_tiny": "vq_diffusion"}


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    work = copy_repository(tmp_path_factory.mktemp("pretrained_smoke"))
    snakemake(work, configfile=CONFIG)
    snakemake(work, "--report", "results/report.html", "--report-stylesheet", "workflow/report/style.css", configfile=CONFIG)
    return work


@pytest.fixture(scope="module")
def config(pretrained_run):
    return yaml.safe_load((pretrained_run / CONFIG).read_text())


def test_the_tiny_dag_has_every_probe_kind():
    """The pretrained smoke keeps one probe of each kind (its cost is jobs): none may be dropped."""
    from ibdiv.core import registry

    config = yaml.safe_load((ROOT / CONFIG).read_text())
    assert {spec["kind"] for spec in config["probes"].values()} == set(registry.PROBE_KINDS)


@pytest.mark.parametrize("dataset", BACKENDS)
def test_every_backend_is_probed_and_classified(pretrained_run, config, dataset):
    backend = BACKENDS[dataset]
    tables = pretrained_run / f"results/tables/{dataset}"
    labels = pd.read_csv(tables / "classification.csv")
    assert set(labels["family"]) == {backend, "independent"}  # the structure reference is trained on its tokens
    assert labels["label"].notna().all()
    measured = pd.read_csv(tables / "measurements.csv")
    probed = set(measured.loc[measured["family"] == backend, "probe"])
    assert set(config["probes"]) <= probed, set(config["probes"]) - probed
    enhancement = pd.read_csv(tables / "enhancement.csv")
    assert (enhancement["family"] == backend).any()


@pytest.mark.parametrize("dataset", BACKENDS)
def test_tokens_are_the_backend_s_vq_codes_of_the_real_images(pretrained_run, config, dataset):
    spec = config["datasets"][dataset]
    backend = json.loads((pretrained_run / f"results/{dataset}/backend.json").read_text())
    key = "class_id" if spec["backend"] == "llamagen" else "prompt"
    assert backend["conditions"] == [c[key] for c in spec["conditions"]]
    assert ".snakemake_timestamp" not in backend["files"]
    cache = np.load(pretrained_run / f"results/{dataset}/tokens.npz")
    assert cache["tokens"].shape == (spec["render_shapes"]["n_per_condition"] * len(spec["conditions"]),
                                     backend["grid"] ** 2)
    assert 0 <= cache["tokens"].min() and cache["tokens"].max() < int(cache["codebook_size"])


@pytest.mark.parametrize("dataset", BACKENDS)
def test_backend_is_scored_not_trained(pretrained_run, dataset):
    backend = BACKENDS[dataset]
    generators = pd.read_csv(pretrained_run / f"results/tables/{dataset}/generators.csv")
    assert set(generators["family"]) == {backend, "independent"}
    assert generators["heldout_bits_per_token"].notna().all()
    assert not (pretrained_run / f"results/{dataset}/priors/{backend}/seed0/model.pt").exists()


def test_report_shows_every_backend(pretrained_run):
    html = (pretrained_run / "results/report.html").read_text(errors="ignore")
    for dataset in BACKENDS:
        assert dataset in html


def test_second_run_has_nothing_to_do(pretrained_run):
    out = snakemake(pretrained_run, "-n", configfile=CONFIG).stdout
    assert "Nothing to be done" in out or "Job stats" not in out, out[-2000:]


@pytest.fixture(scope="module")
def redrawn(pretrained_run):
    """Every backend's standard-point baseline cache before and after one forced rerun of their jobs
    (sample_run_<backend>_standard: the baseline alone), in one Snakemake run:
    {dataset: (bytes before, bytes after, whether the file was written again)}."""
    caches = {dataset: f"results/{dataset}/samples/{backend}/seed0/standard/baseline.npz"
              for dataset, backend in BACKENDS.items()}
    before = {dataset: ((pretrained_run / cache).read_bytes(), (pretrained_run / cache).stat().st_mtime_ns)
              for dataset, cache in caches.items()}
    rules = [f"sample_run_{backend}_standard" for backend in BACKENDS.values()]
    snakemake(pretrained_run, "--forcerun", *rules, "--allowed-rules", *rules, "--", *caches.values(),
              configfile=CONFIG)
    return {dataset: (before[dataset][0], (pretrained_run / cache).read_bytes(),
                      (pretrained_run / cache).stat().st_mtime_ns != before[dataset][1]) for dataset, cache in caches.items()}


@pytest.mark.parametrize("dataset", BACKENDS)
def test_same_config_and_seed_give_byte_identical_backend_samples(redrawn, dataset):
    """A backend's baseline cache, drawn again by a forced rerun of its job, is the same bytes."""
    before, after, written = redrawn[dataset]
    assert written and after == before


def test_a_user_s_checkpoint_folder_and_image_folders_run_and_a_replaced_file_reruns_the_record(pretrained_run, config):
    """What a GPU user configures: a checkpoint folder (here a copy of the tiny one) and a folder of
    real images per condition (copies of the renders). The dataset runs to its labels; then
    nothing is left to do; a file rewritten in place (same listing, so the folder's own mtime is
    unchanged) reruns the record."""
    work, config = pretrained_run, copy.deepcopy(config)
    shutil.copytree(work / "data/pretrained/llamagen_tiny/checkpoint", work / "ckpt_copy")
    shutil.copytree(work / "data/pretrained/llamagen_tiny/images", work / "user_images")
    spec = config["datasets"]["llamagen_tiny"]
    spec["checkpoint"] = "ckpt_copy"
    del spec["render_shapes"]
    for condition in spec["conditions"]:
        condition["images"] = f"user_images/{condition['name']}"
    probes = {"decoupling": config["probes"]["decoupling"]}  # what a label needs: the main run has every probe
    (work / "config.user.yaml").write_text(yaml.safe_dump({**config, "probes": probes,
                                                           "datasets": {"llamagen_tiny": spec}}))
    target = ["--", "results/tables/llamagen_tiny/classification.csv"]
    snakemake(work, *target, configfile="config.user.yaml")
    assert json.loads((work / "results/llamagen_tiny/backend.json").read_text())["folder"] == "ckpt_copy"
    assert "llamagen" in set(pd.read_csv(work / "results/tables/llamagen_tiny/classification.csv")["family"])
    assert "Job stats" not in snakemake(work, "-n", *target, configfile="config.user.yaml").stdout
    sizes = work / "ckpt_copy" / "llamagen.json"
    sizes.write_text(sizes.read_text() + "\n")
    out = snakemake(work, "-n", *target, configfile="config.user.yaml").stdout
    assert "record_checkpoint" in out and "Job stats" in out, out[-2000:]
