"""A pretrained backend as a DAG dataset (issue 13, first cut: llamagen): the tiny checkpoint,
the rendered condition folders, backend.json, the tokenizer pointer and the class selection."""
import json

import numpy as np
import torch

from ibdiv import checkpoints, llamagen, pretrained, probes, tokenizer

TINY = {"grid": 4, "gpt": {"dim": 32, "n_layer": 1, "n_head": 2, "multiple_of": 32},
        "vq": {"codebook_size": 64, "codebook_embed_dim": 8, "ch": 32, "ch_mult": [1, 1, 2],
               "num_res_blocks": 1, "z_channels": 32}}


def build(tmp_path, class_ids=(3, 1, 5)):
    folder = pretrained.build_tiny_checkpoint(tmp_path / "ckpt", "llamagen", TINY, n_classes=8, seed=0)
    spec = pretrained.backend_spec(checkpoints.record(folder, "llamagen"), list(class_ids), image_size=16)
    (tmp_path / "backend.json").write_text(json.dumps(spec))
    return folder, spec


def test_tiny_checkpoint_record_and_spec(tmp_path):
    folder, spec = build(tmp_path)
    assert spec["grid"] == 4 and spec["class_ids"] == [3, 1, 5] and spec["family"] == "llamagen"
    assert llamagen.load_tokenizer(folder).config.downsample == 4  # 4 x 4 codes of a 16 px image


def test_condition_folders_load_as_rgb_and_grey(tmp_path):
    pretrained.render_condition_images(tmp_path / "img", ["a", "b"], 5, 16, seed=0)
    rgb, grey, labels = pretrained.load_condition_images([tmp_path / "img" / "a", tmp_path / "img" / "b"], 16, 8)
    assert rgb.shape == (10, 3, 16, 16) and rgb.dtype == np.uint8
    assert grey.shape == (10, 8, 8) and 0 <= grey.min() and grey.max() <= 1
    assert labels.tolist() == [0] * 5 + [1] * 5


def test_tokenizer_pointer_gives_the_in_house_interface(tmp_path):
    _, spec = build(tmp_path)
    pretrained.write_tokenizer_pointer(tmp_path / "model.pt", spec)
    vq = tokenizer.load_tokenizer(tmp_path / "model.pt")
    assert (vq.cfg.codebook_size, vq.cfg.grid, vq.cfg.image_size) == (64, 4, 16)
    assert tuple(vq.quantizer.codebook.shape) == (64, 8)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 3, 16, 16), dtype=np.uint8)
    codes = vq.encode(rgb)
    assert codes.shape == (3, 16) and codes.max() < 64
    assert vq.encode(np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)).shape == (2, 16)
    images = vq.decode(codes)
    assert images.shape == (3, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_sampler_from_backend_json_samples_the_configured_classes(tmp_path):
    folder, _ = build(tmp_path)
    full = llamagen.load_checkpoint(folder)
    chosen = probes.load_sampler("llamagen", tmp_path / "backend.json")
    assert chosen.config.num_classes == 3
    tokens = torch.zeros(2, 16, dtype=torch.long)
    # class i of the selection is class class_ids[i] of the checkpoint; the null row is kept
    for mine, theirs in ((0, 3), (2, 5), (3, 8)):
        a = chosen(tokens, torch.full((2,), mine))
        b = full(tokens, torch.full((2,), theirs))
        torch.testing.assert_close(a, b)
