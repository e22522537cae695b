"""The joint path / execution split of a decoupling cell, read with a generator's own likelihood
(issue 22; docs/methods-joint-path.md).

Token-level D_path = mean_i I(z_i; path | c) falls under execution noise wherever neighbouring paths'
per-position supports overlap (the decoupled shapes oracle), although every continuation still carries
out its path. The question the I3 cell asks, "does a continuation still carry out its path?", is the
*joint* information between a whole continuation X (the tokens after the cut) and its path. With the
conditional q(x | u, c) of the cell (exact for AR-like generators, the suite's hand-wired ones; a fitted
reader for the oracle), for each class c with its P sampled paths and their R continuations:

    I(X; path | c) = mean over paths p, continuations x of p of  log2 q(x | p, c) − log2 Σ_u w_u q(x | u, c)
    H(X | path, c) = mean of −log2 q(x | p, c)

u over the distinct paths among the P (w_u their share). Their sum is the cross-entropy of the class's
path mixture, the joint H(X | c): the same identity as D_tot = D_path + D_exec, in bits per continuation.
For any reader q, I is the Barber–Agakov lower bound H(π̂) + E log2 r(p | x) and H the cross-entropy
upper bound; both are exact when q is the cell's own conditional. Reported per token (divided by the
sequence length N, D's unit): Δ, a ratio of sums of responses, does not depend on that unit.
"""
from __future__ import annotations

import math

import numpy as np

from ibdiv.measure import entropy
from ibdiv.measure.decoupling import decoupling_index

LOG2E = 1.0 / math.log(2.0)
COLUMNS = ("tot", "exec", "path")  # order of joint_split's terms


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log Σ exp(a) along `axis`, stable; an all −inf slice gives −inf (no path gives x any probability)."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def joint_split(log_q: np.ndarray, keys: np.ndarray, paths: np.ndarray | None = None) -> np.ndarray:
    """(H(X | c), H(X | path, c), I(X; path | c)) in bits per continuation, mean over classes.

    log_q (C, P, R, U): natural-log likelihood of every continuation under every path key u; keys (C, P):
    each sampled path's key; paths (C, P'): the path indices to use (a bootstrap draw; default all).
    The mixture weights are the keys' shares among the used paths (a resample reweights them)."""
    C, P, R, U = log_q.shape
    paths = np.tile(np.arange(P), (C, 1)) if paths is None else paths
    cls = np.arange(C)[:, None]
    sel, k = log_q[cls, paths], keys[cls, paths]  # (C, P', R, U), (C, P')
    weights = np.stack([np.bincount(k[c], minlength=U) for c in range(C)]) / paths.shape[1]  # (C, U)
    own = np.take_along_axis(sel, np.broadcast_to(k[:, :, None, None], sel.shape[:3] + (1,)), -1)[..., 0]
    with np.errstate(divide="ignore"):
        mixture = logsumexp(sel + np.log(weights)[:, None, None, :], -1)
    with np.errstate(invalid="ignore"):  # -inf - -inf (no path gives x any probability) reads as nan
        h_tot, h_exec = -mixture.mean() * LOG2E, -own.mean() * LOG2E
    return np.array([h_tot, h_exec, h_tot - h_exec])


def path_resamples(C: int, P: int, n_boot: int, rng) -> list[np.ndarray]:
    """Bootstrap draws of path indices within class, (C, P) each; one list serves every cell, so the
    responses (differences of cells that share their random numbers path by path) are paired."""
    strata = np.repeat(np.arange(C), P)
    return [entropy.resample_indices(C * P, rng, strata).reshape(C, P) % P for _ in range(n_boot)]


def joint_responses(log_qs: list[np.ndarray], keys: list[np.ndarray], n_tokens: int, n_boot: int, rng) -> dict:
    """The 2x2 decoupling matrix on the joint columns, in the form diagnostics.decoupling_responses
    gives the token-level one: r_{i2,i3}_{path,exec,tot} = joint term of the cell − the unperturbed
    cell's, per token (/ n_tokens), Δ (decoupling_index) and the unperturbed cell's terms
    (unperturbed: d_tot, d_exec, d_path), each {"value", "se"}, SEs from a paired bootstrap over path
    indices within class (`n_boot` draws, the same for the three cells).

    log_qs / keys: the decoupling probe's [unperturbed, I2, I3] cells, each read with that cell's own
    conditional (see the module docstring)."""
    C, P = keys[0].shape
    point = np.stack([joint_split(q, k) for q, k in zip(log_qs, keys)]) / n_tokens  # (3, 3)
    draws = path_resamples(C, P, n_boot, rng)
    reps = np.stack([[joint_split(q, k, d) for q, k in zip(log_qs, keys)] for d in draws]) / n_tokens  # (B, 3, 3)

    def responses(terms):  # (..., 3 cells, 3 terms) -> {name: (...)}
        return {f"r_{probe}_{col}": terms[..., cell, i] - terms[..., 0, i]
                for cell, probe in ((1, "i2"), (2, "i3")) for i, col in enumerate(COLUMNS)}

    value, boot = responses(point), responses(reps)
    out = {name: {"value": float(value[name]), "se": _sd(boot[name])} for name in value}
    index = lambda r: decoupling_index(r["r_i2_path"], r["r_i2_exec"], r["r_i3_path"], r["r_i3_exec"])  # noqa: E731
    out["decoupling_index"] = {"value": float(index(value)), "se": _sd(index(boot))}
    out["unperturbed"] = {f"d_{col}": {"value": float(point[0, i]), "se": _sd(reps[:, 0, i])}
                          for i, col in enumerate(COLUMNS)}
    return out


def _sd(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanstd(x, ddof=1)) if np.isfinite(x).sum() > 2 else math.nan
