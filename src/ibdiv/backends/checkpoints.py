"""A pretrained backend's checkpoint folder as an input of the pipeline (DESIGN §12, issue 13).

`record(folder, family)` checks the folder with the backend's own `check_folder` (its layout,
the files it names, that it is not another backend's folder), before any weights load or any GPU
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



def check_pipeline_folder(folder, *, described: str, pipelines: tuple[str, ...], subfolders: tuple[str, ...],
                          config_files: dict, other_backends: dict) -> Path:
    """Raise an error naming the folder and the problem unless it is a saved diffusers pipeline
    of this backend: no other backend's marker (llamagen.json, another pipeline in
    model_index.json, named with the backend that reads it), every component subfolder present,
    each `config_files` entry {subfolder: (file, class)} naming its class. `described` is the
    backend as a sentence says it ("an aMUSEd"); `pipelines[0]` is the one save_pretrained writes."""
    folder = Path(folder)
    name = described.split(" ", 1)[1]
    if not folder.is_dir():
        raise FileNotFoundError(f"{name} checkpoint folder {folder} does not exist")
    if (folder / "llamagen.json").is_file():
        raise ValueError(f"{folder} is a LlamaGen checkpoint (it has llamagen.json), not {described} one: "
                         "use the llamagen backend for it")
    index = folder / "model_index.json"
    if index.is_file():
        found = json.loads(index.read_text()).get("_class_name")
        if found not in pipelines:
            other = other_backends.get(found)
            hint = f": use the {other} backend for it" if other else ""
            raise ValueError(f"{folder} is a {found} checkpoint (model_index.json), not {described} one "
                             f"({pipelines[0]}){hint}")
    missing = [s for s in subfolders if not (folder / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing subfolder(s) {missing} of {described} checkpoint "
                                f"(expected {list(subfolders)}, the layout {pipelines[0]}.save_pretrained writes)")
    for sub, (file, expected) in config_files.items():
        path = folder / sub / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder / sub} is not a saved {expected}")
        found = json.loads(path.read_text()).get("_class_name")
        if found != expected:
            raise ValueError(f"{path} describes a {found}, not the {expected} of {described} checkpoint: "
                             f"{folder} is not {described} checkpoint")
    return folder


def pipeline_sizes(folder: Path) -> tuple[int, int]:
    """(token grid side, VQ image side) of a checked diffusers pipeline folder, from its config
    files (no weights read): the transformer's sample_size, times the VQ's downsampling factor
    2 ** (levels - 1) (the pipelines' vae_scale_factor)."""
    config = lambda sub: json.loads((Path(folder) / sub / "config.json").read_text())
    grid = int(config("transformer")["sample_size"])
    return grid, grid * 2 ** (len(config("vqvae")["block_out_channels"]) - 1)


def checked_prompts(folder, conditions) -> list[str]:
    """The conditions of a text backend: a non-empty list of non-empty prompts."""
    if not conditions or not all(isinstance(c, str) and c for c in conditions):
        raise ValueError(f"{folder}: conditions {conditions!r} are not a non-empty list of non-empty prompts")
    return list(conditions)


def fixed_tiny_sizes(folder, backend: str, sizes: dict) -> None:
    """A text backend's tiny checkpoint has diffusers' test sizes: a config that sets any fails."""
    if sizes:
        raise ValueError(f"{folder}: the {backend} backend's tiny checkpoint has fixed sizes: "
                         f"sizes key(s) {sorted(sizes)} cannot be set")
