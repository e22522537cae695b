"""A pretrained backend's checkpoint folder as an input of the pipeline (DESIGN §12, issue 13).

`record(folder, family)` checks the folder with the backend's own `check_folder` (its layout,
the files it names, that it is not another backend's folder: `refuse_other_backends`), before any weights load or any GPU
time is spent, and hashes its content: every file's SHA-256 under its path relative to the folder,
and one digest over that list. The digest depends on the bytes only, not on timestamps, so a copy
hashes the same and a replaced checkpoint does not; a rule that writes this record is what the
jobs reading the checkpoint depend on.

`stamp(folder)` is the cheap part the Snakefile reads while it builds the DAG: each file's size
and modification time. Snakemake notices an input folder change only when files are added or
removed (the folder's own mtime), not when one is replaced in place; the stamp, given to the
recording rule as a param, makes any replaced file rerun the record, and the record's hash decides
what else reruns.

Before hashing, `record` checks that every weight file is complete (`check_complete`): a
.safetensors file's header (8-byte little-endian length, then a JSON header whose tensors'
data_offsets) must cover exactly the file's size, and a torch checkpoint (.pt, .bin, .pth) in the
zip format must have its central directory (the zip's end): a truncated download is named here,
not in the first sampling job. Anything under a `.cache` folder (the metadata `hf download
--local-dir` keeps in `.cache/huggingface/` and rewrites on every download) is not checkpoint
content: neither listed, hashed nor stamped.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

from ibdiv.core import registry
from ibdiv.core.io import file_sha256


SNAKEMAKE_MARKER = ".snakemake_timestamp"  # what Snakemake leaves in a directory() output: not content
CACHE_FOLDER = ".cache"  # a download tool's metadata (hf download --local-dir): not content
TORCH_SUFFIXES = (".pt", ".bin", ".pth")
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's zip format; the legacy pickle format


def checkpoint_files(folder) -> list[Path]:
    """The content files of a checkpoint folder, sorted: not Snakemake's marker, nothing under `.cache`."""
    folder = Path(folder)
    return [path for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != SNAKEMAKE_MARKER
            and CACHE_FOLDER not in path.relative_to(folder).parts]


def _damaged(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is truncated or damaged ({why}): re-download it")


def check_complete(path) -> None:
    """A ValueError naming `path` when a weight file is incomplete: a .safetensors file whose header
    does not cover exactly the file's size, a zip-format torch checkpoint without its central
    directory. Reads the header (safetensors) or the zip's end only; other files pass. A torch file
    in the legacy (pre-1.6) pickle format has no index to check and passes."""
    path = Path(path)
    suffix, size = path.suffix.lower(), path.stat().st_size
    if suffix == ".safetensors":
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise _damaged(path, f"{size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise _damaged(path, f"header of {n} bytes announced, {size - 8} bytes follow")
            try:
                header = json.loads(handle.read(n))
                ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise _damaged(path, f"unreadable header: {exc}") from exc
        expected = 8 + n + max(ends, default=0)
        if expected != size:
            raise _damaged(path, f"its header describes {expected} bytes, the file has {size}")
    elif suffix in TORCH_SUFFIXES:
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic.startswith(PICKLE_MAGIC):
            return
        if magic != ZIP_MAGIC:
            raise _damaged(path, "neither a zip nor a pickle torch checkpoint")
        try:
            with zipfile.ZipFile(path):
                pass
        except zipfile.BadZipFile as exc:
            raise _damaged(path, f"its zip index cannot be read: {exc}") from exc


def stamp(folder) -> list[str]:
    """"path size mtime_ns" of every file of the folder (empty if it does not exist): no file is read."""
    folder = Path(folder)
    return [f"{p.relative_to(folder).as_posix()} {p.stat().st_size} {p.stat().st_mtime_ns}"
            for p in checkpoint_files(folder)] if folder.is_dir() else []


def record(folder, family: str) -> dict:
    """{"family", "folder", "files": {relative path: sha256}, "sha256"} of a checked folder (every
    weight file complete: `check_complete`)."""
    if registry.family(family).model != "checkpoint":
        raise ValueError(f"family {family!r} is not a pretrained backend (registry model "
                         f"{registry.family(family).model!r}): it has no checkpoint folder")
    folder = Path(registry.implementation(family).check_folder(folder))
    paths = checkpoint_files(folder)
    for path in paths:  # before hashing gigabytes: a truncated download fails at once
        check_complete(path)
    files = {path.relative_to(folder).as_posix(): file_sha256(path) for path in paths}
    listing = "".join(f"{name}\0{digest}\n" for name, digest in files.items())
    return {"family": family, "folder": str(folder), "files": files,
            "sha256": hashlib.sha256(listing.encode()).hexdigest()}


def refuse_other_backends(folder, family: str, described: str) -> None:
    """Raise a ValueError naming the backend that reads `folder` when it is another backend's
    checkpoint folder (the marker file each backend module declares: `registry.backend_owning`).
    `described` is the backend checking it, as a sentence says it ("an aMUSEd")."""
    owner = registry.backend_owning(folder)
    if owner is None or owner == family:
        return
    module = registry.implementation(owner)
    marker = Path(folder) / module.FOLDER_MARKER
    what = (json.loads(marker.read_text()).get("_class_name") if module.FOLDER_CLASSES
            else module.DESCRIBED.split(" ", 1)[1])
    raise ValueError(f"{folder} is a {what} checkpoint (it has {module.FOLDER_MARKER}), not {described} one: "
                     f"use the {owner} backend for it")
