"""Atomic, byte-stable writes: the basis of resumable runs and byte-identical caches."""
import os
import stat
from pathlib import Path

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


def test_a_damaged_npz_names_the_file_and_the_remedy(tmp_path):
    from ibdiv.core.io import DamagedFileError

    save_npz(tmp_path / "cache.npz", x=np.arange(100))
    data = (tmp_path / "cache.npz").read_bytes()
    (tmp_path / "cache.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match=r"cache\.npz: damaged .*Delete it and rerun"):
        load_npz(tmp_path / "cache.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


def test_files_changed_after_their_manifest_are_found_and_set_aside(tmp_path):
    import json
    import time

    from ibdiv.pipeline import integrity

    unit = tmp_path / "results/shapes/samples"
    save_npz(unit / "a.npz", x=np.arange(10))
    save_npz(unit / "b.npz", x=np.arange(20))
    digests = {f"results/shapes/samples/{n}": integrity._sha256(unit / n) for n in ("a.npz", "b.npz")}
    (unit / "manifest.json").write_text(json.dumps(digests))
    assert integrity.damaged_files(tmp_path) == {}
    time.sleep(0.01)
    (unit / "b.npz").write_bytes((unit / "b.npz").read_bytes())  # same bytes, newer: not damaged
    truncated = (unit / "a.npz").read_bytes()[:50]
    (unit / "a.npz").write_bytes(truncated)
    damaged = integrity.damaged_files(tmp_path)
    assert damaged == {Path("results/shapes/samples/manifest.json"): [Path("results/shapes/samples/a.npz")]}
    (moved,) = integrity.set_aside(damaged[Path("results/shapes/samples/manifest.json")], tmp_path)
    assert not (unit / "a.npz").exists() and moved.read_bytes() == truncated  # kept, not deleted
    assert moved == tmp_path / "results/.damaged/shapes/samples/a.npz"
