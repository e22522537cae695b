"""Image grids: dataset examples, VQ reconstructions, decoded samples and probe caches."""
from __future__ import annotations

import numpy as np

from ibdiv.report.figures.style import plt
from ibdiv.core.io import save_figure


def image_grid(images: np.ndarray, rows: int, cols: int, *, row_labels=None, title=None, scale=0.7):
    """Grey-scale images (rows*cols, H, W) on a grid; returns the figure.

    The grid is tiled into one mosaic with a 1-pixel gap and drawn by a single imshow: an
    axes per image made the grid figures the slowest jobs of the smoke DAG."""
    h, w = images.shape[1:3]
    mosaic = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1), dtype=np.float32)  # white gaps
    for i, image in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        mosaic[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = image
    fig, ax = plt.subplots(figsize=(cols * scale + 1.0, rows * scale + 0.6))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + 1) + h / 2 - 0.5 for r in range(rows)] if row_labels else [],
                  list(row_labels or [])[:rows], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def class_examples(dataset, path, *, per_class: int = 10, title=None) -> None:
    """One row per class, the first `per_class` images of that class."""
    rows = []
    for c in range(dataset.n_classes):
        idx = np.flatnonzero(dataset.labels == c)[:per_class]
        padded = np.zeros((per_class, *dataset.images.shape[1:]), dtype=np.float32)
        padded[: len(idx)] = dataset.images[idx]
        rows.append(padded)
    fig = image_grid(np.concatenate(rows), dataset.n_classes, per_class, row_labels=dataset.class_names, title=title)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def reconstructions(dataset, recon: np.ndarray, path, *, per_class: int = 10, title=None) -> None:
    """Pairs of rows per class: originals above their VQ decodings."""
    pairs, labels = [], []
    for c in range(dataset.n_classes):
        idx = np.flatnonzero(dataset.labels == c)[:per_class]
        for source in (dataset.images, recon):
            row = np.zeros((per_class, *dataset.images.shape[1:]), dtype=np.float32)
            row[: len(idx)] = source[idx]
            pairs.append(row)
        labels += [f"{dataset.class_names[c]}", "  decoded"]
    fig = image_grid(np.concatenate(pairs), 2 * dataset.n_classes, per_class, row_labels=labels, title=title, scale=0.6)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def sample_grid(decode, tokens: np.ndarray, labels: np.ndarray, path, *, per_class: int = 12, title=None) -> None:
    """Decoded samples, one row per class (only the shown grids are decoded)."""
    classes = np.unique(labels)
    shown = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    fig = image_grid(decode(np.asarray(tokens)[shown].astype(np.int64)), len(classes), per_class,
                     row_labels=[str(c) for c in classes], title=title)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def probe_grid(decode, cache: dict, path, *, nested: bool, title=None, n_paths: int = 3, max_cols: int = 10) -> None:
    """Decoded samples of one probe cache. Flat probes: one row per cell, one column per class
    (each cell's first sample of that class; cells share the sampling seed, so a column shows
    what the cell's setting changes). Nested probes (path clamp, decoupling), class 0: rows =
    the first `n_paths` paths of each cell, columns = their continuations."""
    cells = [str(c) for c in cache["cells"]]
    tokens = np.asarray(cache["tokens"])
    if nested:
        R = min(tokens.shape[3], max_cols)
        picked = tokens[:, 0, :n_paths, :R]  # (cells, paths, R, N)
        labels = [f"{c} p{p}" for c in cells for p in range(picked.shape[1])]
        rows, cols = len(labels), R
    else:
        first = [int(np.flatnonzero(cache["labels"] == c)[0]) for c in np.unique(cache["labels"])[:max_cols]]
        picked = tokens[:, first]  # (cells, classes, N)
        labels, rows, cols = cells, len(cells), len(first)
    images = decode(picked.reshape(-1, tokens.shape[-1]).astype(np.int64))
    fig = image_grid(images, rows, cols, row_labels=labels, title=title)
    save_figure(fig, path, dpi=110)
    plt.close(fig)

