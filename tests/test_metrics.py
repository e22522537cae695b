"""Tests for ibdiv.measure.metrics: analytic cases, invariants (hypothesis) and brute-force references."""

import itertools

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ibdiv.measure import metrics as M

FAST = settings(max_examples=25, deadline=None)


def gaussian(n, d, seed, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


small_tokens = hnp.arrays(
    np.int64,
    shape=st.tuples(st.integers(2, 12), st.integers(1, 6)),
    elements=st.integers(0, 3),
)


# --- conditioning accuracy / classifier entropy ------------------------------------------------


def test_conditioning_accuracy_counts_matches():
    assert M.conditioning_accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


def test_conditioning_accuracy_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        M.conditioning_accuracy([0, 1], [0, 1, 2])


def test_classifier_entropy_uniform_is_log2_c_and_one_hot_is_zero():
    assert M.classifier_entropy(np.full((3, 8), 1 / 8)) == pytest.approx(3.0)
    assert M.classifier_entropy(np.eye(4)) == 0.0


# --- Fréchet distance --------------------------------------------------------------------------


def test_fd_of_set_with_itself_is_zero():
    x = gaussian(300, 6, 0)
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


@FAST
@given(delta=hnp.arrays(np.float64, 4, elements=st.floats(-5, 5)))
def test_fd_equal_covariance_is_squared_mean_shift(delta):
    # Shifting one sample gives exactly equal empirical covariances, so FD = ||Δμ||².
    x = gaussian(200, 4, 1)
    assert M.frechet_distance(x, x + delta) == pytest.approx(np.sum(delta**2), abs=1e-7)


def test_fd_grows_with_mean_shift():
    x, y = gaussian(400, 5, 2), gaussian(400, 5, 3)
    fds = [M.frechet_distance(x, y + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(fds, fds[1:]))


def test_fd_matches_sqrtm_formula_for_different_covariances():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5))
    y = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5)) + 1.0
    ca, cb = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(ca @ cb))
    expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(ca + cb - 2 * covmean)
    assert M.frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_fd_finite_for_singular_covariance():
    # N < d makes both covariances singular; the result must still be finite and >= 0.
    x, y = gaussian(10, 32, 5), gaussian(10, 32, 6)
    fd = M.frechet_distance(x, y)
    assert np.isfinite(fd) and fd > 0


def test_fd_rejects_unequal_n_and_names_both_sizes():
    with pytest.raises(ValueError, match=r"100.*120"):
        M.frechet_distance(gaussian(100, 3, 0), gaussian(120, 3, 1))


# --- KID -----------------------------------------------------------------------------------------


def test_kid_matches_bruteforce_unbiased_mmd():
    # subset_size = N makes every subset the whole set, so the value is deterministic.
    x, y = gaussian(12, 3, 7), gaussian(12, 3, 8, shift=0.5)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = len(x)
    pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
    expected = (
        sum(k(x[i], x[j]) for i, j in pairs) / len(pairs)
        + sum(k(y[i], y[j]) for i, j in pairs) / len(pairs)
        - 2 * np.mean([k(a, b) for a in x for b in y])
    )
    result = M.kid(x, y, subset_size=m, n_subsets=3, rng=0)
    assert result.mean == pytest.approx(expected, rel=1e-10)
    assert result.se == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_match_a_kernel_per_subset():
    """The subset sums read off one kernel equal the per-subset U-statistic, subset by subset."""
    x, y, m, n_subsets = gaussian(40, 3, 1), gaussian(30, 3, 2, shift=0.3), 12, 6
    gen, values = np.random.default_rng(5), []
    for _ in range(n_subsets):  # the same draws, in the same order, as kid's
        a, b = x[gen.choice(len(x), m, replace=False)], y[gen.choice(len(y), m, replace=False)]
        k_aa, k_bb, k_ab = ((u @ v.T / 3 + 1) ** 3 for u, v in ((a, a), (b, b), (a, b)))
        off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # noqa: E731
        values.append(off(k_aa) + off(k_bb) - 2 * k_ab.mean())
    result = M.kid(x, y, subset_size=m, n_subsets=n_subsets, rng=5)
    assert result.mean == pytest.approx(np.mean(values), rel=1e-10)
    assert result.se == pytest.approx(np.std(values, ddof=1) / np.sqrt(n_subsets), rel=1e-8)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    x, y = gaussian(600, 8, 9), gaussian(600, 8, 10)
    same = M.kid(x, y, subset_size=200, n_subsets=30, rng=0)
    shifted = M.kid(x, y + 1.0, subset_size=200, n_subsets=30, rng=0)
    assert abs(same.mean) < 0.02
    assert abs(same.mean) < 4 * same.se + 1e-3
    assert shifted.mean > 0.1 and shifted.mean > 10 * shifted.se


def test_kid_clips_subset_size_to_smaller_set():
    result = M.kid(gaussian(30, 4, 0), gaussian(20, 4, 1), subset_size=10_000, n_subsets=5, rng=1)
    assert np.isfinite(result.mean) and np.isfinite(result.se)


def test_kid_is_reproducible_with_seed():
    x, y = gaussian(100, 4, 0), gaussian(100, 4, 1)
    assert M.kid(x, y, 50, 10, rng=3) == M.kid(x, y, 50, 10, rng=3)


# --- PRDC ------------------------------------------------------------------------------------------


def test_prdc_identical_sets():
    x = gaussian(400, 6, 11)
    r = M.prdc(x, x, k=5)
    assert r.precision == r.recall == r.coverage == 1.0
    assert r.density == pytest.approx(1.0, abs=0.2)


def test_prdc_far_away_fake_has_zero_precision_and_coverage():
    r = M.prdc(gaussian(200, 4, 12), gaussian(200, 4, 13, shift=100.0), k=5)
    assert r.precision == 0.0 and r.coverage == 0.0 and r.recall == 0.0 and r.density == 0.0


def test_prdc_matches_bruteforce_definitions():
    real, fake, k = gaussian(25, 2, 14), gaussian(20, 2, 15, shift=0.7), 3

    def radius(s, i):
        return sorted(np.linalg.norm(s[i] - s[j]) for j in range(len(s)) if j != i)[k - 1]

    rr = [radius(real, i) for i in range(len(real))]
    fr = [radius(fake, j) for j in range(len(fake))]
    d = lambda a, b: np.linalg.norm(a - b)  # noqa: E731
    inside = [[d(f, real[i]) <= rr[i] for i in range(len(real))] for f in fake]
    expected = M.PRDC(
        precision=np.mean([any(row) for row in inside]),
        recall=np.mean([any(d(x, fake[j]) <= fr[j] for j in range(len(fake))) for x in real]),
        density=np.sum(inside) / (k * len(fake)),
        coverage=np.mean([any(row[i] for row in inside) for i in range(len(real))]),
    )
    assert M.prdc(real, fake, k=k) == pytest.approx(expected)


def test_prdc_rejects_k_not_below_n():
    with pytest.raises(ValueError):
        M.prdc(gaussian(5, 2, 0), gaussian(5, 2, 1), k=5)


# --- Vendi (features) ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 50])
def test_vendi_identical_rows_is_one(n):
    assert M.vendi_score(np.tile([[0.3, -1.0, 2.0]], (n, 1))) == pytest.approx(1.0)


@pytest.mark.parametrize("n,d", [(5, 5), (6, 20)])
def test_vendi_orthogonal_rows_is_n(n, d):
    x = np.eye(d)[:n] * np.arange(1, n + 1)[:, None]  # scale must not matter for cosine
    assert M.vendi_score(x) == pytest.approx(float(n))


@FAST
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 10), st.integers(1, 6)),
                    elements=st.floats(0.1, 10)))
def test_vendi_score_equals_kernel_form_and_is_between_1_and_n(x):
    # Exercises both the d×d (d < n) and n×n branches against the explicit cosine kernel.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = M.vendi_score(x)
    assert v == pytest.approx(M.vendi_from_kernel(xn @ xn.T), rel=1e-6)
    assert 1.0 - 1e-9 <= v <= len(x) + 1e-9


def test_vendi_from_kernel_two_blocks():
    # Two groups of identical items -> two effective samples.
    k = np.kron(np.eye(2), np.ones((3, 3)))
    assert M.vendi_from_kernel(k) == pytest.approx(2.0)


def test_within_class_vendi_ignores_between_class_diversity():
    feats = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    labels = np.array([0] * 4 + [1] * 4)
    assert M.vendi_score(feats) == pytest.approx(2.0)
    assert M.within_class_vendi(feats, labels) == pytest.approx(1.0)


# --- token space -----------------------------------------------------------------------------------


def bruteforce_hamming_kernel(z):
    return np.array([[np.mean(a == b) for b in z] for a in z])


def test_hamming_vendi_identical_is_one_and_all_distinct_is_n():
    assert M.hamming_vendi(np.full((9, 16), 3)) == pytest.approx(1.0)
    distinct = np.tile(np.arange(9)[:, None], (1, 16))  # rows differ at every position
    assert M.hamming_vendi(distinct) == pytest.approx(9.0)


@FAST
@given(z=small_tokens)
def test_hamming_vendi_matches_explicit_kernel(z):
    assert M.hamming_vendi(z) == pytest.approx(M.vendi_from_kernel(bruteforce_hamming_kernel(z)),
                                               rel=1e-6)


def test_hamming_vendi_accepts_grids_and_large_codes():
    z = np.random.default_rng(0).integers(0, 10**6, size=(40, 4, 4))
    assert M.hamming_vendi(z) == pytest.approx(M.hamming_vendi(z.reshape(40, 16)))


@FAST
@given(z=small_tokens)
def test_mean_pairwise_hamming_matches_bruteforce(z):
    expected = np.mean([np.mean(a != b) for a, b in itertools.permutations(z, 2)])
    got = M.mean_pairwise_hamming(z)
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(expected, abs=1e-12)


def test_mean_pairwise_hamming_extremes():
    assert M.mean_pairwise_hamming(np.zeros((10, 8), dtype=int)) == 0.0
    assert M.mean_pairwise_hamming(np.tile(np.arange(10)[:, None], (1, 8))) == 1.0


def test_token_metrics_at_pipeline_scale():
    """Thousands of grids (speed belongs in benchmarks, not tests): values stay sane."""
    z = np.random.default_rng(1).integers(0, 64, size=(3000, 16))
    assert 1.0 < M.hamming_vendi(z) <= 3000
    assert 0.9 < M.mean_pairwise_hamming(z) <= 1.0  # random codes over K=64 rarely agree
    mem = M.memorisation(z[:1000], z, z[1000:2000])
    assert mem.copy_rate == 1.0 and mem.gen_nn_hamming == 0.0  # z[:1000] lies inside the training set


# --- memorisation ----------------------------------------------------------------------------------


def test_memorisation_copies_of_train():
    rng = np.random.default_rng(2)
    train = rng.integers(0, 16, size=(200, 16))
    ref = rng.integers(0, 16, size=(50, 16))
    r = M.memorisation(train[rng.choice(200, 60)], train, ref)
    assert r.copy_rate == 1.0 and r.gen_nn_hamming == 0.0
    assert r.ref_nn_hamming > 0 and r.nn_ratio == 0.0


def test_memorisation_novel_samples_match_bruteforce():
    rng = np.random.default_rng(3)
    train = rng.integers(0, 4, size=(30, 6))
    gen = rng.integers(0, 4, size=(12, 6))
    ref = np.vstack([train[:2], rng.integers(0, 4, size=(8, 6))])

    def nn(q):
        return np.mean([min(np.mean(a != b) for b in train) for a in q])

    def copies(q):
        return np.mean([any(np.array_equal(a, b) for b in train) for a in q])

    r = M.memorisation(gen, train, ref)
    assert r.gen_nn_hamming == pytest.approx(nn(gen))
    assert r.ref_nn_hamming == pytest.approx(nn(ref))
    assert r.nn_ratio == pytest.approx(nn(gen) / nn(ref))
    assert r.copy_rate == pytest.approx(copies(gen))
    assert r.ref_copy_rate == pytest.approx(copies(ref)) and r.ref_copy_rate >= 0.2


def test_memorisation_nn_chunking_is_exact():
    rng = np.random.default_rng(4)
    train, gen = rng.integers(0, 5, size=(50, 8)), rng.integers(0, 5, size=(20, 8))
    np.testing.assert_allclose(M._nn_hamming(gen, train, chunk=7), M._nn_hamming(gen, train))


def test_memorisation_rejects_width_mismatch():
    with pytest.raises(ValueError):
        M.memorisation(np.zeros((3, 4), int), np.zeros((3, 5), int), np.zeros((3, 5), int))


def test_vendi_from_kernel_rejects_non_unit_diagonal():
    with pytest.raises(ValueError, match="unit-diagonal"):
        M.vendi_from_kernel(2.0 * np.eye(3))


# --- wiring: quality of one generated set against the real reference (diagnostics) --------------


def _reference(seed=0, n_per_class=60, classes=3, d=6, N=8, K=5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    features = rng.normal(size=(len(labels), d)) + labels[:, None]
    heldout = rng.integers(0, K, (len(labels), N))
    train = rng.integers(0, K, (400, N))
    own = M.memorisation(heldout, train, heldout)
    return {"features": features, "labels": labels, "heldout_tokens": heldout, "train_tokens": train,
            "heldout_nn_hamming": own.ref_nn_hamming}


def test_quality_metrics_equal_n_and_distribution_sensitivity():
    from ibdiv.measure.diagnostics import quality_metrics

    ref = _reference()
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 80)
    same = rng.normal(size=(240, 6)) + labels[:, None]
    shifted = same + 3.0
    tokens = rng.integers(0, 5, (240, 8))
    near = quality_metrics(tokens, labels, same, ref, per_class=100, rng=np.random.default_rng(2))
    far = quality_metrics(tokens, labels, shifted, ref, per_class=100, rng=np.random.default_rng(2))
    assert near["n_per_class"] == far["n_per_class"] == 60  # the smaller side per class: equal N
    assert near["fd"] < far["fd"] and near["kid"] < far["kid"]
    assert near["kid_mc_se"] >= 0  # Monte-Carlo SE over subset draws, not a sampling SE
    assert near["precision"] > far["precision"] and near["coverage"] > far["coverage"]


def test_quality_metrics_memorisation_sees_training_copies():
    from ibdiv.measure.diagnostics import quality_metrics

    ref = _reference()
    labels = np.repeat(np.arange(3), 50)
    copies = ref["train_tokens"][:150]
    fresh = np.random.default_rng(5).integers(0, 5, (150, 8))
    feats = np.random.default_rng(6).normal(size=(150, 6))
    copied = quality_metrics(copies, labels, feats, ref, per_class=50, rng=np.random.default_rng(0))
    novel = quality_metrics(fresh, labels, feats, ref, per_class=50, rng=np.random.default_rng(0))
    assert copied["copy_rate"] == 1.0 and copied["nn_hamming"] == 0.0 and copied["nn_hamming_ratio"] == 0.0
    assert novel["nn_hamming"] > 0 and novel["copy_rate"] < 1.0
    assert copied["mean_hamming"] > 0 and copied["hamming_vendi"] >= 1.0


def test_memorisation_reuses_a_given_reference_distance():
    ref = _reference()
    gen = ref["train_tokens"][:20]
    given = M.memorisation(gen, ref["train_tokens"], ref["heldout_tokens"], ref_nn_hamming=0.5)
    computed = M.memorisation(gen, ref["train_tokens"], ref["heldout_tokens"])
    assert given.ref_nn_hamming == 0.5 and computed.ref_nn_hamming == ref["heldout_nn_hamming"]


def test_quality_reference_round_trips_through_its_file(tmp_path):
    from ibdiv.measure.diagnostics import load_quality_reference, quality_metrics, save_quality_reference

    ref = _reference()
    save_quality_reference(tmp_path / "quality.npz", ref)
    loaded = load_quality_reference(tmp_path / "quality.npz")
    # the saved arrays, plus the look-ups every generated set needs, computed once at load
    assert sorted(loaded) == sorted([*ref, "train_rows", "heldout_copy_rate"])
    assert isinstance(loaded["heldout_nn_hamming"], float)
    assert loaded["heldout_copy_rate"] == M.memorisation(ref["heldout_tokens"], ref["train_tokens"],
                                                         ref["heldout_tokens"]).ref_copy_rate
    labels, rng = np.repeat(np.arange(3), 50), np.random.default_rng(3)
    tokens, feats = rng.integers(0, 5, (150, 8)), rng.normal(size=(150, 6))
    measured = [quality_metrics(tokens, labels, feats, r, per_class=50, rng=np.random.default_rng(0))
                for r in (ref, loaded)]
    assert measured[0] == measured[1]


def test_token_diversity_is_both_hamming_metrics_from_one_encoding():
    z = np.random.default_rng(4).integers(0, 6, size=(40, 9))
    assert M.token_diversity(z) == (M.hamming_vendi(z), M.mean_pairwise_hamming(z))


def test_memorisation_with_precomputed_reference_lookups_is_the_same():
    rng = np.random.default_rng(5)
    train, ref, gen = rng.integers(0, 3, (300, 4)), rng.integers(0, 3, (60, 4)), rng.integers(0, 3, (80, 4))
    plain = M.memorisation(gen, train, ref)
    rows = M.RowSet(train)
    shared = M.memorisation(gen, train, ref, ref_nn_hamming=plain.ref_nn_hamming, train_rows=rows,
                            ref_copy_rate=rows.copy_rate(ref))
    assert shared == plain and 0 < plain.copy_rate < 1  # small grids: some copies, not all


# --- issue 26: the fast paths agree with the slow definitions -------------------------------------


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), n_pos=st.integers(1, 5), n_values=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_hamming_vendi_both_gram_routes_agree(rows, n_pos, n_values, seed):
    """The spectrum from Fᵀ F (width < n) and from F Fᵀ (otherwise) give the same Vendi: random
    code grids on both sides of width = n, against the explicit n x n Hamming kernel."""
    z = np.random.default_rng(seed).integers(0, n_values, size=(rows, n_pos))
    (columns,), width = M._one_hot_columns(z)
    factor = M._one_hot(columns, width).astype(np.float64)
    by_rows = M._vendi_from_eigenvalues(np.linalg.eigvalsh(factor @ factor.T / (n_pos * rows)))
    by_columns = M._vendi_from_eigenvalues(np.linalg.eigvalsh(factor.T @ factor / (n_pos * rows)))
    explicit = M.vendi_from_kernel(bruteforce_hamming_kernel(z))
    assert by_rows == pytest.approx(explicit, rel=1e-10)
    assert by_columns == pytest.approx(explicit, rel=1e-10)
    assert M.hamming_vendi(z) == pytest.approx(explicit, rel=1e-10)


@FAST
@given(n_query=st.integers(1, 30), n_pool=st.integers(1, 40), n_pos=st.integers(1, 7),
       low=st.sampled_from([-3, 0, 250, 70_000]), seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 9))
def test_nn_hamming_matches_bruteforce(n_query, n_pool, n_pos, low, seed, chunk):
    """Position-by-position counting (narrow codes, any chunk) = the definition, for negative
    codes, codes past uint8 and past uint16."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(low, low + 4, size=(n_pool, n_pos))
    queries = np.vstack([rng.integers(low, low + 4, size=(n_query, n_pos)), pool[:1]])
    expected = [min(np.mean(q != p) for p in pool) for q in queries]
    np.testing.assert_allclose(M._nn_hamming(queries, pool, chunk=chunk), expected, rtol=0, atol=1e-12)


def test_nn_hamming_counts_past_255_positions():
    """N = 300 positions overflows uint8 counts: the counter must be wider."""
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 3, size=(5, 300))
    queries = np.vstack([pool[2], rng.integers(0, 3, size=(3, 300))])
    expected = [min(np.mean(q != p) for p in pool) for q in queries]
    got = M._nn_hamming(queries, pool)
    assert got[0] == 0.0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
