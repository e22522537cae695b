"""Atomic, byte-stable writes: the basis of resumable runs and byte-identical caches."""
import os
import stat

import numpy as np
import pytest
import torch

from ibdiv.core.io import atomic_path, load_npz, save_json, save_npz, save_torch


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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_are_as_readable_as_the_umask_says(tmp_path, umask, mode):
    """A colleague on a shared cluster reads results/ (mkstemp alone would leave every file 600)."""
    old = os.umask(umask)
    try:
        save_json(tmp_path / "a.json", {"x": 1})
        save_npz(tmp_path / "b.npz", x=np.arange(3))
    finally:
        os.umask(old)
    assert {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.json", "b.npz")} == {mode}
