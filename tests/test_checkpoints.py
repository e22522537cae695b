"""A pretrained backend's checkpoint folder as a pipeline input (ibdiv.backends.checkpoints): checked by the
backend before any weights load, hashed by content (not timestamps)."""
import shutil

import pytest
import torch

from ibdiv.backends import checkpoints
from ibdiv.backends.llamagen import GPT, GPTConfig, save_checkpoint
from ibdiv.backends.llamagen_vq import VQConfig, VQModel


@pytest.fixture(scope="module")
def llamagen_folder(tmp_path_factory):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(dim=32, n_layer=1, n_head=2, vocab_size=16, num_classes=3, block_size=4, multiple_of=16))
    vq = VQModel(VQConfig(codebook_size=16, codebook_embed_dim=8, ch=32, ch_mult=[1, 1], num_res_blocks=1, z_channels=32))
    return save_checkpoint(tmp_path_factory.mktemp("llamagen"), gpt, vq)


def test_record_hashes_every_file_by_content(llamagen_folder, tmp_path):
    record = checkpoints.record(llamagen_folder, "llamagen")
    assert record["family"] == "llamagen" and set(record["files"]) == {"llamagen.json", "gpt.pt", "vq.pt"}
    copy = shutil.copytree(llamagen_folder, tmp_path / "copy")  # other timestamps, same bytes
    assert checkpoints.record(copy, "llamagen")["sha256"] == record["sha256"]
    with open(copy / "vq.pt", "ab") as handle:  # a replaced checkpoint
        handle.write(b"\0")
    changed = checkpoints.record(copy, "llamagen")
    assert changed["sha256"] != record["sha256"]
    assert [f for f in record["files"] if record["files"][f] != changed["files"][f]] == ["vq.pt"]


def test_a_folder_of_another_backend_or_none_is_named(llamagen_folder, tmp_path):
    pytest.importorskip("diffusers")
    with pytest.raises(ValueError, match=f"{llamagen_folder}.*LlamaGen.*llamagen backend"):
        checkpoints.record(llamagen_folder, "amused")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent'}"):
        checkpoints.record(tmp_path / "absent", "llamagen")
    (tmp_path / "partial").mkdir()
    shutil.copy(llamagen_folder / "llamagen.json", tmp_path / "partial")
    with pytest.raises(FileNotFoundError, match="gpt.pt"):  # a file the json names is missing
        checkpoints.record(tmp_path / "partial", "llamagen")


def test_only_pretrained_backends_have_a_checkpoint_folder(llamagen_folder):
    with pytest.raises(ValueError, match="'ar' is not a pretrained backend"):
        checkpoints.record(llamagen_folder, "ar")


def test_stamp_sees_a_file_replaced_in_place_and_not_the_snakemake_marker(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.pt").write_bytes(b"12345")
    (folder / "sub" / "b.json").write_text("{}")
    before = checkpoints.stamp(folder)
    assert [line.split()[0] for line in before] == ["a.pt", "sub/b.json"]
    (folder / ".snakemake_timestamp").write_text("")
    assert checkpoints.stamp(folder) == before
    (folder / "a.pt").write_bytes(b"123456")  # same listing, other content
    assert checkpoints.stamp(folder) != before
    assert checkpoints.stamp(tmp_path / "missing") == []
