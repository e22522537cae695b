"""Coarse-grained estimation (DESIGN §13): the seeded k-means map from K codes to K' clusters,
the per-position estimands measured through it, and its place in the tables and the config."""
import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT, write_tables

from ibdiv.measure import coarse, diagnostics, entropy
from ibdiv.pipeline import preflight
from ibdiv.report import tables
from ibdiv.core.config import ConfigError, validate_config
from ibdiv.core.seeds import derive_seed


def codebook(n=64, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


# --- the map ----------------------------------------------------------------------------------------


def test_map_is_fixed_by_the_seed_and_changes_with_it():
    vectors = codebook()
    maps = [coarse.code_map(vectors, 16, seed) for seed in range(4)]
    assert np.array_equal(maps[0], coarse.code_map(vectors.copy(), 16, 0))
    # k-means on unstructured vectors has many local optima: other seeds reach other ones
    assert any(not np.array_equal(maps[0], m) for m in maps[1:])


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(1, 4), st.booleans())
def test_every_code_maps_to_a_used_cluster(n, k, seed, dim, duplicates):
    k = min(k, n)
    rng = np.random.default_rng(seed)
    # with duplicates, fewer distinct vectors than clusters is possible: empty clusters must be refilled
    points = rng.integers(0, 3, size=(n, dim)).astype(float) if duplicates else rng.normal(size=(n, dim))
    labels = coarse.kmeans(points, k, seed)
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == k - 1
    assert np.bincount(labels, minlength=k).min() >= 1  # every cluster used: K' is the real alphabet
    first = np.unique(labels, return_index=True)[1]
    assert np.all(np.diff(first) > 0)  # clusters numbered by their smallest code


def test_as_many_clusters_as_distinct_codes_is_the_identity():
    vectors = codebook(32)
    assert np.array_equal(coarse.kmeans(vectors, 32, seed=5), np.arange(32))


@pytest.mark.parametrize("seed", range(3))
def test_well_separated_groups_are_recovered(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 4)) * 20
    group = rng.permutation(np.repeat(np.arange(5), 8))
    vectors = centres[group] + rng.normal(size=(40, 4)) * 0.01
    labels = coarse.kmeans(vectors, 5, seed)
    # same partition up to naming: each group is one cluster and each cluster one group
    pairs = set(zip(group.tolist(), labels.tolist()))
    assert len(pairs) == 5


def test_kmeans_refuses_more_clusters_than_codes():
    with pytest.raises(ValueError, match="k=9"):
        coarse.kmeans(codebook(8), 9, 0)


def test_apply_maps_any_shape_and_rejects_foreign_codes():
    code_map = np.array([0, 0, 1, 1])
    assert coarse.apply(code_map, np.array([[[3, 0], [1, 2]]], dtype=np.uint8)).tolist() == [[[1, 0], [0, 1]]]
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        coarse.apply(code_map, np.array([4]))


# --- coarse-graining cannot add entropy -------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.integers(2, 12), st.integers(2, 6))
def test_plugin_entropies_on_coarse_tokens_never_exceed_full_k(seed, K, k):
    """Merging codes is a function of the token: the plug-in entropy of every count row can only
    fall, so H_pos and D on coarse tokens are at most their full-K values."""
    k = min(k, K)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, K, size=(30, 5))
    labels = np.repeat(np.arange(3), 10)
    code_map = np.concatenate([np.arange(k), rng.integers(0, k, K - k)])
    mapped = coarse.apply(code_map, tokens)
    for estimate in (lambda t, a: entropy.positional_entropy(t, a, "plugin", n_boot=0),
                     lambda t, a: entropy.conditional_diversity(t, labels, a, "plugin", n_boot=0)):
        assert estimate(mapped, k).value <= estimate(tokens, K).value + 1e-12


# --- measurements -----------------------------------------------------------------------------------

CFG = {"method": "chao_shen", "per_class": 10, "n_boot": 3, "n_null": 3, "n_boot_paths": 3, "n_null_paths": 3,
       "n_sets": 5, "margin_se": 1.0}


def flat_cache(K=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, K, size=(2, 30, 6)).astype(np.uint8), "labels": np.repeat(np.arange(3), 10)}


def nested_cache(K=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, K, size=(3, 2, 6, 3, 8)).astype(np.uint8)  # cells, C, P, R, N
    frozen = np.zeros((3, 2, 6, 8), dtype=bool)
    frozen[..., :2] = True
    tokens[..., :2] = tokens[..., :1, :2]  # committed positions are shared by a path's continuations
    return {"tokens": tokens, "frozen": frozen, "committed_fraction": np.full(3, 0.25), "process_fraction": np.full(3, 0.25)}


def test_flat_coarse_measurement_is_per_position_at_the_coarse_alphabet():
    maps = {4: coarse.code_map(codebook(16), 4, 0)}
    out = diagnostics.measure_coarse(flat_cache(), maps, CFG, seed=7, nested=False)
    assert list(out) == ["4"] and len(out["4"]) == 2
    for row in out["4"]:
        assert set(row) == {"n_per_class", "h_pos", "d", "h_z"}  # H(Z) too: κ' on the alphabet of δ'
        assert 0 <= row["d"]["value"] <= np.log2(4) + 1e-12  # clipped at log2 K', not log2 K
        assert 0 <= row["h_z"]["value"] <= np.log2(4) + 1e-12
    assert out == diagnostics.measure_coarse(flat_cache(), maps, CFG, seed=7, nested=False)  # seeded
    # its own stream per K': adding a K' leaves another K' unchanged
    both = diagnostics.measure_coarse(flat_cache(), {**maps, 8: coarse.code_map(codebook(16), 8, 0)}, CFG, 7, nested=False)
    assert both["4"] == out["4"]


def test_identity_map_reproduces_the_full_k_path_split_and_responses():
    """Through the identity map the coarse measurement is the full-K one (same estimators, K)."""
    cache = nested_cache()
    out = diagnostics.measure_coarse(cache, {16: np.arange(16)}, CFG, seed=3, nested=True, decoupling=True)["16"]
    rng = np.random.default_rng(derive_seed(3, "coarse", 16))
    full = diagnostics.measure_per_position(cache, 16, CFG, rng, nested=True, decoupling=True)
    assert out == full
    assert {"d_exec", "d_tot", "d_influence", "rho_infl"} <= set(out[0]) and "responses" in out[0]
    assert "responses" not in out[1]


def test_coarse_path_split_uses_the_coarse_alphabet():
    cache = nested_cache()
    code_map = coarse.code_map(codebook(16), 2, 0)
    rows = diagnostics.measure_coarse(cache, {2: code_map}, CFG, seed=0, nested=True)["2"]
    for row in rows:
        assert row["d_exec"]["value"] <= 1 + 1e-9 and row["committed_fraction"] == 0.25


# --- tables -----------------------------------------------------------------------------------------


def write_measurements(tmp_path):
    est = lambda v: {"value": v, "se": 0.01}  # noqa: E731
    reference = {"h_z": est(3.9), "d": est(3.0), "h_pos": est(3.5), "conditioning_accuracy": 0.9,
                 "coarse": {"8": {"d": est(2.0), "h_pos": est(2.5), "h_z": est(2.9), "code_map": [0, 1]}}}
    run = {"family": "ar", "seed": 0, "point": "neutral", "cells": [""],
           "measurements": [{"h_z": est(3.8), "d": est(3.3), "h_pos": est(3.4), "conditioning_accuracy": 0.7}],
           "coarse": {"8": [{"d": est(1.8), "h_pos": est(2.4), "h_z": est(2.6)}]}}
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    (tmp_path / "baseline.json").write_text(json.dumps({"probe": "baseline", "kind": "flat", "runs": [run]}))
    return tables.measurements_table(tmp_path / "reference.json", [tmp_path / "baseline.json"])


def test_measurement_rows_carry_coarse_k_and_keep_image_numbers_at_full_k(tmp_path):
    m = write_measurements(tmp_path)
    assert list(zip(m.probe, m.coarse_k)) == [("reference", 0), ("reference", 8), ("baseline", 0), ("baseline", 8)]
    assert list(m.d) == [3.0, 2.0, 3.3, 1.8] and list(m.h_pos) == [3.5, 2.5, 3.4, 2.4]
    assert list(m.h_z) == [3.9, 2.9, 3.8, 2.6]  # H(Z) on each row's own alphabet (κ' = H(Z)'/H(Z)'_data)
    assert list(m.conditioning_accuracy) == [0.9, 0.9, 0.7, 0.7]
    assert "coarse_8_d" not in m.columns and "code_map" not in m.columns
    assert len(tables.at_alphabet(m)) == 2 and tables.alphabets(m) == [0, 8]


def test_classification_is_computed_per_alphabet_from_its_own_rows(tmp_path):
    m = write_measurements(tmp_path)
    generators = pd.DataFrame([{"family": "ar", "seed": 0, "point": "neutral", "learned_structure_bits": 0.1}])
    thresholds = {"delta_min": 0.7, "margin_se": 2.0, "eta_band": 0.02, "iso_accuracy": "auto"}
    out = tables.classification_tables(m, generators, {}, thresholds, "shapes")
    classified = out["classification"]
    assert list(classified.coarse_k) == [0, 8] and list(out["stability"].coarse_k) == [0, 8]
    assert list(classified.columns[:5]) == ["dataset", "family", "seed", "point", "coarse_k"]
    assert classified.delta.tolist() == pytest.approx([3.3 / 3.0, 1.8 / 2.0])
    assert classified.kappa.tolist() == pytest.approx([3.8 / 3.9, 2.6 / 2.9])  # κ' at K', not full-K κ
    assert classified.eta.tolist() == pytest.approx([(3.3 / 3.0) / (3.8 / 3.9), (1.8 / 2.0) / (2.6 / 2.9)])
    assert out["summary"].d.tolist() == [3.3, 1.8]


def test_summary_and_dvc_metrics_do_not_mix_alphabets(tmp_path):
    stab = pd.DataFrame([
        {"family": "ar", "point": "neutral", "coarse_k": k, "consensus": label, "stable": True, "eta_mean": eta}
        for k, label, eta in ((0, "Balanced", 1.0), (8, "Diversity-Prioritized", 1.2))])
    cls = pd.DataFrame([{"family": "ar", "point": "neutral", "seed": 0, "coarse_k": k, "label": label,
                                           "rule": "r"} for k, label in ((0, "Balanced"), (8, "Diversity-Prioritized"))])
    gen = pd.DataFrame([{"family": "ar", "point": "neutral", "seed": 0, "learned_structure_bits": 0.5,
                                           "conditioning_accuracy": 0.7, "heldout_bits_per_token": 3.0}])
    paths = write_tables(tmp_path, stab=stab, cls=cls, gen=gen)
    (tmp_path / "head.csv").write_text("\n")
    out = tables.headline_summary(["shapes"], [paths["stab"]], [paths["cls"]], [tmp_path / "head.csv"], [paths["gen"]])
    assert out["shapes"]["families"]["ar"]["neutral"]["labels_per_seed"] == ["Balanced"]
    assert out["shapes"]["coarse"]["8"]["ar"]["neutral"]["label"] == "Diversity-Prioritized"
    metrics = tables.dvc_metrics(["shapes"], [paths["stab"]], [paths["gen"]])
    assert metrics["shapes"]["ar"]["neutral"]["eta"] == 1.0


# --- config -----------------------------------------------------------------------------------------


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.mark.parametrize("value", [[1], [16, 16], ["16"], 16, [2.5]])
def test_schema_rejects_bad_coarse_alphabets_naming_the_key(config, value):
    config["measure"]["coarse_k"] = value
    with pytest.raises(ConfigError, match=r"measure\.coarse_k"):
        validate_config(config)


def test_coarse_alphabet_must_be_below_every_codebook(config):
    config["measure"]["coarse_k"] = [16, 64]
    problems = preflight.settings_problems(config)
    assert problems and all("measure.coarse_k" in p and "codebook_size=64" in p and "[64]" in p for p in problems)
    ok = copy.deepcopy(config)
    ok["measure"]["coarse_k"] = [16, 63]
    assert not preflight.settings_problems(ok)
    del ok["measure"]["coarse_k"]  # absent = off
    validate_config(ok)
    assert not preflight.settings_problems(ok)
