"""Procedural `shapes` dataset, split into a path stage and an execution stage.

The *path* is the layout: a discrete choice of anchor (3x3 grid of centres) and size
(2 half-extents) = 18 layouts whose effect spans many tokens. The *execution* is
rendering noise: sub-pixel shift, radius and stroke jitter, intensity and pixel noise.
Keeping the two stages separate lets the oracle family (a later module) sample paths and
executions independently, so its path/execution entropy split is known.

Geometry is written for 16x16 and scaled linearly for other sizes.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = ["disc", "square", "triangle", "cross", "ring", "bar", "L", "T"]
_ANCHORS_16 = (4.5, 7.5, 10.5)  # centre coordinates in pixels at 16x16
_SIZES_16 = (2.6, 4.6)  # half-extents in pixels at 16x16
N_LAYOUTS = len(_ANCHORS_16) ** 2 * len(_SIZES_16)

# Execution noise at 16x16 (pixels); see reference/feasibility-shapes.md §1.
SHIFT = 1.0
RADIUS_JITTER = 0.4
STROKE_HALF_WIDTH = (0.9, 0.35)  # mean, +/- jitter
INTENSITY = (0.65, 1.0)
PIXEL_NOISE = 0.05


def layout_params(layouts: np.ndarray, image_size: int):
    """Map layout ids to (cx, cy, half_extent) in pixels."""
    scale = image_size / 16.0
    n_anchor = len(_ANCHORS_16)
    size_idx, anchor_idx = np.divmod(np.asarray(layouts), n_anchor * n_anchor)
    ay, ax = np.divmod(anchor_idx, n_anchor)
    anchors = np.array(_ANCHORS_16) * scale
    return anchors[ax], anchors[ay], np.array(_SIZES_16)[size_idx] * scale


def sample_layouts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Path stage: a uniformly random layout per image."""
    return rng.integers(0, N_LAYOUTS, size=n)


def render(classes, layouts, image_size: int, rng: np.random.Generator | None, noise_scale=1.0) -> np.ndarray:
    """Execution stage: draw each (class, layout) with rendering noise.

    `rng=None` renders the noise-free template (no shift, nominal sizes, full intensity).
    `noise_scale` (a number or one per image) multiplies the shift, radius and stroke jitter and the
    pixel noise (the oracle's execution-stage knob; 1 is the dataset's own process, bit for bit).
    Returns float32 images in [0, 1], shape (n, image_size, image_size).
    """
    classes, layouts = np.asarray(classes), np.asarray(layouts)
    n, scale = len(classes), image_size / 16.0
    cx, cy, r = layout_params(layouts, image_size)
    if rng is None:
        shift = np.zeros((2, n))
        dr, width, intensity = np.zeros(n), np.full(n, STROKE_HALF_WIDTH[0]), np.ones(n)
    else:
        k = np.broadcast_to(np.asarray(noise_scale, dtype=float), (n,))
        shift = rng.uniform(-SHIFT, SHIFT, size=(2, n)) * k
        dr = rng.uniform(-RADIUS_JITTER, RADIUS_JITTER, size=n) * k
        width = STROKE_HALF_WIDTH[0] + rng.uniform(-1, 1, size=n) * STROKE_HALF_WIDTH[1] * k
        intensity = rng.uniform(*INTENSITY, size=n)
    cx, cy = cx + shift[0] * scale, cy + shift[1] * scale
    r, width = r + dr * scale, width * scale

    coords = np.arange(image_size) + 0.5
    x = coords[None, None, :] - cx[:, None, None]
    y = coords[None, :, None] - cy[:, None, None]
    x, y = np.broadcast_arrays(x, y)
    dist = np.empty((n, image_size, image_size))
    for c, name in enumerate(CLASS_NAMES):
        sel = classes == c
        if sel.any():
            dist[sel] = _SIGNED_DISTANCE[name](x[sel], y[sel], r[sel, None, None], width[sel, None, None])
    # One-pixel anti-aliased edge: coverage falls linearly across the boundary.
    images = np.clip(0.5 - dist, 0.0, 1.0) * intensity[:, None, None]
    if rng is not None:
        images = images + rng.normal(0.0, PIXEL_NOISE, size=images.shape) * k[:, None, None]
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def templates(image_size: int) -> np.ndarray:
    """Noise-free renders, shape (n_classes, N_LAYOUTS, H, W)."""
    c, lay = np.meshgrid(np.arange(len(CLASS_NAMES)), np.arange(N_LAYOUTS), indexing="ij")
    return render(c.ravel(), lay.ravel(), image_size, None).reshape(len(CLASS_NAMES), N_LAYOUTS, image_size, image_size)


def generate(n: int, image_size: int, seed: int):
    """Balanced classes, random layouts, noisy renders: (images, labels, layouts)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    layouts = sample_layouts(n, rng)
    return render(labels, layouts, image_size, rng), labels.astype(np.int64), layouts.astype(np.int64)


# Signed distances (negative inside). Filled shapes use the region, stroked shapes the
# distance to a centre line minus the stroke half-width.
def _segment(x, y, x0, y0, x1, y1):
    """Distance from points to the segment (x0,y0)-(x1,y1) (broadcast)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - x0 - t * dx, y - y0 - t * dy)


def _disc(x, y, r, w):
    return np.hypot(x, y) - r


def _square(x, y, r, w):
    return np.maximum(np.abs(x), np.abs(y)) - 0.8 * r


def _triangle(x, y, r, w):
    # Upward triangle: bottom edge plus two slanted edges (unit normals).
    s = np.sqrt(5.0)
    return np.maximum.reduce([y - 0.8 * r, (2 * x - y) / s - 0.8 * r, (-2 * x - y) / s - 0.8 * r])


def _cross(x, y, r, w):
    return np.minimum(_segment(x, y, -r, 0, r, 0), _segment(x, y, 0, -r, 0, r)) - w


def _ring(x, y, r, w):
    return np.abs(np.hypot(x, y) - r) - w


def _bar(x, y, r, w):
    return _segment(x, y, -0.75 * r, 0.75 * r, 0.75 * r, -0.75 * r) - 1.3 * w


def _ell(x, y, r, w):
    return np.minimum(_segment(x, y, -r, -r, -r, r), _segment(x, y, -r, r, r, r)) - w


def _tee(x, y, r, w):
    return np.minimum(_segment(x, y, -r, -r, r, -r), _segment(x, y, 0, -r, 0, r)) - w


_SIGNED_DISTANCE = {
    "disc": _disc, "square": _square, "triangle": _triangle, "cross": _cross,
    "ring": _ring, "bar": _bar, "L": _ell, "T": _tee,
}
