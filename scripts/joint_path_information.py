"""Joint path information I(X; path | c) by the generator's own likelihood (issue 22; research prototype).

Token-level D_path = mean_i I(z_i; path | c) falls under execution noise even in a process decoupled by
construction (the shapes oracle, docs/methods.md "A natural process decoupled by construction"), so the
decoupling index Δ reads that oracle as Balanced. The path column that asks "does a continuation still
carry out its path?" is the joint information between a whole continuation X (the tokens after the cut)
and its path. This script estimates it with a reader fitted on far more than R continuations, the
generator's own conditional q(x | p, c):

    I(X; path | c) ≈ mean over classes c, paths p, continuations x of p of
                     log2 q(x | p, c) − log2 Σ_u w_u q(x | u, c),

u over the distinct paths among the P sampled paths of the class, w_u their share of the P paths. For any
reader q this is the variational (Barber–Agakov) lower bound H(π̂) + E log2 r(p | x), r(p | x) ∝ π̂(p) q(x | p)
being a proper posterior over the sampled paths; it is exact when q is the cell's true conditional.

Readers (per probe cell: none, I2 = condition noise before the cut, I3 = codebook noise after it):

* hand-wired suite generators (verdict.calibration.CalibrationPrior): q is the exact probability of the
  tokens after the cut given the prefix, teacher-forced through the logits `advance` samples from
  (exec_logits, sampling_log_probs at the case's temperature). The prefix fixes the path (mode, and for
  the entangled wiring its sharpness), so q depends on the path only through it.
  - ``clean``: the unperturbed model for every cell (a fixed reader; a lower bound in the I3 cell. It
    gives probability 0 to a continuation that followed a misread mode, so it is -inf there).
  - ``own``: the cell's own conditional: in the I3 cell the model averaged over the after-cut codebook
    noise (Monte Carlo over `--noise-draws` tables drawn as the probe draws them; each table gives the
    execution logits and, where the wiring re-reads its mode, the misread probability, whose coin is
    marginalised exactly: (1 − m) p(x_i | mode) + m Σ_m' π_c(m') p(x_i | m')). None and I2 cells: the
    clean model (I2 acts before the cut only, so their continuations follow the clean conditional).
* the shapes oracle (families.oracle.TunableOracle): path = layout; q(x | layout, c) is a per-position
  categorical (naive Bayes, add-α smoothed) fitted on `--renders` renders per class x layout.
  - ``clean``: fitted at the clean rendering scale, for every cell;
  - ``own``: the cell's own process: none / I2: clean; I3, decoupled wiring: fitted on renders whose
    scale 1 + gain·dev_z is drawn per render from the probe's noise tables; I3, entangled wiring: the
    renderer's own misread mixture at the joint level, (1 − m̄) q(x | l) + m̄ mean_l' q(x | l').

A demonstration case not in the suite, ``entangled_chained`` (the entangled wiring with a misread that
persists: `chained_reads`), shows what a hand-wired generator that is entangled in the joint sense reads.
Results and reasoning: docs/methods-joint-path.md.

The cells are made exactly as calibration_suite.measure_case makes them (same seeds, probes.run_probe at
config.yaml's decoupling probe). Per replicate it reports the joint information per cell (bits per
continuation), its I2 / I3 responses (absolute and relative to the none cell), the token-level D_exec and
D_path responses, and Δ with the path column read four ways:

* ``token``: the library's token-level D_path (diagnostics.decoupling_responses, its own paired SEs);
* ``joint_per_token``: ΔI_joint / N (N = tokens per sequence, the unit of D_exec) beside ΔD_exec;
* ``joint_relative``: ΔI_joint / I_joint(none) beside ΔD_exec / D_exec(none);

for each reader. SEs: paired bootstrap over path indices within class (the same resampled paths for the
three cells and both columns). "Decoupled" here = Δ − 2 SE ≥ 0.7 and both diagonal responses > 2 SE.

    PYTHONPATH=src .venv/bin/python scripts/joint_path_information.py --seeds 3 --out results/joint_path.csv
    PYTHONPATH=src .venv/bin/python scripts/joint_path_information.py --cases oracle_decoupled entangled_chained --seeds 1
    PYTHONPATH=src .venv/bin/python scripts/joint_path_information.py --cases oracle_decoupled --paths 360 --continuations 20

Single-threaded (torch.set_num_threads(1)). Output: one CSV row per case x seed x reader x variant.
"""
from __future__ import annotations

import argparse
import contextlib
import warnings
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ibdiv.core.config import load_config
from ibdiv.core.seeds import derive_seed
from ibdiv.data import shapes
from ibdiv.families import sampling
from ibdiv.families.backbone import sampling_log_probs
from ibdiv.families.oracle import TunableOracle
from ibdiv.measure import diagnostics, entropy, probes
from ibdiv.measure.decoupling import decoupling_index
from ibdiv.verdict import calibration
from ibdiv.verdict.calibration_suite import CASES, build_case

DEFAULT_CASES = ("oracle_decoupled", "oracle_entangled", "decoupled", "entangled", "decoupled_embedding_read",
                 "balanced", "diversity_prioritized", "compression_prioritized")
CELLS = ("none", "i2", "i3")
# a demonstration case, not in the suite: the entangled wiring whose execution follows the mode its own
# last token spells (a misread persists), built by `chained_reads`; its intended label is the entangled one
CHAINED = "entangled_chained"


def expected_label(name: str) -> str:
    return CASES["entangled" if name == CHAINED else name][0]


def written_mode(model, classes: torch.Tensor, tokens: torch.Tensor, position: int) -> torch.Tensor:
    """The mode whose execution support at `position` holds each token (supports are disjoint)."""
    cfg = model.config
    offset = (tokens[:, None] - model.mode_codes[classes, :, position]) % cfg.vocab_size  # (n, M)
    return (offset < cfg.support).long().argmax(1)


@contextlib.contextmanager
def chained_reads():
    """While active, the entangled wiring follows what it has itself written: from the second execution
    step on it reads its mode from the support its last token lies in, and every execution step (the
    first included) misreads with the probability set by the table it writes its token through (off the
    path: perturbed after the cut), re-drawing its mode from the class prior. A misread then persists.
    The suite's wiring instead re-reads the path's own mode at every step (a misread lasts one token) and
    never misreads its first execution step (its read is of the path token, clean after the cut), so its
    continuations keep their path; see docs/methods-joint-path.md. Patches calibration._reread_mode
    (advance looks it up at every step); same random draws per step as the original; restored on exit."""
    original = calibration._reread_mode

    def chained(model, reads, state, mode, gen):
        if model.config.wiring != "entangled":
            return original(model, reads, state, mode, gen)
        i, classes, K = state.step, state.classes, model.config.vocab_size
        if i - 1 >= model.config.n_path:
            mode = written_mode(model, classes, state.tokens[:, i - 1], i - 1)
        read = model.table_read_at(reads, state.tokens, i)  # the table this step writes through
        misread = torch.rand(len(classes), generator=gen) < model.misread_probability(read, model.tok_emb.weight[:K].expand_as(read))
        prior = model.mode_logits(model.cls_emb(classes), classes).softmax(-1)
        redrawn = torch.multinomial(prior, 1, generator=gen)[:, 0]
        return torch.where(misread, redrawn, mode)

    calibration._reread_mode = chained
    try:
        yield
    finally:
        calibration._reread_mode = original
READERS = ("own", "clean")
LOG2E = 1.0 / math.log(2.0)


# --- the cells, exactly as calibration_suite.measure_case draws them ---------------------------------

def draw_cells(name: str, seed: int, probe: dict, per_class: int) -> tuple:
    """(model, temperature or None, nested arrays of the three decoupling cells), with measure_case's seeds."""
    model, temperature = build_case("entangled" if name == CHAINED else name, probe["cut_fraction"])
    knobs = {} if temperature is None else {"temperature": temperature}
    seeds = {part: derive_seed(seed, "calibration", name, part) for part in ("data", "gen", "noise", "measure")}
    with chained_reads() if name == CHAINED else contextlib.nullcontext():
        nested = probes.run_probe(model, probe, model.config.n_classes, knobs, per_class=per_class,
                                  seed=seeds["gen"], noise_seed=seeds["noise"])
    return model, temperature, nested, seeds


# --- log q(x | u, c) for every continuation x and every distinct path u of its class ----------------

def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def calibration_path_keys(model, tokens: np.ndarray) -> np.ndarray:
    """(C, P) path key of each sampled prefix: mode * 2 + sharp (as advance's _path_of reads them)."""
    C, P = tokens.shape[:2]
    first = torch.as_tensor(tokens[:, :, 0, :2])  # the prefix is the same in every continuation
    classes = torch.arange(C)[:, None].expand(C, P)
    codes = model.mode_codes[classes, :, 0]  # (C, P, M)
    mode = (codes == first[..., :1]).long().argmax(-1)
    sharp = first[..., 1] == model.mode_codes[classes, mode, 1]
    return (mode * 2 + sharp.long()).numpy()


@torch.no_grad()
def calibration_step_tables(model, temperature: float, table: torch.Tensor | None, n_cut: int,
                            chained: bool = False) -> tuple:
    """For one code table the sampler reads after the cut (None: clean): log p(x_i = k | c, mode, sharp)
    (C, M, 2, N, K) of the execution steps i >= n_cut, and the misread probability m_i (N,) of each step.

    Built from the model's own exec_logits / misread_probability, as advance calls them: the execution
    reads position i (off the path) through `table`; the entangled wiring re-reads its mode from the
    table of token i - 1 (clean while i - 1 is on the path), the embedding read from token 0's clean row."""
    cfg = model.config
    C, M, N, K = cfg.n_classes, cfg.n_modes, cfg.seq_len, cfg.vocab_size
    clean = model.tok_emb.weight[:K]
    read = clean if table is None else table
    classes = torch.arange(C).repeat_interleave(M * 2)
    mode = torch.arange(M).repeat_interleave(2).repeat(C)
    sharp = torch.tensor([False, True]).repeat(C * M)  # index = sharp, as calibration_path_keys
    logp = torch.full((C * M * 2, N, K), -math.inf)
    misread = np.zeros(N)
    for i in range(n_cut, N):
        logits = model.exec_logits(read, mode, sharp, classes, i)
        logp[:, i] = sampling_log_probs(logits, temperature)
        if cfg.wiring == "entangled" and (chained or i - 1 >= n_cut):  # a read off the path: perturbed table
            misread[i] = float(model.misread_probability(read[None], clean[None])[0])
    return logp.reshape(C, M, 2, N, K).double().numpy(), misread


def calibration_log_q(model, temperature: float, tokens: np.ndarray, n_cut: int, tables: list,
                      chained: bool = False) -> np.ndarray:
    """log q(x | u, c) (natural log), (C, P, R, U) with U = 2 M path keys, averaged (in probability) over
    `tables` = [(logp, misread), ...] (one per noise draw; one for the clean model)."""
    cfg = model.config
    C, P, R, N = tokens.shape
    M = cfg.n_modes
    with torch.no_grad():
        prior = model.mode_logits(model.cls_emb(torch.arange(C)), torch.arange(C)).softmax(-1).double().numpy()
    positions = np.arange(n_cut, N)
    x = tokens[..., n_cut:]  # (C, P, R, N - n_cut)
    per_draw = []
    for logp, misread in tables:
        # p(x_i | c, mode, sharp) at every continuation token: (C, M, 2, P, R, n)
        p = np.exp(logp[np.arange(C)[:, None, None, None, None, None], np.arange(M)[None, :, None, None, None, None],
                        np.arange(2)[None, None, :, None, None, None], positions, x[:, None, None]])
        mixed = (prior[:, :, None, None, None, None] * p).sum(1, keepdims=True)  # a re-drawn mode, same sharpness
        if chained:  # after the first execution step the mode is the one the previous token spells
            p = np.concatenate([p[..., :1], np.broadcast_to(np.take_along_axis(
                p[..., 1:], chained_modes(model, tokens, n_cut)[:, None, None], 1), p[..., 1:].shape)], -1)
        m = misread[positions]
        with np.errstate(divide="ignore"):
            seq = np.log((1 - m) * p + m * mixed).sum(-1)  # (C, M, 2, P, R)
        per_draw.append(seq.reshape(C, M * 2, P, R).transpose(0, 2, 3, 1))
    stacked = np.stack(per_draw)
    return logsumexp(stacked, 0) - math.log(len(per_draw))


def chained_modes(model, tokens: np.ndarray, n_cut: int) -> np.ndarray:
    """(C, P, R, N - n_cut - 1): the mode each execution token n_cut .. N - 2 spells (chained_reads)."""
    C, P, R, N = tokens.shape
    flat = torch.as_tensor(tokens).reshape(-1, N)
    classes = torch.arange(C).repeat_interleave(P * R)
    modes = [written_mode(model, classes, flat[:, i], i) for i in range(n_cut, N - 1)]
    return torch.stack(modes, -1).reshape(C, P, R, -1).numpy()


def calibration_readers(model, temperature: float, nested: dict, sigma: float, noise_draws: int, seed: int,
                        chained: bool = False) -> dict:
    """{reader: [log q (C, P, R, U) per cell]} and the (C, P) path keys per cell, for a CalibrationPrior."""
    n_cut = int(nested["frozen"][0, 0, 0].sum())
    if not (nested["frozen"][:, :, :, :n_cut].all() and not nested["frozen"][:, :, :, n_cut:].any()):
        raise ValueError("expected the first n_cut positions committed at the cut (raster order)")
    clean = [calibration_step_tables(model, temperature, None, n_cut, chained)]
    gen = torch.Generator().manual_seed(seed)
    noise = sampling.codebook_noise(model, noise_draws, sigma, gen)
    K = model.config.vocab_size
    noisy = [calibration_step_tables(model, temperature, model.tok_emb.weight[:K] + noise[j], n_cut, chained)
             for j in range(noise_draws)]
    tokens = nested["tokens"].astype(np.int64)
    out = {"clean": [calibration_log_q(model, temperature, tokens[k], n_cut, clean, chained) for k in range(3)]}
    out["own"] = out["clean"][:2] + [calibration_log_q(model, temperature, tokens[2], n_cut, noisy, chained)]
    keys = [calibration_path_keys(model, tokens[k]) for k in range(3)]
    return out, keys


def naive_bayes(model: TunableOracle, scales: np.ndarray, renders: int, alpha: float, seed: int) -> np.ndarray:
    """(C, L, N, K) log p(z_i | c, layout) of renders at `scales` (one per render of a class x layout,
    cycled), add-alpha smoothed."""
    rng = np.random.default_rng(seed)
    C, L, K = model.n_classes, model.n_layouts, model.vocab_size
    classes = np.repeat(np.arange(C), L * renders)
    layouts = np.tile(np.repeat(np.arange(L), renders), C)
    scale = np.resize(scales, len(classes))
    codes = model.vq.encode(shapes.render(classes, layouts, model.image_size, rng, scale)).reshape(C, L, renders, -1)
    counts = np.zeros((C, L, codes.shape[-1], K))
    np.add.at(counts, (np.arange(C)[:, None, None, None], np.arange(L)[None, :, None, None],
                       np.arange(codes.shape[-1])[None, None, None, :], codes), 1.0)
    return np.log((counts + alpha) / (renders + alpha * K))


def oracle_log_q(nb: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """log q(x | layout, c), (C, P, R, L), of every continuation under every layout."""
    C, P, R, N = tokens.shape
    picked = nb[np.arange(C)[:, None, None, None, None], np.arange(nb.shape[1])[None, None, None, :, None],
                np.arange(N), tokens[:, :, :, None, :]]  # (C, P, R, L, N)
    return picked.sum(-1)


def oracle_readers(model: TunableOracle, nested: dict, sigma: float, renders: int, alpha: float,
                   noise_draws: int, seed: int, cache: dict) -> tuple:
    """{reader: [log q (C, P, R, L) per cell]} and the (C, P) layout of every path per cell."""
    knobs = model.knobs
    gen = torch.Generator().manual_seed(seed)
    dev = model.code_deviation(sampling.codebook_noise(model, noise_draws, sigma, gen), noise_draws)
    key = (knobs.wiring, renders, alpha)
    if key not in cache:  # the reader is the renderer's: fitted once, on renders of its own seed
        clean = naive_bayes(model, np.ones(1), renders, alpha, seed)
        noisy = naive_bayes(model, 1.0 + knobs.gain * dev, renders, alpha, seed + 1) if knobs.wiring == "decoupled" else None
        cache[key] = (clean, noisy)
    clean_nb, noisy_nb = cache[key]
    tokens = nested["tokens"].astype(np.int64)
    clean = [oracle_log_q(clean_nb, tokens[k]) for k in range(3)]
    if knobs.wiring == "decoupled":
        own_i3 = oracle_log_q(noisy_nb, tokens[2])
    else:  # the renderer misreads the layout with probability m and renders a uniform one instead
        m = float(np.minimum(1.0, knobs.misread * dev).mean())
        q = clean[2]
        mix = logsumexp(q, -1)[..., None] - math.log(q.shape[-1])
        own_i3 = np.logaddexp(math.log1p(-m) + q, math.log(m) + mix) if m < 1 else np.broadcast_to(mix, q.shape)
    keys = [nested["path_layouts"][k] for k in range(3)]
    return {"clean": clean, "own": clean[:2] + [own_i3]}, keys


# --- the estimate and its paired bootstrap ----------------------------------------------------------

def joint_information(log_q: np.ndarray, keys: np.ndarray, paths: np.ndarray | None = None) -> float:
    """Mean over classes of the mean over continuations of log2 q(x | p) − log2 Σ_u w_u q(x | u), bits.
    log_q (C, P, R, U); keys (C, P) each path's u; paths (C, P') path indices to use (a bootstrap draw)."""
    C, P, R, U = log_q.shape
    paths = np.tile(np.arange(P), (C, 1)) if paths is None else paths
    cls = np.arange(C)[:, None]
    sel, k = log_q[cls, paths], keys[cls, paths]  # (C, P', R, U), (C, P')
    weights = np.stack([np.bincount(k[c], minlength=U) for c in range(C)]) / paths.shape[1]  # (C, U)
    own = np.take_along_axis(sel, np.broadcast_to(k[:, :, None, None], sel.shape[:3] + (1,)), -1)[..., 0]
    with np.errstate(divide="ignore"):
        mixture = logsumexp(sel + np.log(weights)[:, None, None, :], -1)
    with np.errstate(invalid="ignore"):
        value = (own - mixture) * LOG2E  # -inf - -inf (no path gives x any probability) reads as nan
    return float(np.mean(value))


def path_draws(C: int, P: int, n_boot: int, rng) -> list[np.ndarray]:
    """Bootstrap draws of path indices within class, (C, P) each: shared by every cell and column."""
    strata = np.repeat(np.arange(C), P)
    return [entropy.resample_indices(C * P, rng, strata).reshape(C, P) % P for _ in range(n_boot)]


def exec_entropy(tokens: np.ndarray, K: int, method: str) -> np.ndarray:
    """H(z_i | c, path) over the R continuations, (C, P, N): D_exec is its mean (entropy.split_terms)."""
    return entropy.entropy_from_samples(tokens, K, method, axis=2)


def delta_variants(i_joint: np.ndarray, d_exec: np.ndarray, n_tokens: int) -> dict:
    """{variant: (Δ, r_i2_path, r_i2_exec, r_i3_path, r_i3_exec)} from per-cell (…, 3) joint
    information (bits per continuation) and D_exec (bits per token)."""
    r_path, r_exec = i_joint[..., 1:] - i_joint[..., :1], d_exec[..., 1:] - d_exec[..., :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        variants = {"joint_per_token": (r_path / n_tokens, r_exec),
                    "joint_relative": (r_path / i_joint[..., :1], r_exec / d_exec[..., :1])}
    out = {}
    for name, (p, e) in variants.items():
        out[name] = (decoupling_index(p[..., 0], e[..., 0], p[..., 1], e[..., 1]), p[..., 0], e[..., 0], p[..., 1], e[..., 1])
    return out


def measure_replicate(name: str, seed: int, measure: dict, probe: dict, args, nb_cache: dict) -> list[dict]:
    torch.set_num_threads(1)
    model, temperature, nested, seeds = draw_cells(name, seed, probe, measure["per_class"])
    K, N, sigma = model.config.vocab_size, model.config.seq_len, probe["sigma"]
    reader_seed = derive_seed(seed, "joint_path", name, "reader")
    if isinstance(model, TunableOracle):
        readers, keys = oracle_readers(model, nested, sigma, args.renders, args.alpha, args.noise_draws,
                                       derive_seed(0, "joint_path", name, "renders"), nb_cache)
    else:
        readers, keys = calibration_readers(model, temperature, nested, sigma, args.noise_draws, reader_seed,
                                            chained=name == CHAINED)
    tokens = nested["tokens"].astype(np.int64)
    C, P = tokens.shape[1:3]
    # the library's token-level matrix with its own paired SEs (Δ as the suite computes it)
    rng = np.random.default_rng(derive_seed(seeds["measure"], "joint_path"))
    cells = [{"tokens": tokens[k], "frozen": nested["frozen"][k]} for k in range(3)]
    token_level = diagnostics.decoupling_responses(cells, K, measure, rng)
    execs = [exec_entropy(tokens[k], K, measure["method"]) for k in range(3)]
    draws = path_draws(C, P, args.n_boot, rng)
    d_exec = np.array([e.mean() for e in execs])
    d_exec_boot = np.array([[e[np.arange(C)[:, None], d].mean() for e in execs] for d in draws])
    rows = []
    base = {"case": name, "seed": seed, "expected": expected_label(name)}
    tl = {k: token_level[k]["value"] for k in ("r_i2_path", "r_i2_exec", "r_i3_path", "r_i3_exec", "r_i3_tot")}
    tl_se = {f"{k}_se": token_level[k]["se"] for k in tl}
    rows.append({**base, "reader": "-", "variant": "token", "delta": token_level["decoupling_index"]["value"],
                 "delta_se": token_level["decoupling_index"]["se"], **tl, **tl_se,
                 "d_path_token_none": token_level["unperturbed"]["d_path"]["value"],
                 **{f"d_exec_{c}": v for c, v in zip(CELLS, d_exec)}})
    for reader in READERS:
        i_joint = np.array([joint_information(readers[reader][k], keys[k]) for k in range(3)])
        i_boot = np.array([[joint_information(readers[reader][k], keys[k], d) for k in range(3)] for d in draws])
        point, boot = delta_variants(i_joint, d_exec, N), delta_variants(i_boot, d_exec_boot, N)
        for variant in point:
            names = ("delta", "r_i2_path", "r_i2_exec", "r_i3_path", "r_i3_exec")
            row = {**base, "reader": reader, "variant": variant,
                   **{f"i_joint_{c}": v for c, v in zip(CELLS, i_joint)},
                   **{f"i_joint_{c}_se": float(np.nanstd(i_boot[:, k], ddof=1)) for k, c in enumerate(CELLS)},
                   **{f"d_exec_{c}": v for c, v in zip(CELLS, d_exec)}}
            for n_, v, b in zip(names, point[variant], boot[variant]):
                row[n_] = float(v)
                row[f"{n_}_se"] = float(np.nanstd(b, ddof=1)) if np.isfinite(b).sum() > 2 else np.nan
            rows.append(row)
    for row in rows:
        row["decoupled"] = bool(np.isfinite(row["delta_se"]) and row["delta"] - args.margin * row["delta_se"] >= args.delta_min
                                and abs(row["r_i2_path"]) > args.margin * row["r_i2_path_se"]
                                and abs(row["r_i3_exec"]) > args.margin * row["r_i3_exec_se"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise-draws", type=int, default=64, help="codebook-noise tables averaged by the own reader")
    parser.add_argument("--renders", type=int, default=300, help="oracle renders per class x layout for its reader")
    parser.add_argument("--alpha", type=float, default=0.5, help="add-alpha smoothing of the oracle's reader")
    parser.add_argument("--n-boot", type=int, default=100, help="paired bootstrap draws over path indices")
    parser.add_argument("--margin", type=float, default=2.0)
    parser.add_argument("--delta-min", type=float, default=0.7)
    parser.add_argument("--paths", type=int, help="override the probe's P (a large-sample reference run)")
    parser.add_argument("--continuations", type=int, help="override the probe's R")
    parser.add_argument("--out", default="results/joint_path/joint_path_information.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # nan SEs of a reader that gives x no probability
    config = load_config(args.config)
    probe, measure = dict(config["probes"]["decoupling"]), config["measure"]
    probe.update({k: v for k, v in (("paths", args.paths), ("continuations", args.continuations)) if v})
    nb_cache, rows = {}, []
    for name in args.cases:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            start = time.process_time()
            rows += measure_replicate(name, seed, measure, probe, args, nb_cache)
            print(f"{name} seed {seed}: {time.process_time() - start:.1f} CPU-s", flush=True)
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    show = ["case", "seed", "reader", "variant", "i_joint_none", "i_joint_i2", "i_joint_i3", "r_i2_path", "r_i2_exec",
            "r_i3_path", "r_i3_exec", "delta", "delta_se", "decoupled"]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(table[show].to_string(index=False))


if __name__ == "__main__":
    main()
