"""Atomic, deterministic file writing.

Every output the pipeline produces goes through these helpers so that a job killed
mid-write never leaves a file that later counts as done (write to a temp file in the
same directory, then `os.replace`), and so that the same arrays always give the same
bytes (numpy's own `savez` stamps the current time into the zip members).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (600); outputs are shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path, **arrays) -> None:
    """Write arrays to an uncompressed .npz with fixed member timestamps (byte-stable)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME), buf.getvalue())


class DamagedFileError(ValueError):
    """A result that exists but cannot be read: its message names the file and the remedy."""


def load_npz(path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DamagedFileError(f"{path}: damaged or not an .npz written by ibdiv ({type(error).__name__}: {error}). "
                               "Delete it and rerun: the pipeline rebuilds it (a result listed in a unit manifest "
                               "is set aside and rebuilt automatically)") from error


def save_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def load_json(path):
    return json.loads(Path(path).read_text())


def save_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_torch(path, obj) -> None:
    import torch

    # Saved through a buffer: given a file name, torch names the archive's members after it
    # (here the random temp name), so the same weights would give different bytes.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def save_checkpoint(path, model) -> None:
    """A module whose constructor takes one config dataclass (`model.cfg`): config + weights."""
    from dataclasses import asdict

    save_torch(path, {"config": asdict(model.cfg), "state": model.state_dict()})


def load_checkpoint(path, model_cls, config_cls):
    """Inverse of `save_checkpoint`; the model comes back in eval mode."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = model_cls(config_cls(**blob["config"]))
    model.load_state_dict(blob["state"])
    return model.eval()


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read `chunk` bytes at a time (checkpoints are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_figure(fig, path, **kwargs) -> None:
    """Save a matplotlib figure atomically; the format comes from `path`'s suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
