"""Coarse-grained tokens for per-position estimands at large K (DESIGN §13).

With K in the thousands and a few hundred samples per condition, per-position entropies are
undersampled, so the per-position estimands are also computed on coarse tokens: a fixed map
from the K codes to K' clusters, found by k-means on the tokenizer's codebook vectors. The
map depends only on the codebook, K' and a seed, so every measuring job recomputes the same
map and every family, the real-data reference and every null go through it identically.

The k-means is ours (numpy, float64): k-means++ initialisation from a seeded generator, Lloyd
iterations until the assignment stops changing, empty clusters refilled deterministically, and
clusters numbered by their smallest code, so the map does not depend on the order in which
the centres happened to be drawn (K' = K with distinct vectors gives the identity).
"""
from __future__ import annotations

import numpy as np

FULL_K = 0  # the `coarse_k` of numbers measured on the tokenizer's own K codes (no coarse-graining)
MAX_ITER = 300


def kmeans(points, k: int, seed: int, max_iter: int = MAX_ITER) -> np.ndarray:
    """Cluster of each row of `points` (n, d): an int64 array (n,) with values in [0, k),
    every cluster non-empty, numbered in the order of its smallest member's index."""
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k <= len(x):
        raise ValueError(f"kmeans needs a 2-D array with at least k={k} >= 1 rows, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    centres = x[_plus_plus(x, k, rng)]
    labels = None
    for _ in range(max_iter):
        d2 = _sq_dist(x, centres)
        assigned = _fill_empty(d2, d2.argmin(1))  # argmin: ties go to the lowest centre index
        if labels is not None and np.array_equal(assigned, labels):
            break
        labels = assigned
        centres = _means(x, labels, k)
    return _canonical(labels)


def _sq_dist(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n, k) squared distances, expanded so that a large codebook costs one matrix product
    (the difference form needs n·k·d memory); rounding can make them slightly negative."""
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """k-means++: the first centre uniform, each next one drawn with probability proportional
    to the squared distance to the nearest centre chosen so far."""
    chosen = [int(rng.integers(len(x)))]
    d2 = _sq_dist(x, x[chosen])[:, 0]
    d2[chosen] = 0.0
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            pick = int(rng.choice(len(x), p=d2 / total))
        else:  # fewer distinct vectors than k: any row not yet a centre
            pick = int(rng.choice(np.setdiff1d(np.arange(len(x)), chosen)))
        chosen.append(pick)
        d2 = np.minimum(d2, _sq_dist(x, x[[pick]])[:, 0])
        d2[chosen] = 0.0  # a centre is never drawn again, whatever the rounding left
    return chosen


def _means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    return sums / np.bincount(labels, minlength=k)[:, None]  # no cluster is empty here


def _fill_empty(d2: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Give every empty cluster (in increasing order) the point farthest from its own centre
    among clusters with more than one member (ties: lowest index), so K' is the alphabet
    actually used and the outcome is a function of the data alone. d2: (n, k) squared
    distances to the centres."""
    labels = labels.copy()
    sizes = np.bincount(labels, minlength=d2.shape[1])
    far = d2[np.arange(len(labels)), labels]
    for j in np.flatnonzero(sizes == 0):
        movable = np.where(sizes[labels] > 1, far, -np.inf)
        i = int(np.argmax(movable))
        sizes[labels[i]] -= 1
        labels[i], sizes[j], far[i] = j, 1, -np.inf
    return labels


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters (all non-empty, so ids 0..k-1) by their smallest member's index."""
    _, first = np.unique(labels, return_index=True)
    return np.argsort(np.argsort(first))[labels]


def codebook_vectors(vq) -> np.ndarray:
    """(K, d) code vectors of a tokenizer (what its decoder reads for each code)."""
    return vq.quantizer.codebook.detach().cpu().numpy()


def code_map(codebook, k: int, seed: int) -> np.ndarray:
    """The K -> K' map: cluster of each code, from k-means on its codebook vector; the seed is
    derived from `seed` and K', so each K' has its own fixed draw."""
    from ibdiv.core.seeds import derive_seed

    return kmeans(codebook, k, derive_seed(seed, "coarse", k))


def tokenizer_maps(vq, coarse_k, seed: int) -> dict[int, np.ndarray]:
    """{K': map} for every configured K' (`measure.coarse_k`; empty = none)."""
    vectors = codebook_vectors(vq)
    return {int(k): code_map(vectors, int(k), seed) for k in coarse_k}


def apply(code_map_: np.ndarray, tokens) -> np.ndarray:
    """Tokens of any shape mapped to their clusters (int64)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= len(code_map_)):
        raise ValueError(f"tokens must lie in [0, {len(code_map_)}) to be coarse-grained")
    return code_map_[tokens.astype(np.int64)]
