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
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ibdiv.core import registry
from ibdiv.core.io import file_sha256


SNAKEMAKE_MARKER = ".snakemake_timestamp"  # what Snakemake leaves in a directory() output: not content


def checkpoint_files(folder) -> list[Path]:
    return [path for path in sorted(Path(folder).rglob("*")) if path.is_file() and path.name != SNAKEMAKE_MARKER]


def stamp(folder) -> list[str]:
    """"path size mtime_ns" of every file of the folder (empty if it does not exist): no file is read."""
    folder = Path(folder)
    return [f"{p.relative_to(folder).as_posix()} {p.stat().st_size} {p.stat().st_mtime_ns}"
            for p in checkpoint_files(folder)] if folder.is_dir() else []


def record(folder, family: str) -> dict:
    """{"family", "folder", "files": {relative path: sha256}, "sha256"} of a checked folder."""
    if registry.family(family).model != "checkpoint":
        raise ValueError(f"family {family!r} is not a pretrained backend (registry model "
                         f"{registry.family(family).model!r}): it has no checkpoint folder")
    folder = Path(registry.implementation(family).check_folder(folder))
    files = {path.relative_to(folder).as_posix(): file_sha256(path) for path in checkpoint_files(folder)}
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
