"""What every figure shares: a headless backend, colours and markers per family and operating
point, panel grids, legends, and writing a figure with the numbers it draws."""
from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ibdiv.core.io import save_figure, save_text  # noqa: E402

Z = 1.96
_FAMILY_COLOURS = {"data": "black", "ar": "tab:blue", "mim": "tab:orange", "diffusion": "tab:green",
                   "independent": "tab:purple", "oracle": "tab:gray"}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINESTYLES = ("-", "--", ":", "-.")


def colour(family) -> str:
    """A stable colour per family (known names fixed; others by a hash of the name)."""
    if family in _FAMILY_COLOURS:
        return _FAMILY_COLOURS[family]
    return f"C{zlib.crc32(str(family).encode()) % 10}"


def point_styles(points) -> dict:
    """point -> (marker, linestyle), in order of first appearance (neutral solid, standard dashed)."""
    order = list(dict.fromkeys(p for p in points if isinstance(p, str)))
    return {p: (_MARKERS[i % len(_MARKERS)], _LINESTYLES[i % len(_LINESTYLES)]) for i, p in enumerate(order)}


def note(ax, text="not measured") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")


def outside_legend(axes, title=None) -> None:
    """One legend (duplicates merged) to the right of the last axis."""
    uniq = {}
    for ax in np.ravel(axes):
        handles, names = ax.get_legend_handles_labels()
        for h, n in zip(handles, names):
            uniq.setdefault(n, h)
    visible = [ax for ax in np.ravel(axes) if ax.get_visible()]
    if uniq and visible:
        visible[-1].legend(uniq.values(), uniq.keys(), fontsize=6, title=title, title_fontsize=7,
                           loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def panels(n: int, *, ncols: int = 4, width=3.3, height=3.2, **kwargs):
    """A grid of at least one panel, up to `ncols` wide; unused panels hidden."""
    n = max(n, 1)
    cols, rows = min(n, ncols), -(-n // ncols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.8, height * rows + 0.5), squeeze=False, **kwargs)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes


def markers(ax, x, y, hollow, marker, colour, label, hollow_label) -> None:
    """Filled markers, and hollow ones where `hollow` (e.g. does not clear its null)."""
    x, y, hollow = np.asarray(x, float), np.asarray(y, float), np.asarray(hollow, bool)
    if (~hollow).any():
        ax.scatter(x[~hollow], y[~hollow], marker=marker, color=colour, zorder=3, label=label)
    if hollow.any():
        ax.scatter(x[hollow], y[hollow], marker=marker, facecolors="white", edgecolors=colour, zorder=3,
                   label=hollow_label)


def finish(fig, path, table: pd.DataFrame, *, tight: bool = True) -> pd.DataFrame:
    """Write `path` as .png and .pdf plus the drawn numbers as .csv (all atomic); close the figure."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    save_figure(fig, path.with_suffix(".png"), dpi=150)
    save_figure(fig, path.with_suffix(".pdf"), metadata={"CreationDate": None})
    plt.close(fig)
    table = table.reset_index(drop=True)
    save_text(path.with_suffix(".csv"), table.to_csv(index=False))
    return table

