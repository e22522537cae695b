"""A pretrained backend's checkpoint folder as an input of the pipeline (DESIGN §12, issue 13).

`record(folder, family)` checks the folder with the backend's own `check_folder` (its layout,
the files it names, that it is not another backend's folder), before any weights load or any GPU
time is spent, and hashes its content: every file's SHA-256 under its path relative to the folder,
and one digest over that list. The digest depends on the bytes only, not on timestamps, so a copy
hashes the same and a replaced checkpoint does not; a rule that writes this record is what the
jobs reading the checkpoint depend on.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ibdiv import registry
from ibdiv.io import file_sha256


def record(folder, family: str) -> dict:
    """{"family", "folder", "files": {relative path: sha256}, "sha256"} of a checked folder."""
    if registry.family(family).model != "checkpoint":
        raise ValueError(f"family {family!r} is not a pretrained backend (registry model "
                         f"{registry.family(family).model!r}): it has no checkpoint folder")
    folder = Path(registry.implementation(family).check_folder(folder))
    # `.snakemake_timestamp`: the marker Snakemake leaves in a directory() output (the tiny
    # checkpoint the pretrained-smoke DAG builds) is no content of the checkpoint
    files = {path.relative_to(folder).as_posix(): file_sha256(path)
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != ".snakemake_timestamp"}
    listing = "".join(f"{name}\0{digest}\n" for name, digest in files.items())
    return {"family": family, "folder": str(folder), "files": files,
            "sha256": hashlib.sha256(listing.encode()).hexdigest()}

