"""The decoupling index Δ (DESIGN §5) from the 2x2 response matrix: its own module, numpy only, so
that the classification (and every table that classifies) depends on this formula and not on the
measuring code around it (ibdiv.pipeline.codegraph follows imports to decide reruns)."""
from __future__ import annotations

import numpy as np


def decoupling_index(r_i2_path, r_i2_exec, r_i3_path, r_i3_exec):
    """Diagonal share of the absolute 2x2 response; NaN if any entry is missing or all are 0."""
    m = np.abs(np.stack([np.asarray(x, dtype=float) for x in (r_i2_path, r_i2_exec, r_i3_path, r_i3_exec)]))
    denom = m.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (m[0] + m[3]) / np.where(denom == 0, np.nan, denom)
    out = np.where(np.isnan(m).any(axis=0) | (denom == 0), np.nan, out)
    return out
