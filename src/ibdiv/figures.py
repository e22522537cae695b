"""Figures. Each function takes numbers already computed elsewhere and draws them;
no science happens here."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures are files
import matplotlib.pyplot as plt
import numpy as np

from ibdiv.io import save_figure


def image_grid(images: np.ndarray, rows: int, cols: int, *, row_labels=None, title=None, scale=0.7):
    """Grey-scale images (rows*cols, H, W) on a grid; returns the figure."""
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale + 1.0, rows * scale + 0.6), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < len(images):
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
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


def sample_grid(images: np.ndarray, labels: np.ndarray, path, *, per_class: int = 12, title=None) -> None:
    """Decoded samples, one row per class."""
    classes = np.unique(labels)
    rows = [images[np.flatnonzero(labels == c)[:per_class]] for c in classes]
    fig = image_grid(np.concatenate(rows), len(classes), per_class, row_labels=[str(c) for c in classes], title=title)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def truth_vs_estimate(table, path, *, title=None) -> None:
    """Bars of ground truth next to estimates (± 1.96 SE), one group per quantity."""
    quantities = list(dict.fromkeys(table["quantity"]))
    fig, ax = plt.subplots(figsize=(1.6 * len(quantities) + 2, 3.2))
    x = np.arange(len(quantities))
    first = table.drop_duplicates("quantity").set_index("quantity").loc[quantities]
    ax.bar(x - 0.2, first["truth"], 0.4, label="ground truth (large sample)", color="0.7")
    ax.bar(x + 0.2, first["estimate"], 0.4, yerr=1.96 * first["se"], capsize=3, label="nested estimate", color="tab:blue")
    ax.set_xticks(x, quantities)
    ax.set_ylabel("bits")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
