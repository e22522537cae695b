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


def test_a_truncated_safetensors_file_is_refused_naming_it(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    safetensors.save_file({"w": torch.arange(64, dtype=torch.float32), "b": torch.ones(3)}, str(path))
    checkpoints.check_complete(path)  # complete: passes
    whole = path.read_bytes()
    for cut in (len(whole) - 1, len(whole) - 100, 20, 4):
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=f"{path}.*truncated or damaged.*re-download"):
            checkpoints.check_complete(path)
    path.write_bytes(whole + b"\0")  # longer than its header says: damaged too
    with pytest.raises(ValueError, match=f"{path}.*truncated or damaged"):
        checkpoints.check_complete(path)


def test_a_truncated_torch_checkpoint_is_refused_by_record(llamagen_folder, tmp_path):
    copy = shutil.copytree(llamagen_folder, tmp_path / "copy")
    whole = (copy / "gpt.pt").read_bytes()
    (copy / "gpt.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=f"{copy / 'gpt.pt'}.*truncated or damaged.*re-download it"):
        checkpoints.record(copy, "llamagen")
    (copy / "gpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="gpt.pt.*truncated or damaged"):
        checkpoints.record(copy, "llamagen")


def test_a_download_tools_cache_folder_is_not_checkpoint_content(llamagen_folder, tmp_path):
    copy = shutil.copytree(llamagen_folder, tmp_path / "copy")
    record, stamp = checkpoints.record(copy, "llamagen"), checkpoints.stamp(copy)
    meta = copy / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / "gpt.pt.metadata").write_text("abc\n1700000000.0\n")
    (copy / "sub" / ".cache").mkdir(parents=True)
    (copy / "sub" / ".cache" / "x.pt").write_bytes(b"truncated garbage")  # not checked either
    assert checkpoints.record(copy, "llamagen") == record and checkpoints.stamp(copy) == stamp
    (meta / "gpt.pt.metadata").write_text("rewritten by a second download\n")
    assert checkpoints.record(copy, "llamagen") == record and checkpoints.stamp(copy) == stamp
