"""Settings that depend on the data fail before any job runs, naming the remedy (README "Config"):
unit tests of ibdiv.pipeline.preflight, and Snakemake refusing to start on a bring-your-own .npz whose
held-out split is too small for the matched N (the case of issue 14, which used to fail in
measure_reference after ~20 minutes of training)."""
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, copy_repository

from ibdiv.data import datasets, shapes
from ibdiv.pipeline import preflight


def default_config(dataset: dict, **measure) -> dict:
    """The default science settings on one dataset named byo."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"] = {"byo": {**config["datasets"]["animals"], **dataset}}
    config["measure"].update(measure)
    return config


@pytest.fixture
def byo_npz(tmp_path):
    """10 classes x 500 images of 16x16: with heldout_fraction 0.2, 100 held out per class."""
    rng = np.random.default_rng(0)
    path = tmp_path / "byo.npz"
    np.savez(path, images=rng.integers(0, 256, (5000, 16, 16)).astype(np.uint8), labels=np.repeat(np.arange(10), 500))
    return path


def test_per_class_beyond_heldout_names_both_remedies(byo_npz):
    config = default_config({"source": "npz", "path": str(byo_npz)})
    counts = preflight.known_class_counts(config["datasets"]["byo"])
    assert counts == {str(c): 500 for c in range(10)}
    with pytest.raises(preflight.DatasetSettingsError) as err:
        preflight.check_dataset_settings(config, {"byo": counts})
    message = str(err.value)
    assert "measure.per_class=200 needs 200 held-out images" in message and "heldout_fraction=0.2" in message
    assert "fewer in 10 of 10 classes" in message and "'0': 100 of 500" in message
    assert "Lower measure.per_class to at most 100 or raise datasets.byo.heldout_fraction to at least 0.4" in message
    preflight.check_dataset_settings(default_config(config["datasets"]["byo"], per_class=100), {"byo": counts})
    config["datasets"]["byo"]["heldout_fraction"] = 0.4
    preflight.check_dataset_settings(config, {"byo": counts})  # either remedy works


def test_fraction_remedy_is_the_smallest_that_works():
    counts = {"a": 50, "b": 37, "c": 400}
    f = preflight._fraction_for(counts, 12)
    assert all(preflight.heldout_count(n, f) >= 12 for n in counts.values())
    assert any(preflight.heldout_count(n, round(f - 0.01, 2)) < 12 for n in counts.values())
    assert preflight._fraction_for({"a": 12}, 12) is None  # nothing would be left to train on
    problems = preflight.settings_problems(default_config({}, per_class=12), {"byo": {"a": 12, "b": 40}})
    assert any("Lower measure.per_class to at most 2 or add images to the smallest classes" in p for p in problems)


def test_heldout_count_is_what_the_split_takes():
    for n in (1, 2, 3, 7, 10, 25, 37, 500):
        for f in (0.1, 0.2, 0.25, 0.5, 0.9):
            held = datasets.stratified_split(np.zeros(n, dtype=int), f, seed=0)
            assert held.sum() == preflight.heldout_count(n, f)


def test_settings_without_data_are_checked_too():
    config = default_config({"source": "npz", "path": "absent.npz"})
    config["datasets"]["byo"]["tokenizer"]["grid"] = 5
    config["sampling"]["baseline_per_class"] = 50
    config["probes"]["path_clamp"]["paths"] = 5
    problems = preflight.settings_problems(config)  # counts unknown: the data-free checks still run
    assert len(problems) == 4
    assert any(p.startswith("datasets.byo.path: absent.npz does not exist") for p in problems)
    assert any("datasets.byo.tokenizer.grid=5" in p and "[1, 2, 4, 8, 16]" in p for p in problems)
    assert any("sampling.baseline_per_class=50 is below measure.per_class=200" in p for p in problems)
    assert any("probes.path_clamp: paths=5 < continuations=20" in p for p in problems)


@pytest.mark.parametrize("size, grid, ok", [(16, 4, True), (16, 16, True), (16, 32, False), (12, 3, True), (12, 4, False)])
def test_grid_must_downsample_the_image_by_a_power_of_two(size, grid, ok, byo_npz):
    config = default_config({"source": "npz", "path": str(byo_npz), "image_size": size})
    config["datasets"]["byo"]["tokenizer"]["grid"] = grid
    assert (preflight.settings_problems(config) == []) == ok


def test_a_class_needs_a_training_image():
    problems = preflight.settings_problems(default_config({"heldout_fraction": 0.9}, per_class=2), {"byo": {"a": 1, "b": 50}})
    assert any("leaves no training image in class(es) 'a'" in p for p in problems)


def test_every_dataset_path_is_checked_at_start_naming_the_key(tmp_path, byo_npz):
    """A missing .npz or folder fails before any job plans (it used to fail inside prepare_data)."""
    def problems(spec):
        return [p for p in preflight.settings_problems(default_config(spec)) if ".path" in p]

    assert problems({"source": "npz", "path": str(byo_npz)}) == []
    assert problems({"source": "npz", "path": "no/such.npz"}) == [
        "datasets.byo.path: no/such.npz does not exist: give an .npz with `images` (n, H, W) and `labels` (n,) "
        "(docs/config.md), relative to the checkout."]
    assert "is a folder, not a file" in problems({"source": "npz", "path": str(tmp_path)})[0]
    assert "is not a folder" in problems({"source": "folder", "path": str(tmp_path / "nope")})[0]
    assert "has no class subfolders" in problems({"source": "folder", "path": str(tmp_path)})[0]
    (tmp_path / "cat").mkdir()
    assert problems({"source": "folder", "path": str(tmp_path)}) == []


def test_class_counts_are_read_without_building_the_data(tmp_path, byo_npz):
    assert preflight.known_class_counts({"source": "shapes", "n_images": 20}) == dict(zip(shapes.CLASS_NAMES, [3] * 4 + [2] * 4))
    assert preflight.known_class_counts({"source": "npz", "path": str(tmp_path / "absent.npz")}) is None
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert preflight.known_class_counts({"source": "npz", "path": str(tmp_path / "broken.npz")}) is None
    folder = tmp_path / "folder"
    for name, n in (("cat", 3), ("dog", 2)):
        (folder / name).mkdir(parents=True)
        for i in range(n):
            write_png(folder / name / f"{i}.png")
    (folder / "dog" / "notes.txt").write_text("not an image")
    assert preflight.known_class_counts({"source": "folder", "path": str(folder)}) == {"cat": 3, "dog": 2}
    images, labels, layouts = shapes.generate(64, 16, seed=3)
    prepared = tmp_path / "p.npz"
    datasets.save_prepared(prepared, datasets.Dataset(images, labels, list(shapes.CLASS_NAMES), layouts), labels < 2)
    assert preflight.known_class_counts({"source": "digits"}, prepared) == dict.fromkeys(shapes.CLASS_NAMES, 8)


def write_png(path, size=(6, 4)):
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(path)


def test_only_readable_images_are_counted(tmp_path):
    """A 0-byte .png or a .png of garbage is not an image (the loader would refuse it later)."""
    folder = tmp_path / "folder"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        write_png(folder / name / "real.png")
        write_png(folder / name / "real2.png")
        (folder / name / "empty.png").write_bytes(b"")
        (folder / name / "garbage.png").write_bytes(b"not a png at all")
    (folder / "cat" / "third.jpg").write_bytes(b"")
    assert preflight.known_class_counts({"source": "folder", "path": str(folder)}) == {"cat": 2, "dog": 2}
    conditions = [{"name": n, "prompt": n, "images": str(folder / n)} for n in ("cat", "dog")]
    assert preflight.known_class_counts({"source": "pretrained", "conditions": conditions}) == {"cat": 2, "dog": 2}
    (folder / "bird").mkdir()
    (folder / "bird" / "empty.png").write_bytes(b"")
    assert not preflight.is_image(folder / "bird" / "empty.png") and preflight.is_image(folder / "cat" / "real.png")
    assert preflight.known_class_counts({"source": "folder", "path": str(folder)}) is None  # the loader names it


def test_packaged_datasets_counts():
    digits = preflight.known_class_counts({"source": "digits"})
    assert sum(digits.values()) == 1797 and min(digits.values()) == 174
    animals = preflight.known_class_counts({"source": "animals"})
    assert animals == {name: 1000 for name in datasets.ANIMALS_CLASS_NAMES}  # 200 held out at 0.2: the default N


@pytest.mark.parametrize("name", ["config.yaml", "config/quick.yaml", "config/smoke.yaml"])
def test_shipped_configs_fit_their_data(name):
    config = yaml.safe_load((ROOT / name).read_text())
    preflight.check_dataset_settings(config, {d: preflight.known_class_counts(s) for d, s in config["datasets"].items()})


def test_snakemake_refuses_to_start_on_a_byo_npz_too_small_for_the_matched_n(tmp_path, byo_npz):
    """The smoke config with the default matched N (200) on the issue's dataset: asking for the
    prepared data fails at start-up with the remedy; no job runs, nothing is written."""
    copy_repository(tmp_path)
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["measure"]["per_class"] = config["sampling"]["baseline_per_class"] = 200
    shapes_spec = {k: v for k, v in config["datasets"]["shapes"].items() if k != "n_images"}
    config["datasets"] = {"byo": {**shapes_spec, "source": "npz", "path": str(byo_npz), "heldout_fraction": 0.2}}
    (tmp_path / "byo.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "data/prepared/byo.npz", "--configfile", "byo.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "DatasetSettingsError" in out
    assert "Lower measure.per_class to at most 100 or raise datasets.byo.heldout_fraction to at least 0.4" in out
    assert not (tmp_path / "data/prepared").exists() and not (tmp_path / "results").exists()
