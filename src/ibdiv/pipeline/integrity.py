"""Damaged or changed results are set aside and rebuilt, never trusted and never failed on forever.

Each DVC unit (priors, samples, probes of a dataset) has a manifest: the SHA-256 of every file
as the pipeline wrote it (rule `manifest`). Before Snakemake plans, every file a manifest lists
that changed after the manifest was written (modification time later than the manifest's) is
hashed; if its bytes differ from the manifest's, it was truncated, edited or half-copied outside
the pipeline. It is moved from `results/<path>` to `results/.damaged/<path>` (kept, not deleted: bad
input loses nothing) and the manifest that listed it is removed: Snakemake does not rebuild a
missing intermediate file while everything downstream of it is up to date, but it rebuilds the
manifest (a target), hence the file, from the same inputs and seed, to the bytes the manifest
recorded. Jobs that read the file then rerun once (their input is newer), with identical results. Files no manifest lists (data, tokens,
tables) are checked when read: their readers name the file and the remedy (ibdiv.core.io).

Cost: one stat per listed file; a hash only for a file newer than its manifest (after a run that
was interrupted between a rebuild and its manifest, such a file may be rebuilt once more, to the
same bytes). Standard library only (the Snakefile imports this module).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DAMAGED = Path("results/.damaged")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def damaged_files(root=".") -> dict[Path, list[Path]]:
    """{manifest: the files it lists that changed after it and differ from the bytes it recorded},
    for every unit manifest under `root`/results that lists such a file (paths relative to `root`)."""
    root = Path(root)
    found = {}
    for manifest in sorted(root.glob("results/*/*/manifest.json")):
        written = manifest.stat().st_mtime_ns
        try:
            digests = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue  # a damaged manifest is itself rebuilt: it is an ordinary output
        for name, digest in digests.items():
            path = root / name
            if path.is_file() and path.stat().st_mtime_ns > written and _sha256(path) != digest:
                found.setdefault(manifest.relative_to(root), []).append(Path(name))
    return found


def set_aside(paths, root=".") -> list[Path]:
    """Move each results/<path> to results/.damaged/<path>, replacing an older copy; returns the
    new places, in order."""
    moved = []
    for name in paths:
        target = Path(root) / DAMAGED / Path(name).relative_to("results")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(root) / name, target)
        moved.append(target)
    return moved
