"""Atomic, byte-stable writes: the basis of resumable runs and byte-identical caches."""
import numpy as np
import pytest
import torch

from ibdiv.core.io import atomic_path, load_npz, save_npz, save_torch


def test_same_weights_give_the_same_checkpoint_bytes(tmp_path):
    state = torch.nn.Linear(4, 3).state_dict()
    save_torch(tmp_path / "a.pt", state)
    save_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt")["weight"], state["weight"])


def test_same_arrays_give_the_same_npz_bytes(tmp_path):
    arrays = {"tokens": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": np.array([0, 1, 2])}
    save_npz(tmp_path / "a.npz", **arrays)
    save_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert np.array_equal(load_npz(tmp_path / "a.npz")["tokens"], arrays["tokens"])


def test_a_failed_write_leaves_neither_the_output_nor_a_temp_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
