"""Per-job seeds. Kept apart from `config` (schema validation): jobs need this at run time,
so editing the validation code must not make every job's code look changed."""
from __future__ import annotations

import hashlib


def derive_seed(base: int, *names) -> int:
    """A stable per-job seed from the base seed and names (e.g. dataset, stage), so that
    jobs never share a random stream and adding a job never shifts another's."""
    digest = hashlib.sha256(":".join(map(str, (base, *names))).encode()).digest()
    return int.from_bytes(digest[:4], "little")
