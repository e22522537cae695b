"""Token caches: images encoded by the tokenizer, stored compactly with their labels.

A cache holds `tokens` (n, grid*grid) in raster order as the smallest unsigned dtype
that fits the codebook, `labels`, `layouts` (-1 when the dataset has none), the
`heldout` mask of the data split, and the `grid` / `codebook_size` needed to read it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ibdiv.data import datasets
from ibdiv.core.io import load_npz, save_npz


@dataclass
class TokenSet:
    tokens: np.ndarray  # int64 (n, N)
    labels: np.ndarray  # int64 (n,)
    layouts: np.ndarray | None
    grid: int
    codebook_size: int


def compact_dtype(codebook_size: int):
    return np.uint8 if codebook_size <= 256 else np.uint16


def encode_dataset(data_path, tokenizer_path) -> dict:
    from ibdiv.data.tokenizer import load_tokenizer

    vq = load_tokenizer(tokenizer_path)
    arrays = load_npz(data_path)
    # a pretrained dataset keeps colour images at the backend's size beside the grey ones
    codes = vq.encode(arrays["rgb"] if "rgb" in arrays else arrays["images"].astype(np.float32) / 255.0)
    return {
        "tokens": codes.astype(compact_dtype(vq.cfg.codebook_size)),
        "labels": arrays["labels"],
        "layouts": arrays["layouts"],
        "heldout": arrays["heldout"],
        "grid": np.int64(vq.cfg.grid),
        "codebook_size": np.int64(vq.cfg.codebook_size),
    }


def save_token_cache(path, cache: dict) -> None:
    save_npz(path, **cache)


def load_token_cache(path, split: str | None = None) -> TokenSet:
    """Load a cache; `split` in {None, "train", "heldout"}."""
    a = load_npz(path)
    keep = np.ones(len(a["labels"]), dtype=bool) if split is None else (a["heldout"] if split == "heldout" else ~a["heldout"])
    layouts = a["layouts"][keep]
    return TokenSet(
        a["tokens"][keep].astype(np.int64), a["labels"][keep],
        layouts if len(layouts) and (layouts >= 0).all() else None,
        int(a["grid"]), int(a["codebook_size"]),
    )


def evaluate_reconstructions(vq, cnn, heldout: datasets.Dataset) -> tuple[dict, np.ndarray]:
    """Tokenizer quality on held-out images, including what the classifier still sees
    after the round trip (the ceiling for conditioning accuracy of any generator)."""
    from ibdiv.data.classifier import predict
    from ibdiv.data.tokenizer import reconstruction_metrics

    codes = vq.encode(heldout.images)
    recon = vq.decode(codes)
    on_original, on_recon = predict(cnn, heldout.images), predict(cnn, recon)
    metrics = reconstruction_metrics(heldout.images, codes, recon, vq.cfg.codebook_size)
    metrics.update(
        classifier_accuracy_original=float(np.mean(on_original["pred"] == heldout.labels)),
        classifier_accuracy_reconstruction=float(np.mean(on_recon["pred"] == heldout.labels)),
        n_heldout=len(heldout.labels),
    )
    if heldout.layouts is not None and "layout_pred" in on_original:
        metrics["layout_accuracy_original"] = float(np.mean(on_original["layout_pred"] == heldout.layouts))
        metrics["layout_accuracy_reconstruction"] = float(np.mean(on_recon["layout_pred"] == heldout.layouts))
    return metrics, recon
