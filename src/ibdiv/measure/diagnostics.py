"""Measurements of one sample set (DESIGN §2, §4): the estimands, with bootstrap SEs and nulls.

Everything here takes token arrays (and decoded-image predictions) and returns plain dicts
ready for JSON; the real held-out data goes through the same functions at the same N.
"""
from __future__ import annotations

import numpy as np

from ibdiv.measure import entropy
from ibdiv.measure.decoupling import decoupling_index


def flat_estimands(tokens, labels, K: int, cfg: dict, rng, logprobs=None) -> dict:
    """H(Z), H_pos, D (at `cfg['per_class']` rows per class), I(Z;C) and its null, and the
    sequence entropy per token from `logprobs`: pass them only for a family whose sampler's
    log-probabilities are exact (AR, independent); for MIM and diffusion the sum of per-step
    log-probs is not a joint entropy (it came out above the per-position entropy)."""
    method, n_boot = cfg["method"], cfg["n_boot"]
    idx = entropy.subsample_per_class(labels, cfg["per_class"], rng)
    tokens, labels = np.asarray(tokens)[idx], np.asarray(labels)[idx]
    hz = entropy.codebook_entropy(tokens, K, method, n_boot, rng, labels=labels)
    mi = entropy.code_usage_mi(tokens, labels, K, method, n_boot, rng)
    mi_null = entropy.code_usage_mi_null(tokens, labels, K, method, cfg["n_null"], rng)
    out = {
        "n_per_class": cfg["per_class"],
        "h_z": hz.entropy.as_dict(), "perplexity": hz.perplexity, "codes_used": hz.fraction_used,
        "h_pos": entropy.positional_entropy(tokens, K, method, n_boot, rng, labels=labels).as_dict(),
        "d": entropy.conditional_diversity(tokens, labels, K, method, n_boot, rng).as_dict(),
        "mi_zc": mi.as_dict(), "mi_zc_null": mi_null.as_dict(),
        "mi_zc_clears": entropy.clears_null(mi, mi_null, cfg["margin_se"]),
    }
    if logprobs is not None and np.isfinite(logprobs[idx]).all():
        out["sequence_entropy"] = entropy.sequence_entropy_per_token(logprobs[idx], n_boot, rng, labels=labels).as_dict()
    return out


def nested_estimands(cell: dict, K: int, cfg: dict, rng, layouts=None, n_layouts: int = 0) -> dict:
    """Path split (D_exec, D_frozen, D_influence with its shuffle null) of one path-clamp cell,
    and, when continuations' layouts are given (shapes), the layout commitment."""
    split = entropy.path_split(cell["tokens"], cell["frozen"], K, cfg["method"], cfg["n_boot_paths"],
                               cfg["n_null_paths"], cfg["n_sets"], margin_se=cfg["margin_se"], rng=rng)
    out = {**split.as_dict(), "committed_fraction": float(cell["committed_fraction"]),
           "process_fraction": float(cell["process_fraction"])}
    # rho_infl from the excess over the null mean: a confidence-ranked sampler's null offset is
    # not influence (DESIGN §5); the raw ratio is kept beside it
    d_tot = out["d_tot"]["value"]
    out["rho_infl"] = out["d_influence_excess"]["value"] / d_tot if d_tot > 0 else float("nan")
    out["rho_infl_raw"] = out["d_influence"]["value"] / d_tot if d_tot > 0 else float("nan")
    if layouts is not None:
        lc = entropy.layout_commitment(layouts, n_layouts, cfg["method"], cfg["n_boot_paths"],
                                       margin_se=cfg["margin_se"], rng=rng)
        out["layout_commitment"] = lc.as_dict()
    return out


# split-term index of each response; "tot" (ΔD_tot) is reported beside the matrix, not in Δ: a
# response that only moves diversity between the columns (ΔD_path ≈ −ΔD_exec) leaves D_tot alone
RESPONSE_COLUMNS = {"path": 2, "exec": 1, "infl": 4, "tot": 0}


def decoupling_responses(cells: list[dict], K: int, cfg: dict, rng) -> dict:
    """The 2x2 decoupling matrix (DESIGN §5) with **paired** bootstrap SEs.

    cells: the decoupling probe's [unperturbed, I2 before the cut, I3 after the cut] nested
    samples, which share their random numbers path by path. r_i2_path = D_path(I2) −
    D_path(none), etc.; also the D_influence and D_tot responses (r_*_infl, r_*_tot). Δ = diagonal share
    (|r_i2_path| + |r_i3_exec|) / Σ|r| over the (D_path, D_exec) matrix. Every SE comes from
    the same replicates: path indices resampled once per replicate and applied to all three
    cells, so the shared randomness cancels in the differences.
    """
    pairs = [(np.asarray(c["tokens"], dtype=np.int64), np.asarray(c["frozen"], dtype=bool)) for c in cells]
    method, n_sets = cfg["method"], cfg["n_sets"]
    point = np.stack([entropy.split_terms(t, f, K, method, n_sets, rng) for t, f in pairs])
    reps = entropy.split_replicates(pairs, K, method, cfg["n_boot_paths"], n_sets, rng)

    def responses(terms):  # terms (..., 3 cells, 5) -> {name: (...)}
        return {f"r_{probe}_{col}": terms[..., k, i] - terms[..., 0, i]
                for k, probe in ((1, "i2"), (2, "i3")) for col, i in RESPONSE_COLUMNS.items()}

    value, boot = responses(point), responses(reps)
    out = {name: {"value": float(value[name]), "se": float(np.std(boot[name], ddof=1))} for name in value}
    index = lambda r: decoupling_index(r["r_i2_path"], r["r_i2_exec"], r["r_i3_path"], r["r_i3_exec"])  # noqa: E731
    out["decoupling_index"] = {"value": float(index(value)), "se": float(np.nanstd(index(boot), ddof=1))}
    cell_se = reps[:, 0].std(0, ddof=1)  # the unperturbed cell's split, from the same replicates
    out["unperturbed"] = {name: {"value": float(point[0, i]), "se": float(cell_se[i])}
                          for i, name in enumerate(("d_tot", "d_exec", "d_path", "d_frozen", "d_influence"))}
    return out


def quality_reference(images, labels, heldout_tokens, train_tokens, cnn, heldout_nn_hamming: float | None = None) -> dict:
    """What every generated set is compared with (DESIGN §6): the real held-out images'
    classifier features and labels, the training token grids (memorisation), and the held-out
    grids with their own nearest-neighbour distance to training (memorisation's baseline;
    pass `heldout_nn_hamming` when measure_reference has already computed it)."""
    from ibdiv.data.classifier import predict
    from ibdiv.measure.metrics import memorisation

    heldout_tokens, train_tokens = np.asarray(heldout_tokens), np.asarray(train_tokens)
    if heldout_nn_hamming is None:
        heldout_nn_hamming = memorisation(heldout_tokens, train_tokens, heldout_tokens).ref_nn_hamming
    return {"features": predict(cnn, images)["features"], "labels": np.asarray(labels),
            "heldout_tokens": heldout_tokens, "train_tokens": train_tokens,
            "heldout_nn_hamming": float(heldout_nn_hamming)}


def save_quality_reference(path, reference: dict) -> None:
    """Written once by measure_reference: every measuring job reads it instead of re-running the
    classifier on the held-out images and reloading the token cache."""
    from ibdiv.core.io import save_npz

    save_npz(path, **reference)


def load_quality_reference(path) -> dict:
    """The saved reference, with what every generated set's memorisation check looks up in it
    computed once: the training grids hashed (`train_rows`) and the held-out copy rate."""
    from ibdiv.core.io import load_npz
    from ibdiv.measure.metrics import RowSet

    reference = load_npz(path)
    reference["heldout_nn_hamming"] = float(reference["heldout_nn_hamming"])
    reference["train_rows"] = RowSet(reference["train_tokens"])
    reference["heldout_copy_rate"] = reference["train_rows"].copy_rate(reference["heldout_tokens"])
    return reference


def quality_metrics(tokens, labels, features, reference: dict, per_class: int, rng) -> dict:
    """Image-space quality / diversity and token-space diversity of one generated set (DESIGN §6).

    Both sides are subsampled to the same rows per class (at most `per_class`, at most what the
    smaller side has), so the Fréchet distance is only ever computed at equal N.
    """
    from ibdiv.measure import metrics

    labels, ref_labels = np.asarray(labels), reference["labels"]
    classes = np.unique(labels)
    n = min(per_class, *(int(np.sum(labels == c)) for c in classes),
            *(int(np.sum(ref_labels == c)) for c in classes))
    gen = entropy.subsample_per_class(labels, n, rng)
    shared = np.flatnonzero(np.isin(ref_labels, classes))
    ref = shared[entropy.subsample_per_class(ref_labels[shared], n, rng)]
    fake, real = np.asarray(features)[gen], reference["features"][ref]
    kid = metrics.kid(real, fake, n_subsets=50, rng=rng)
    prdc = metrics.prdc(real, fake, k=5)
    gen_tokens = np.asarray(tokens)[gen]
    memo = metrics.memorisation(gen_tokens, reference["train_tokens"], reference["heldout_tokens"],
                                ref_nn_hamming=reference["heldout_nn_hamming"],
                                train_rows=reference.get("train_rows"), ref_copy_rate=reference.get("heldout_copy_rate"))
    hamming_vendi, mean_hamming = metrics.token_diversity(gen_tokens)
    return {
        "n_per_class": n, "fd": metrics.frechet_distance(real, fake), "kid": kid.mean,
        # SD of KID over the 50 overlapping random subsets / sqrt(50): the Monte-Carlo SE of the
        # mean over subset draws (how much redrawing the subsets moves it), not a sampling SE and
        # not the spread over subsets (the old name kid_subset_sd said so, wrongly)
        "kid_mc_se": kid.se,
        **prdc._asdict(), "vendi_within_class": metrics.within_class_vendi(fake, labels[gen]),
        "hamming_vendi": hamming_vendi, "mean_hamming": mean_hamming,
        "copy_rate": memo.copy_rate, "heldout_copy_rate": memo.ref_copy_rate,
        "nn_hamming": memo.gen_nn_hamming, "nn_hamming_ratio": memo.nn_ratio,
    }


def predict_decoded(tokens, vq, cnn) -> dict:
    """Classifier predictions on decoded token grids of any leading shape (..., N)."""
    from ibdiv.data.classifier import predict

    tokens = np.asarray(tokens)
    images = vq.decode(tokens.reshape(-1, tokens.shape[-1]).astype(np.int64))
    pred = predict(cnn, images)
    lead = tokens.shape[:-1]
    out = {"pred": pred["pred"].reshape(lead), "features": pred["features"].reshape(*lead, -1)}
    if "layout_pred" in pred:
        out["layout_pred"] = pred["layout_pred"].reshape(lead)
    return out


def paired_d_replicates(tokens, labels, K: int, cfg: dict, seed: int) -> list[float]:
    """D on `cfg['n_boot']` bootstrap resamples whose indices depend on `seed` and the labels
    only: the first `cfg['per_class']` rows of each class, resampled within class.

    Every flat cell of a run (the baseline and each probe's cells) samples its j-th image of a
    class with the same random numbers (common random numbers: ibdiv.measure.probes samples
    every probe with the run's seed), so the cells' D are correlated. Given one `seed` per run,
    cell A's and cell B's replicates resample the same images, and SD(D_A^b − D_B^b) is the
    **paired** SE of a difference of D (enhancement gains; tables.paired_difference_se): the
    unpaired hypot(SE_A, SE_B) ignores the correlation and was 3-4x too large (issue 22)."""
    labels = np.asarray(labels)
    idx = np.concatenate([np.flatnonzero(labels == c)[: cfg["per_class"]] for c in np.unique(labels)])
    tokens, labels = np.asarray(tokens, dtype=np.int64)[idx], labels[idx]

    def stat(rows):
        return entropy.conditional_diversity(tokens[rows], labels[rows], K, cfg["method"], n_boot=0).value

    reps = entropy.bootstrap_replicates(stat, len(idx), cfg["n_boot"], np.random.default_rng(seed), labels)
    return [float(x) for x in reps]


def measure_flat(cache: dict, K: int, cfg: dict, rng, vq, cnn, reference: dict | None = None,
                 exact_likelihood: bool = False, paired_seed: int | None = None) -> list[dict]:
    """One dict per cell of a flat cache (tokens (cells, n, N)): estimands + accuracy (with its
    binomial SE), and the quality metrics against `reference` (see quality_reference) when
    given; the sequence entropy only with `exact_likelihood` (a family trait); given the run's
    `paired_seed`, `d_paired_boot`: D on bootstrap resamples shared by every cell of the run
    (paired_d_replicates)."""
    from ibdiv.measure.metrics import conditioning_accuracy

    rows = []
    for cell in range(cache["tokens"].shape[0]):
        tokens = cache["tokens"][cell].astype(np.int64)
        pred = predict_decoded(tokens, vq, cnn)
        logprobs = cache["logprobs"][cell] if exact_likelihood else None
        accuracy = conditioning_accuracy(pred["pred"], cache["labels"])
        row = {**flat_estimands(tokens, cache["labels"], K, cfg, rng, logprobs),
               "conditioning_accuracy": accuracy,
               "conditioning_accuracy_se": float(np.sqrt(accuracy * (1 - accuracy) / len(tokens)))}
        if reference is not None:
            row["quality"] = quality_metrics(tokens, cache["labels"], pred["features"], reference, cfg["per_class"], rng)
        if paired_seed is not None:
            row["d_paired_boot"] = paired_d_replicates(tokens, cache["labels"], K, cfg, paired_seed)
        rows.append(row)
    return rows


def measure_nested(cache: dict, K: int, cfg: dict, rng, vq, cnn, n_layouts: int = 0,
                   reference: dict | None = None) -> list[dict]:
    """One dict per cell of a nested cache (tokens (cells, C, P, R, N)): path split, layout
    commitment (when the classifier reads layouts), accuracy of the continuations and, given a
    `reference`, their quality metrics (continuations pooled per class)."""
    from ibdiv.measure.metrics import conditioning_accuracy

    rows = []
    for cell in range(cache["tokens"].shape[0]):
        tokens = cache["tokens"][cell].astype(np.int64)
        pred = predict_decoded(tokens, vq, cnn)
        classes = np.broadcast_to(np.arange(tokens.shape[0])[:, None, None], tokens.shape[:3])
        layouts = pred.get("layout_pred") if n_layouts else None
        one = {key: cache[key][cell] for key in ("tokens", "frozen", "committed_fraction", "process_fraction")}
        row = nested_estimands(one, K, cfg, rng, layouts, n_layouts)
        row["conditioning_accuracy"] = conditioning_accuracy(pred["pred"], classes)
        if "path_layouts" in cache and layouts is not None:  # oracle: the decoder's accuracy
            truth = np.broadcast_to(cache["path_layouts"][cell][:, :, None], layouts.shape)
            row["layout_decoder_accuracy"] = float(np.mean(layouts == truth))
        if reference is not None:
            row["quality"] = quality_metrics(tokens.reshape(-1, tokens.shape[-1]), classes.ravel(),
                                             pred["features"].reshape(-1, pred["features"].shape[-1]),
                                             reference, cfg["per_class"], rng)
        rows.append(row)
    return rows


def per_position_estimands(tokens, labels, K: int, cfg: dict, rng) -> dict:
    """H_pos and D at `cfg['per_class']` rows per class: the per-position estimands of a flat
    set, what a coarse alphabet measures again; and H(Z) on the same alphabet, so that κ at K'
    is a ratio on the alphabet δ at K' is (η' = δ'/κ'; a full-K κ would mix two alphabets).
    I(Z;C) stays at full K."""
    method, n_boot = cfg["method"], cfg["n_boot"]
    idx = entropy.subsample_per_class(labels, cfg["per_class"], rng)
    tokens, labels = np.asarray(tokens)[idx], np.asarray(labels)[idx]
    return {"n_per_class": cfg["per_class"],
            "h_pos": entropy.positional_entropy(tokens, K, method, n_boot, rng, labels=labels).as_dict(),
            "d": entropy.conditional_diversity(tokens, labels, K, method, n_boot, rng).as_dict(),
            "h_z": entropy.codebook_entropy(tokens, K, method, n_boot, rng, labels=labels).entropy.as_dict()}


def measure_per_position(cache: dict, K: int, cfg: dict, rng, *, nested: bool, decoupling: bool = False) -> list[dict]:
    """The per-position estimands of every cell of a cache whose tokens lie in [0, K): H_pos
    and D of a flat cache, the path split of a nested one and, for the decoupling probe, the
    paired responses (kept with the first cell, as measure_probe does at full K).

    This is what DESIGN §13 computes again on coarse tokens. Everything else of a cell is
    alphabet-free or pooled (accuracy, quality, layout commitment, H(Z), I(Z;C)) and measured
    once at full K by measure_flat / measure_nested."""
    rows = []
    for cell in range(len(cache["tokens"])):
        if nested:
            one = {key: cache[key][cell] for key in ("tokens", "frozen", "committed_fraction", "process_fraction")}
            rows.append(nested_estimands(one, K, cfg, rng))
        else:
            rows.append(per_position_estimands(cache["tokens"][cell], cache["labels"], K, cfg, rng))
    if decoupling:
        cells = [{key: cache[key][i] for key in ("tokens", "frozen")} for i in range(len(rows))]
        rows[0]["responses"] = decoupling_responses(cells, K, cfg, rng)
    return rows


def measure_coarse(cache: dict, maps: dict, cfg: dict, seed: int, *, nested: bool, decoupling: bool = False) -> dict:
    """{str(K'): measure_per_position on the cache's tokens mapped through maps[K']} (maps from
    coarse.tokenizer_maps). Each K' draws from its own stream derived from `seed` (the run's
    measuring seed), so adding a K' changes neither the full-K numbers nor another K'."""
    from ibdiv.measure import coarse
    from ibdiv.core.seeds import derive_seed

    out = {}
    for k, code_map in maps.items():
        rng = np.random.default_rng(derive_seed(seed, "coarse", k))
        mapped = {**cache, "tokens": coarse.apply(code_map, cache["tokens"])}
        out[str(k)] = measure_per_position(mapped, int(k), cfg, rng, nested=nested, decoupling=decoupling)
    return out


def oracle_ground_truth(vq, executions: int, seed: int, method: str, maps: dict | None = None) -> dict:
    """The oracle's path/execution split from a large sample (DESIGN §3): every class x layout
    rendered `executions` times. D_exec = mean H(z_i | c, layout) over uniform layouts;
    D_tot = mean H(z_i | c) pooling the layouts; D_path = D_tot - D_exec. With hundreds of
    executions per layout the estimators' small-N bias is negligible. With `maps` ({K': code
    map}, coarse.tokenizer_maps) the same renders are also counted through each map:
    out["coarse"][str(K')] is the truth the coarse estimates are compared with."""
    from ibdiv.data import shapes

    rng = np.random.default_rng(seed)
    K, n_classes = vq.cfg.codebook_size, len(shapes.CLASS_NAMES)
    classes = np.repeat(np.arange(n_classes), shapes.N_LAYOUTS * executions)
    layouts = np.tile(np.repeat(np.arange(shapes.N_LAYOUTS), executions), n_classes)
    codes = vq.encode(shapes.render(classes, layouts, vq.cfg.image_size, rng))
    codes = codes.reshape(n_classes, shapes.N_LAYOUTS, executions, -1)
    out = {**_split_truth(codes, K, method),
           "layout_entropy": float(np.log2(shapes.N_LAYOUTS)), "executions_per_layout": executions}
    if maps:
        from ibdiv.measure import coarse

        out["coarse"] = {str(k): _split_truth(coarse.apply(m, codes), int(k), method) for k, m in maps.items()}
    return out


def tunable_oracle_truth(model, sigma: float, executions: int, seed: int) -> dict:
    """The token-level split of the tunable shapes oracle (families.oracle.TunableOracle) in the
    decoupling probe's three cells, from its known mechanism (DESIGN §5): {"none" | "i2" | "i3":
    {d_tot, d_exec, d_path}} and the true responses r_{i2,i3}_{path,exec,tot}.

    Every class x layout is rendered `executions` times at the rendering-noise scale of each cell;
    I2's layout distribution is the mean over condition-noise draws of the tilted one (paths draw
    their own noise, so D_tot pools that mean), I3's reads use the expected table deviation sigma^2
    (its spread over K x d elements is a few percent). Decoupled: I3 scales the rendering noise;
    entangled: it mixes each path's code distribution with the uniform layout mixture. Entropies are
    plug-in over the `executions` renders (hundreds: their small-N bias is negligible here)."""
    import torch

    from ibdiv.data import shapes
    from ibdiv.families import sampling

    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    C, L, K, knobs = model.n_classes, model.n_layouts, model.vocab_size, model.knobs
    dev = sigma ** 2

    def code_dists(scale: float) -> np.ndarray:  # (C, L, N, K) p(z_i | c, layout)
        classes = np.repeat(np.arange(C), L * executions)
        layouts = np.tile(np.repeat(np.arange(L), executions), C)
        codes = model.vq.encode(shapes.render(classes, layouts, model.image_size, rng, scale))
        counts = np.eye(K)[codes.reshape(C, L, executions, -1)].sum(2)
        return counts / executions

    def split(p_layout: np.ndarray, p_exec: np.ndarray) -> dict:  # p_layout (C, L), p_exec (C, L, N, K)
        h = lambda p: -(p * np.log2(np.where(p > 0, p, 1))).sum(-1)  # noqa: E731
        d_exec = float((p_layout[:, :, None] * h(p_exec)).sum(1).mean())
        d_tot = float(h((p_layout[:, :, None, None] * p_exec).sum(1)).mean())
        return {"d_tot": d_tot, "d_exec": d_exec, "d_path": d_tot - d_exec}

    clean = code_dists(1.0)
    uniform = np.full((C, L), 1.0 / L)
    noise = sampling.condition_noise(model, 4000, sigma, gen)
    tilted = np.stack([np.exp(model.layout_logits(torch.full((4000,), c), noise)) for c in range(C)])
    tilted = (tilted / tilted.sum(-1, keepdims=True)).mean(1)  # (C, L)
    if knobs.wiring == "decoupled":
        after = code_dists(1.0 + knobs.gain * dev)
    else:
        p = min(1.0, knobs.misread * dev)
        after = (1 - p) * clean + p * clean.mean(1, keepdims=True)
    cells = {"none": split(uniform, clean), "i2": split(tilted, clean), "i3": split(uniform, after)}
    responses = {f"r_{cell}_{col}": cells[cell][f"d_{col}"] - cells["none"][f"d_{col}"]
                 for cell in ("i2", "i3") for col in ("path", "exec", "tot")}
    return {**cells, **responses}


def _split_truth(codes: np.ndarray, K: int, method: str) -> dict:
    """D_exec, D_tot, D_path of codes (C, layouts, executions, N) in [0, K)."""
    counts_exec = np.eye(K, dtype=np.int64)[codes].sum(2)  # (C, L, N, K)
    d_exec = float(np.mean(entropy.entropy_from_counts(counts_exec, method)))
    d_tot = float(np.mean(entropy.entropy_from_counts(counts_exec.sum(1), method)))
    return {"d_exec": d_exec, "d_tot": d_tot, "d_path": d_tot - d_exec}


def oracle_validation(truth: dict, clamp_cells: list[dict]) -> list[dict]:
    """Estimated vs true split for every cut of the oracle's path-clamp probe."""
    rows = []
    for cell in clamp_cells:
        for name in ("d_exec", "d_tot", "d_path"):
            est, se = cell[name]["value"], cell[name]["se"]
            rel = (est - truth[name]) / truth[name] if truth[name] else float("nan")
            rows.append({"quantity": name, "truth": truth[name], "estimate": est, "se": se,
                         "relative_error": rel, "within_10pct": bool(abs(rel) <= 0.10),
                         "committed_fraction": cell["committed_fraction"]})
        if "layout_commitment" in cell:
            lc = cell["layout_commitment"]["mi_minus_null_mean"]
            rows.append({"quantity": "layout_commitment", "truth": truth["layout_entropy"], "estimate": lc["value"],
                         "se": lc["se"], "relative_error": (lc["value"] - truth["layout_entropy"]) / truth["layout_entropy"],
                         "within_10pct": None, "committed_fraction": cell["committed_fraction"]})
    return rows
