"""Tests for ibdiv.measure.entropy: estimators, resampling helpers, estimands and the path split."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ibdiv.measure import entropy as E
from ibdiv.measure.entropy import METHODS

FAST = settings(max_examples=60, deadline=None)


def zipf(k: int, alpha: float = 1.0) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** alpha
    return p / p.sum()


def true_entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# --------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("method", METHODS)
def test_uniform_counts_give_log2_k(method):
    k = 32
    assert E.entropy_from_counts(np.full(k, 5000), method) == pytest.approx(math.log2(k), abs=1e-3)


def test_plugin_exact_on_equal_counts():
    assert E.entropy_from_counts([3, 3, 3, 3], "plugin") == pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize("method", ["plugin", "miller_madow", "chao_shen"])
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_point_mass_is_zero(method, n):
    counts = np.zeros(64, dtype=int)
    counts[5] = n
    assert E.entropy_from_counts(counts, method) == 0.0


EULER_GAMMA = 0.5772156649015329


def grassberger_g_by_recurrence(n_max: int) -> np.ndarray:
    """Grassberger (2003)'s G(n) from its closed-form recurrence, independent of the digamma
    form the module uses: G(1) = -γ - ln 2, G(2) = 2 - γ - ln 2, G(2m+1) = G(2m),
    G(2m+2) = G(2m) + 2/(2m+1)."""
    g = np.zeros(max(n_max, 2) + 1)
    g[1], g[2] = -EULER_GAMMA - math.log(2), 2 - EULER_GAMMA - math.log(2)
    for n in range(3, n_max + 1):
        g[n] = g[n - 1] if n % 2 else g[n - 2] + 2 / (n - 1)
    return g


def test_grassberger_g_equals_its_recurrence():
    """A flipped (-1)^n sign or a psi-only G changes G(1) by ±ln 2: both fail here."""
    assert np.allclose(E._grassberger_g_table(40)[1:], grassberger_g_by_recurrence(40)[1:], atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 101])
def test_grassberger_point_mass_is_exactly_ln_n_minus_g(n):
    counts = np.zeros(64, dtype=int)
    counts[0] = n
    expected = (math.log(n) - grassberger_g_by_recurrence(n)[n]) / math.log(2)
    assert E.entropy_from_counts(counts, "grassberger") == pytest.approx(expected, abs=1e-12)


def _exact_expectation(estimate, p: np.ndarray, n: int) -> float:
    """E[estimate(counts)] over every multinomial outcome of n draws from p (small n, K)."""
    from itertools import combinations_with_replacement
    from math import factorial

    total = 0.0
    for draw in combinations_with_replacement(range(len(p)), n):
        counts = np.bincount(draw, minlength=len(p))
        weight = factorial(n) / np.prod([factorial(int(c)) for c in counts]) * np.prod(p ** counts)
        total += weight * estimate(counts)
    return total


def _reference_nats(counts: np.ndarray, method: str) -> float:
    """Each estimator written out from its textbook formula (nats)."""
    n, q = counts.sum(), counts[counts > 0] / counts.sum()
    plugin = -np.sum(q * np.log(q))
    if method == "plugin":
        return plugin
    if method == "miller_madow":
        return plugin + (len(q) - 1) / (2 * n)
    if method == "grassberger":
        g = grassberger_g_by_recurrence(n)
        return math.log(n) - np.sum(counts[counts > 0] * g[counts[counts > 0]]) / n
    f1 = min(np.sum(counts == 1), n - 1)  # chao_shen
    pa = (1 - f1 / n) * q
    return -np.sum(pa * np.log(pa) / (1 - (1 - pa) ** n))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_exact_small_n_expected_values(method, n):
    """E[estimate] at small N equals the textbook formula's expectation exactly: a sign error,
    a missing term or a per-row clip in any estimator changes it."""
    p = np.array([0.5, 0.3, 0.15, 0.05])
    got = _exact_expectation(lambda c: E.entropy_from_counts(c, method), p, n)
    want = _exact_expectation(lambda c: _reference_nats(c, method) / math.log(2), p, n)
    assert got == pytest.approx(want, abs=1e-12)


def test_rows_are_not_clipped_before_averaging():
    """Near-uniform 64-code rows at N = 10: Chao-Shen overshoots log2 64 on about half the
    rows; clipping each row first would pull the mean from ~6.0 to ~5.6 bit (DESIGN §5)."""
    rows = np.random.default_rng(0).integers(0, 64, size=(4000, 10))
    per_row = E.entropy_from_samples(rows, 64, "chao_shen")
    assert (per_row > 6).mean() > 0.3 and per_row.mean() > 5.9
    # D over 400 classes of 10 rows at one position: the mean overshoots and the *final*
    # estimand is clipped to log2 K (a per-row clip would give ~5.6)
    d = E.conditional_diversity(rows[:400].reshape(-1, 1), np.repeat(np.arange(400), 10), 64, n_boot=0)
    assert d.value == 6.0


@pytest.mark.parametrize("method", METHODS)
def test_zipf_large_n_matches_truth(method):
    p = zipf(64)
    counts = np.random.default_rng(0).multinomial(200_000, p, size=4)
    assert np.allclose(E.entropy_from_counts(counts, method), true_entropy_bits(p), atol=0.02)


def test_bias_ordering_undersampled_zipf():
    # K=64, N=30: heavily undersampled; average over replications to see the bias itself.
    p = zipf(64)
    truth = true_entropy_bits(p)
    counts = np.random.default_rng(1).multinomial(30, p, size=500)
    bias = {m: float(E.entropy_from_counts(counts, m).mean() - truth) for m in METHODS}
    assert bias["plugin"] < bias["miller_madow"] <= bias["chao_shen"]
    assert bias["plugin"] < bias["grassberger"]
    assert abs(bias["chao_shen"]) < abs(bias["miller_madow"]) < abs(bias["plugin"])
    assert abs(bias["chao_shen"]) < 0.5


@FAST
@given(hnp.arrays(np.int64, st.integers(1, 80), elements=st.integers(0, 40)),
       st.sampled_from(METHODS))
def test_estimates_within_bounds(counts, method):
    """Final estimands lie in [0, log2 K] (per-row estimates may overshoot: they are averaged first)."""
    h = E.entropy_from_counts(counts, method, clip=True)
    if counts.sum() == 0:
        assert math.isnan(h)
    else:
        assert 0.0 <= h <= math.log2(len(counts)) + 1e-12 if len(counts) > 1 else h == 0.0


@FAST
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 30)),
                  elements=st.integers(0, 11)))
def test_samples_match_counts_and_orderings(samples):
    k = 12
    counts = np.stack([np.bincount(row, minlength=k) for row in samples])
    for method in METHODS:
        np.testing.assert_allclose(E.entropy_from_samples(samples, k, method),
                                   E.entropy_from_counts(counts, method), atol=1e-12)
    # Miller–Madow only ever adds a non-negative correction to the plug-in value.
    assert np.all(E.entropy_from_counts(counts, "plugin")
                  <= E.entropy_from_counts(counts, "miller_madow") + 1e-12)
    # Estimates depend on the count multiset only, not on which codes carry them.
    shuffled = counts[:, np.random.default_rng(0).permutation(k)]
    np.testing.assert_allclose(E.entropy_from_counts(shuffled), E.entropy_from_counts(counts))


def test_estimator_edge_cases():
    assert E.entropy_from_counts([7], "chao_shen") == 0.0  # alphabet of one code
    assert math.isnan(E.entropy_from_counts([0, 0, 0]))
    h = E.entropy_from_counts(np.array([[1, 1, 0, 0], [0, 0, 0, 0]]), clip=True)
    assert h.shape == (2,) and h[0] <= 2.0 and math.isnan(h[1])
    with pytest.raises(ValueError, match="unknown entropy method"):
        E.entropy_from_counts([1, 2], "nsb")
    with pytest.raises(ValueError, match="non-negative"):
        E.entropy_from_counts([1, -2])


def test_counts_per_position():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 9, size=(50, 6))
    counts = E.counts_per_position(tokens, 9)
    assert counts.shape == (6, 9)
    for i in range(6):
        np.testing.assert_array_equal(counts[i], np.bincount(tokens[:, i], minlength=9))
    with pytest.raises(ValueError, match=r"\[0, 9\)"):
        E.counts_per_position(tokens + 1, 9)


# --------------------------------------------------------------------------- resampling


def test_resample_indices_stays_within_strata():
    strata = np.repeat([2, 0, 1], [5, 7, 3])
    idx = E.resample_indices(len(strata), np.random.default_rng(0), strata)
    np.testing.assert_array_equal(strata[idx], strata)


def test_subsample_per_class_matches_n_and_names_short_class():
    labels = np.repeat([0, 1, 2], [10, 4, 8])
    idx = E.subsample_per_class(labels, 4, rng=0)
    assert len(np.unique(idx)) == 12
    np.testing.assert_array_equal(np.bincount(labels[idx]), [4, 4, 4])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have only \{1: 4\}"):
        E.subsample_per_class(labels, 5, rng=0)
    with pytest.raises(ValueError, match=r"\[3\]"):
        E.subsample_per_class(labels, 2, rng=0, n_classes=4)


def test_bootstrap_se_shrinks_with_more_items():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 16, size=(50, 8))
    large = rng.integers(0, 16, size=(800, 8))
    se_small = E.positional_entropy(small, 16, n_boot=60, rng=1).se
    se_large = E.positional_entropy(large, 16, n_boot=60, rng=1).se
    assert se_large < se_small / 2  # ~1/√16 = 1/4 expected


def test_estimate_interval_is_se_based():
    est = E.Estimate(1.0, 0.1)
    assert est.ci95 == pytest.approx((1.0 - 0.196, 1.0 + 0.196))


# --------------------------------------------------------------------------- estimands


def test_deterministic_tokens_have_zero_diversity():
    tokens = np.tile(np.arange(16) % 5, (40, 1))
    labels = np.repeat(np.arange(4), 10)
    for method in METHODS:
        assert E.conditional_diversity(tokens, labels, 64, method, n_boot=5, rng=0).value == 0.0
        assert E.positional_entropy(tokens, 64, method, n_boot=5, rng=0).value == 0.0


def test_conditional_diversity_needs_matched_n():
    tokens = np.zeros((5, 4), dtype=int)
    with pytest.raises(ValueError, match="same number of rows per class"):
        E.conditional_diversity(tokens, np.array([0, 0, 0, 1, 1]), 8)
    E.conditional_diversity(tokens, np.array([0, 0, 0, 1, 1]), 8, n_boot=3, allow_unmatched=True)


def test_conditional_diversity_of_independent_uniform_tokens():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4, size=(400, 6))
    labels = np.repeat(np.arange(4), 100)
    d = E.conditional_diversity(tokens, labels, 64, n_boot=20, rng=1)
    assert d.value == pytest.approx(2.0, abs=0.05) and 0 < d.se < 0.05


def test_codebook_entropy_perplexity_and_usage():
    tokens = np.tile(np.arange(8), (30, 2))  # 8 of 64 codes, equally often
    cb = E.codebook_entropy(tokens, 64, n_boot=10, rng=0)
    assert cb.entropy.value == pytest.approx(3.0, abs=1e-3)
    assert cb.perplexity == pytest.approx(8.0, rel=1e-3)
    assert cb.fraction_used == 8 / 64


def test_code_usage_mi_and_null():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    # Each class uses its own block of 8 codes: I(Z;C) = log2 4 = 2 bits.
    specific = labels[:, None] * 8 + rng.integers(0, 8, size=(200, 16))
    mi = E.code_usage_mi(specific, labels, 32, n_boot=20, rng=1)
    null = E.code_usage_mi_null(specific, labels, 32, n_perm=50, rng=2)
    assert mi.value == pytest.approx(2.0, abs=0.05)
    assert null.q95 < 0.1 and mi.value - mi.se > null.q95
    # Class-blind usage: the estimate sits inside its null.
    blind = rng.integers(0, 32, size=(200, 16))
    mi0 = E.code_usage_mi(blind, labels, 32, n_boot=20, rng=1)
    null0 = E.code_usage_mi_null(blind, labels, 32, n_perm=50, rng=2)
    assert not E.clears_null(mi0, null0, margin_se=1.0)


def test_sequence_entropy_per_token():
    k = 16
    logprobs = np.full((100, 8), -math.log(k))
    est = E.sequence_entropy_per_token(logprobs, n_boot=10, rng=0)
    assert est.value == pytest.approx(4.0) and est.se == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="natural-log"):
        E.sequence_entropy_per_token(-logprobs)


# --------------------------------------------------------------------------- path split


def clamp_sample(rng, n_cls=4, n_paths=40, n_cont=20, influence=True):
    """Synthetic nested sample with known split (N=8 positions, codes < 16).

    Positions 0-1 are committed at the cut (frozen): position 0 holds a layout L ∈ {0..3}
    and position 1 a uniform pattern over 4 codes (2 bits each, 0 within a path).
    Positions 2-3 are 2·(L mod 2) + u with u ∈ {0,1} fresh per continuation: 2 bits in
    total, 1 within a path, so 1 bit each of influence (when ``influence`` is False the
    layout bit is redrawn per continuation instead). Positions 4-7 are fresh uniform noise
    over 4 codes (2 bits of execution, no influence).
    Truth with influence: D_tot 2, D_exec 1.25, D_path 0.75, D_frozen 0.5, D_influence 0.25.
    """
    shape = (n_cls, n_paths, n_cont, 8)
    tokens = rng.integers(0, 4, size=shape)
    layout = rng.integers(0, 4, size=(n_cls, n_paths, 1))
    pattern = rng.integers(0, 4, size=(n_cls, n_paths, 1))
    tokens[..., 0] = layout
    tokens[..., 1] = pattern
    bit = layout % 2 if influence else rng.integers(0, 2, size=shape[:3])
    tokens[..., 2:4] = (2 * bit + rng.integers(0, 2, size=shape[:3] + (2,)).transpose(3, 0, 1, 2)
                        ).transpose(1, 2, 3, 0)
    frozen = np.zeros((n_cls, n_paths, 8), dtype=bool)
    frozen[..., :2] = True
    return tokens, frozen


def test_path_split_recovers_known_truth():
    tokens, frozen = clamp_sample(np.random.default_rng(0))
    res = E.path_split(tokens, frozen, 16, n_boot=20, n_null=10, rng=1)
    # D_tot and D_exec carry the estimator's bias at N = R = 20 (Chao–Shen ≈ plug-in when
    # every code is seen repeatedly: ≈ −0.1 bit over 4 codes); it cancels in the differences.
    assert res.d_tot.value == pytest.approx(2.0, abs=0.13)
    assert res.d_exec.value == pytest.approx(1.25, abs=0.1)
    assert res.d_path.value == pytest.approx(0.75, abs=0.08)
    assert res.d_frozen.value == pytest.approx(0.5, abs=0.05)
    assert res.d_influence.value == pytest.approx(0.25, abs=0.05)
    assert res.committed_fraction == 0.25
    assert res.influence_clears and res.d_influence.value - res.d_influence.se > res.influence_null.q95
    assert abs(res.influence_null.mean) < 0.03
    mm = E.path_split(tokens, frozen, 16, method="miller_madow", n_boot=0, n_null=0, rng=1)
    assert mm.d_tot.value == pytest.approx(2.0, abs=0.05)
    assert mm.d_exec.value == pytest.approx(1.25, abs=0.05)
    assert mm.d_influence.value == pytest.approx(0.25, abs=0.05)


def test_path_split_parts_add_exactly():
    rng = np.random.default_rng(3)
    tokens, frozen = clamp_sample(rng, n_paths=20, n_cont=10)
    res = E.path_split(tokens, frozen, 16, n_boot=5, n_null=3, rng=4)
    assert res.d_frozen.value + res.d_influence.value == res.d_path.value
    assert res.d_path.value == pytest.approx(res.d_tot.value - res.d_exec.value, abs=1e-12)


def test_path_split_null_fails_without_influence():
    tokens, frozen = clamp_sample(np.random.default_rng(5), influence=False)
    res = E.path_split(tokens, frozen, 16, n_boot=20, n_null=20, rng=6)
    assert not res.influence_clears
    assert abs(res.d_influence.value) < 0.04
    assert res.d_frozen.value == pytest.approx(0.5, abs=0.05)  # the frozen part is still there


def test_path_split_random_commit_sets_without_influence():
    # MIM/diffusion-like: each path commits a different random subset of positions.
    rng = np.random.default_rng(7)
    n_cls, n_paths, n_cont, n_pos, k = 4, 30, 10, 12, 64
    tokens = rng.choice(k, p=zipf(k), size=(n_cls, n_paths, n_cont, n_pos))
    frozen = rng.random((n_cls, n_paths, n_pos)) < 0.4
    tokens = np.where(frozen[:, :, None, :], tokens[:, :, :1, :], tokens)
    res = E.path_split(tokens, frozen, k, n_boot=20, n_null=20, rng=8)
    assert not res.influence_clears
    assert abs(res.d_influence.value) < 3 * res.d_influence.se + 0.02


def test_path_split_deterministic_generator_is_zero():
    tokens = np.broadcast_to(np.arange(6) * 3, (2, 10, 5, 6)).copy()
    frozen = np.zeros((2, 10, 6), dtype=bool)
    frozen[..., :2] = True
    res = E.path_split(tokens, frozen, 32, n_boot=5, n_null=3, rng=0)
    for part in (res.d_tot, res.d_exec, res.d_path, res.d_frozen, res.d_influence):
        assert part.value == 0.0


def test_path_split_rejects_bad_frozen_mask():
    tokens, frozen = clamp_sample(np.random.default_rng(0), n_paths=10, n_cont=5)
    frozen[..., 4] = True  # position 4 varies across continuations
    with pytest.raises(ValueError, match="frozen"):
        E.path_split(tokens, frozen, 16, n_boot=2, n_null=1)
    with pytest.raises(ValueError, match="P ≥ R"):
        E.path_split(tokens[:, :3], frozen[:, :3] & False, 16)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.95))
def test_shuffle_moves_only_free_cells_and_keeps_their_multiset(seed, frozen_share):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 50, size=(2, 6, 3, 5))
    frozen = rng.random((2, 6, 5)) < frozen_share
    tokens = np.where(frozen[:, :, None, :], tokens[:, :, :1, :], tokens)
    out = E._shuffle_free_cells(tokens, frozen, rng)
    frozen4 = np.broadcast_to(frozen[:, :, None, :], tokens.shape)
    np.testing.assert_array_equal(out[frozen4], tokens[frozen4])
    for c in range(2):
        for i in range(5):
            free = ~frozen4[c, ..., i]
            np.testing.assert_array_equal(np.sort(out[c, ..., i][free]),
                                          np.sort(tokens[c, ..., i][free]))


def test_shuffle_moves_whole_continuations_when_frozen_set_is_shared():
    # AR-like cut: the free part of each continuation must move as one unit.
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10**6, size=(1, 8, 4, 6))
    frozen = np.zeros((1, 8, 6), dtype=bool)
    frozen[..., :2] = True
    tokens[..., :2] = tokens[:, :, :1, :2]
    out = E._shuffle_free_cells(tokens, frozen, rng)
    before = {tuple(row) for row in tokens[0, :, :, 2:].reshape(-1, 4)}
    after = {tuple(row) for row in out[0, :, :, 2:].reshape(-1, 4)}
    assert before == after


# --------------------------------------------------------------------------- layout commitment


def test_layout_commitment_detects_path_decided_layout():
    rng = np.random.default_rng(0)
    n_layouts = 18
    decided = rng.integers(0, n_layouts, size=(4, 40, 1))
    noisy = rng.integers(0, n_layouts, size=(4, 40, 10))
    layouts = np.where(rng.random((4, 40, 10)) < 0.8, decided, noisy)
    res = E.layout_commitment(layouts, n_layouts, n_boot=20, n_null=100, rng=1)
    assert res.clears and res.mi_minus_null_mean.value > 1.5
    assert res.mi.value == pytest.approx(res.h_layout - res.h_layout_given_path)
    assert res.mi_minus_null_mean.value == pytest.approx(res.mi.value - res.null.mean)

    blind = E.layout_commitment(noisy, n_layouts, method="plugin", n_boot=20, n_null=100, rng=1)
    assert not blind.clears
    assert blind.null.mean > 0.5  # plug-in at R=10 is strongly biased up: the null shows it
    assert abs(blind.mi_minus_null_mean.value) < 3 * blind.mi.se + 0.05


def test_results_serialise_to_json():
    import json

    tokens, frozen = clamp_sample(np.random.default_rng(0), n_paths=10, n_cont=5)
    split = E.path_split(tokens, frozen, 16, n_boot=3, n_null=3, rng=0)
    layout = E.layout_commitment(tokens[..., 0], 16, n_boot=3, n_null=5, rng=0)
    cb = E.codebook_entropy(tokens.reshape(-1, 8), 16, n_boot=3, rng=0)
    text = json.dumps({"split": split.as_dict(), "layout": layout.as_dict(), "cb": cb.as_dict()})
    assert "influence_clears" in text and "rule" in text


@pytest.mark.parametrize("k, n", [(3, 40), (18, 80), (64, 20), (64, 10), (5000, 7)])
def test_chao_shen_by_counting_and_sorting_agree_bit_for_bit(k, n):
    """The two ways entropy_from_samples finds a row's runs (counting for small K, sorting
    otherwise) add the same terms in the same order: equal bits, on either sample axis."""
    samples = np.random.default_rng(k + n).integers(0, k, size=(6, n, 5))  # samples along axis 1
    rows = np.moveaxis(samples, 1, -1).reshape(-1, n)
    by_sorting = E._chao_shen_by_sorting(samples, 1)
    by_counting = E._chao_shen_by_counting(samples, k, 1, (6, 5))
    assert np.array_equal(by_sorting, by_counting)
    # and both equal a plain per-row sum of the tabulated terms over the row's value counts
    table = E._chao_shen_table(n)
    for r, row in enumerate(rows):
        counts = np.bincount(row)
        counts = counts[counts > 0]
        expected = 0.0
        for c in counts:
            expected += table[int(np.sum(counts == 1)), c]
        assert by_sorting[r] == expected
    along_axis = E.entropy_from_samples(samples, k, axis=1)
    assert along_axis.shape == (6, 5)
    assert np.array_equal(along_axis.ravel(), E.entropy_from_samples(rows, k))


# --- issue 26: the fast paths agree with the plain ones --------------------------------------------


@FAST
@given(n=st.integers(1, 140), rows=st.integers(1, 30), low=st.sampled_from([-40, 0, 30_000]),
       seed=st.integers(0, 2**32 - 1))
def test_network_sort_sorts_every_column(n, rows, low, seed):
    """Batcher's network, pruned to n slots, sorts like np.sort for every n up to past its cap."""
    x = np.random.default_rng(seed).integers(low, low + 50, size=(n, rows)).astype(np.int32)
    assert np.array_equal(E._network_sort(x.copy()), np.sort(x, axis=0))


@pytest.mark.parametrize("n", [10, 20, 129])  # the network (n <= 128) and np.sort past it
def test_chao_shen_by_sorting_matches_entropy_from_counts(n):
    """Every row's tabulated Chao-Shen entropy = the estimator on the row's histogram."""
    samples = np.random.default_rng(n).integers(0, 12, size=(40, n))
    hist = np.stack([np.bincount(row, minlength=12) for row in samples])
    np.testing.assert_allclose(E._chao_shen_by_sorting(samples, -1) / math.log(2),
                               E.entropy_from_counts(hist, "chao_shen"), rtol=1e-12)


@FAST
@given(n_rows=st.integers(0, 40), n_classes=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_class_code_counts_equals_scatter_add(n_rows, n_classes, seed):
    """Sorted per-class sums = np.add.at, empty classes included (zero rows)."""
    rng = np.random.default_rng(seed)
    hist, labels = rng.integers(0, 5, size=(n_rows, 7)), rng.integers(0, n_classes, size=n_rows)
    expected = np.zeros((n_classes, 7), dtype=hist.dtype)
    np.add.at(expected, labels, hist)
    got = E._class_code_counts(hist, labels, n_classes)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
