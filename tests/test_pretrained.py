"""A pretrained backend as a DAG dataset (DESIGN §12): tiny checkpoints of the three backends,
the rendered condition folders, backend.json, the tokenizer pointer, conditioned samplers, the
checks that run before any job, and the in-house jobs' code inputs staying free of backends."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ibdiv.backends import checkpoints, llamagen, pretrained
from ibdiv.pipeline import codegraph, preflight
from ibdiv.measure import probes
from ibdiv.data import tokenizer

pytestmark = [pytest.mark.pretrained, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TINY_LLAMAGEN = {"grid": 4, "gpt": {"dim": 32, "n_layer": 1, "n_head": 2, "multiple_of": 32},
                 "vq": {"codebook_size": 64, "codebook_embed_dim": 8, "ch": 32, "ch_mult": [1, 1, 2],
                        "num_res_blocks": 1, "z_channels": 32}}
CONDITIONS = {"llamagen": [{"name": "a", "class_id": 3}, {"name": "b", "class_id": 1}, {"name": "c", "class_id": 5}],
              "amused": [{"name": "a", "prompt": "a disc"}, {"name": "b", "prompt": "a square"}],
              "vq_diffusion": [{"name": "a", "prompt": "a disc"}, {"name": "b", "prompt": "a square"}]}
# (K, grid, VQ image size) of the tiny models
SIZES = {"llamagen": (64, 4, 16), "amused": (8, 8, 16), "vq_diffusion": (11, 6, 12)}


def dataset_spec(backend):
    tiny = TINY_LLAMAGEN if backend == "llamagen" else {}
    return {"source": "pretrained", "backend": backend, "checkpoint": {"tiny": tiny}, "image_size": 16,
            "conditions": CONDITIONS[backend], "heldout_fraction": 0.25}


@pytest.fixture(scope="module", params=["llamagen", "amused", "vq_diffusion"])
def built(request, tmp_path_factory):
    """(backend, dataset spec, backend.json contents, folder holding backend.json)."""
    backend = request.param
    if backend != "llamagen":
        pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp(backend)
    spec = dataset_spec(backend)
    folder = pretrained.build_tiny_checkpoint(root / "ckpt", spec, seed=0)
    record = pretrained.backend_spec(checkpoints.record(folder, backend), spec)
    (root / "backend.json").write_text(json.dumps(record))
    return backend, spec, record, root


def test_backend_json_holds_record_conditions_and_sizes(built):
    backend, spec, record, _ = built
    K, grid, vq_size = SIZES[backend]
    key = "class_id" if backend == "llamagen" else "prompt"
    assert record["family"] == backend and record["implementation"] == f"ibdiv.backends.{backend}"
    assert record["conditions"] == [c[key] for c in spec["conditions"]]
    assert (record["grid"], record["vq_image_size"], record["image_size"]) == (grid, vq_size, 16)
    assert len(record["sha256"]) == 64 and record["files"]


def test_tiny_llamagen_has_classes_for_the_largest_id():
    assert pretrained.tiny_n_classes(dataset_spec("llamagen")) == 6
    with pytest.raises(ValueError, match="unknown keys \\['num_classes'\\]"):
        llamagen.build_tiny("/nonexistent", 0, 6, {**TINY_LLAMAGEN, "num_classes": 8})


def test_conditions_must_name_what_the_backend_reads():
    spec = {**dataset_spec("amused"), "conditions": [{"name": "a", "class_id": 1}, {"name": "b", "prompt": "x"}]}
    with pytest.raises(ValueError, match="amused needs 'prompt'.*\\['a'\\]"):
        pretrained.backend_conditions(spec)


def test_condition_folders_load_as_rgb_and_grey(tmp_path):
    pretrained.render_condition_images(tmp_path / "img", ["a", "b"], 5, 16, seed=0)
    rgb, grey, labels = pretrained.load_condition_images([tmp_path / "img" / "a", tmp_path / "img" / "b"], 12, 8)
    assert rgb.shape == (10, 3, 12, 12) and rgb.dtype == np.uint8
    assert grey.shape == (10, 8, 8) and 0 <= grey.min() and grey.max() <= 1
    assert labels.tolist() == [0] * 5 + [1] * 5
    # the grey copy is the render: all three channels equal
    assert (rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all()


def test_a_non_square_image_is_centre_cropped_or_squashed_as_the_crop_key_says(tmp_path):
    """30 x 20 px: a red 5 px border at the left, a blue one at the right, green between. The centred
    20 x 20 square is all green; squashed, the borders stay at the sides."""
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:, :5] = (255, 0, 0)
    pixels[:, 5:25] = (0, 255, 0)
    pixels[:, 25:] = (0, 0, 255)
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels, "RGB").save(tmp_path / "a" / "wide.png")
    rgb, grey, _ = pretrained.load_condition_images([tmp_path / "a"], 10, 8, crop="center")
    assert (rgb[0] == np.array([0, 255, 0], dtype=np.uint8)[:, None, None]).all()  # the borders are gone
    assert np.ptp(grey[0]) == 0  # one grey level: no border in the classifier's image either
    rgb, grey, _ = pretrained.load_condition_images([tmp_path / "a"], 10, 8, crop="squash")
    assert rgb[0, 0, :, 0].min() > 200 and rgb[0, 2, :, 0].max() < 50  # red at the left edge
    assert rgb[0, 2, :, -1].min() > 200 and rgb[0, 0, :, -1].max() < 50  # blue at the right edge
    assert np.ptp(grey[0]) > 0
    # the default is center; a square image is the same under both
    spec = {**dataset_spec("amused"), "conditions": [{"name": "a", "prompt": "x", "images": str(tmp_path / "a")}]}
    dataset, rgb_default = pretrained.load_prepared_source(spec, {"vq_image_size": 10})
    assert np.array_equal(rgb_default, pretrained.load_condition_images([tmp_path / "a"], 10, 16, "center")[0])
    pretrained.render_condition_images(tmp_path / "sq", ["b"], 3, 16, seed=0)
    for a, b in zip(pretrained.load_condition_images([tmp_path / "sq" / "b"], 12, 8, "center"),
                    pretrained.load_condition_images([tmp_path / "sq" / "b"], 12, 8, "squash")):
        assert np.array_equal(a, b)


def test_the_crop_key_is_validated_and_only_for_pretrained_datasets():
    import yaml

    from ibdiv.core.config import ConfigError, validate_config

    config = yaml.safe_load((ROOT / "config/pretrained-smoke.yaml").read_text())
    for crop in ("center", "squash"):
        config["datasets"]["amused_tiny"]["crop"] = crop
        validate_config(config)
    config["datasets"]["amused_tiny"]["crop"] = "stretch"
    with pytest.raises(ConfigError, match="datasets.amused_tiny.crop: 'stretch' is not one of"):
        validate_config(config)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"]["animals"]["crop"] = "center"
    with pytest.raises(ConfigError, match="datasets.animals.source.*source: pretrained only"):
        validate_config(config)


def test_empty_or_unreadable_condition_folder_is_named(tmp_path):
    from ibdiv.data.datasets import DatasetError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: condition folder missing or without images"):
        pretrained.load_condition_images([tmp_path / "empty"], 12, 8)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="x.png: unreadable image"):
        pretrained.load_condition_images([tmp_path / "bad"], 12, 8)


def test_tokenizer_pointer_gives_the_in_house_interface(built, tmp_path):
    from ibdiv.data import backend_tokenizer

    backend, _, record, _ = built
    K, grid, vq_size = SIZES[backend]
    backend_tokenizer.write_pointer(tmp_path / "model.pt", record)
    vq = tokenizer.load_tokenizer(tmp_path / "model.pt")
    assert (vq.cfg.codebook_size, vq.cfg.grid, vq.cfg.image_size, vq.vq_image_size) == (K, grid, 16, vq_size)
    assert vq.quantizer.codebook.shape[0] == K
    rgb = np.random.default_rng(0).integers(0, 256, (3, 3, vq_size, vq_size), dtype=np.uint8)
    codes = vq.encode(rgb)
    assert codes.shape == (3, grid * grid) and 0 <= codes.min() and codes.max() < K
    np.testing.assert_array_equal(vq.encode(rgb), codes)
    # grey float images at another size are resized and encoded too
    assert vq.encode(np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)).shape == (2, grid * grid)
    images = vq.decode(codes)
    assert images.shape == (3, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_sampler_from_backend_json_samples_the_configured_conditions(built):
    backend, spec, record, root = built
    module = pretrained.backend_module(backend)
    chosen = probes.load_sampler(backend, root / "backend.json")
    # class i of the loaded sampler is condition i; the same as the full model on that condition
    if backend == "llamagen":
        full = llamagen.load_checkpoint(record["folder"])
        tokens = torch.zeros(2, 16, dtype=torch.long)
        for mine, theirs in ((0, 3), (2, 5), (3, full.config.num_classes)):  # the null row kept last
            torch.testing.assert_close(chosen(tokens, torch.full((2,), mine)), full(tokens, torch.full((2,), theirs)))
    else:
        alone = module.load_conditioned(record["folder"], [record["conditions"][1]])
        for a, b in zip(chosen.conditions(torch.tensor([1])), alone.conditions(torch.tensor([0]))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_preflight_names_what_to_fill_in(tmp_path):
    spec = {**dataset_spec("llamagen"), "checkpoint": None,
            "conditions": [{"name": "a", "class_id": 1, "images": None},
                           {"name": "b", "prompt": "x", "images": str(tmp_path / "missing")}]}
    problems = "\n".join(preflight._pretrained_problems("imagenet", spec))
    assert "datasets.imagenet.checkpoint is not set: fill in the path of a LlamaGen folder" in problems
    assert "datasets.imagenet.conditions[0] (a).images is not set" in problems
    assert "conditions[1] (b): the llamagen backend is conditioned on a class_id: set class_id" in problems
    assert "conditions[1] (b): the llamagen backend reads no prompt" in problems
    assert "conditions[1] (b).images: " + str(tmp_path / "missing") + " is not a folder with images" in problems
    spec["checkpoint"] = str(tmp_path / "nowhere")
    assert "checkpoint: " + str(tmp_path / "nowhere") + " is not a folder" in "\n".join(
        preflight._pretrained_problems("imagenet", spec))
    # a complete entry has no problem
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.png").write_bytes(b"")  # empty: not an image
    ok = {**dataset_spec("amused"), "checkpoint": str(tmp_path / "ckpt"),
          "conditions": [{"name": "a", "prompt": "x", "images": str(tmp_path / "img")}]}
    assert "is not a folder with images" in "\n".join(preflight._pretrained_problems("d", ok))
    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "1.png")
    ok = {**dataset_spec("amused"), "checkpoint": str(tmp_path / "ckpt"),
          "conditions": [{"name": "a", "prompt": "x", "images": str(tmp_path / "img")}]}
    assert preflight._pretrained_problems("d", ok) == []


def test_a_backend_must_be_configured_under_families():
    import yaml

    config = yaml.safe_load((ROOT / "config/pretrained-smoke.yaml").read_text())
    del config["families"]["amused"]
    problems = preflight.settings_problems(config)
    assert any(p.startswith("datasets.amused_tiny.backend is amused, which is not under `families`") for p in problems)
    assert not any("llamagen_tiny.backend" in p for p in problems)


@pytest.mark.parametrize("script", ["encode_tokens", "measure_probes", "sample_probes", "train_prior", "prepare_data"])
def test_in_house_jobs_do_not_depend_on_the_backends(script):
    """Editing a backend (or this wiring) must rerun no in-house job: their code inputs hold no
    backend module and not ibdiv.backends.pretrained (only the backend_tokenizer adapter, whose pointer check they run)."""
    files = {p.name for p in codegraph.code_files(ROOT / "workflow" / "scripts" / f"{script}.py", ROOT / "src")}
    assert not files & {"llamagen.py", "llamagen_vq.py", "amused.py", "vq_diffusion.py", "pretrained.py", "checkpoints.py"}


def test_the_gpu_config_left_unfilled_stops_at_once_naming_what_to_fill_in(tmp_path):
    from conftest import copy_repository, snakemake

    work = copy_repository(tmp_path)
    proc = snakemake(work, "-n", check=False, configfile="config/pretrained.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for dataset, folder in (("imagenet_llamagen", "a LlamaGen folder"), ("imagenet_amused", "amused/amused-256"),
                            ("imagenet_vq_diffusion", "microsoft/vq-diffusion-ithq")):
        assert f"datasets.{dataset}.checkpoint is not set: fill in the path of" in out and folder in out
        assert f"datasets.{dataset}.conditions[0] (goldfish).images is not set" in out
    assert "Job stats" not in out  # nothing planned, nothing run
