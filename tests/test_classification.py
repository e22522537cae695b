"""Tests for ibdiv.verdict.classification: every branch of the DESIGN §5 rule, delta-method SEs, seed
stability, and that the module knows no family names."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ibdiv.verdict import classification as C

TH = {"delta_min": 0.7, "margin_se": 2.0, "eta_band": 0.0}
REPO = Path(__file__).resolve().parents[1]


def row(**over):
    """A fully measured row: kappa = 1, eta = delta = 1 exactly, tiny SEs, no decoupling."""
    base = dict(
        dataset="ds", family="famA", seed=0, point="p",
        h_z=5.0, h_z_se=0.01, h_z_data=5.0, h_z_data_se=0.01,
        h_pos=4.0, h_pos_se=0.01, h_pos_data=4.0, h_pos_data_se=0.01,
        d=2.0, d_se=0.01, d_data=2.0, d_data_se=0.01,
        d_iso=1.8, d_iso_se=0.02,
        rho_infl=0.3, learned_structure_bits=0.5,
        r_i2_path=0.1, r_i2_path_se=0.01, r_i2_exec=0.1, r_i2_exec_se=0.01,
        r_i3_path=0.1, r_i3_path_se=0.01, r_i3_exec=0.1, r_i3_exec_se=0.01,
        decoupling_index_se=0.01,
    )
    base.update(over)
    return base


def classify(*rows, th=TH):
    return C.classify_rows(pd.DataFrame(list(rows)), th)


def one(**over):
    return classify(row(**over)).iloc[0]


# --- rule branches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("d, label_without, label_with", [
    (2.016, C.DIVERSITY_PRIORITIZED, C.BALANCED),      # eta 1.008: statistically clear, practically not
    (2.1, C.DIVERSITY_PRIORITIZED, C.DIVERSITY_PRIORITIZED),
    (1.984, C.COMPRESSION_PRIORITIZED, C.BALANCED),
    (1.9, C.COMPRESSION_PRIORITIZED, C.COMPRESSION_PRIORITIZED),
])
def test_eta_band_asks_for_a_practically_clear_effect(d, label_without, label_with):
    tight = dict(h_z_se=1e-4, h_z_data_se=1e-4, d_se=1e-4, d_data_se=1e-4)
    assert one(d=d, **tight).label == label_without
    banded = classify(row(d=d, **tight), th={**TH, "eta_band": 0.02}).iloc[0]
    assert banded.label == label_with and "0.02" in banded.rule


def test_decoupled_when_diagonal_dominates_and_clears_noise():
    r = one(r_i2_path=-0.5, r_i3_exec=0.4, r_i2_exec=0.05, r_i3_path=0.05)
    assert r.decoupling_index == pytest.approx(0.9 / 1.0)
    assert r.label == C.DECOUPLED
    assert r.margin == pytest.approx(min(0.5 / 0.01, 0.4 / 0.01))
    assert "Decoupled" in r.rule and "0.90" in r.rule
    assert r.decoupling_excess == pytest.approx(0.9 - 2 * 0.01 - 0.7)  # Δ - m·SE(Δ) - Δ_min


def test_the_row_names_the_path_column_that_decided_delta():
    """path_column is carried into the classified row and named in the rule ("token" when the
    summary has none: the trained families; "joint" from the suite's generators with a likelihood)."""
    r = one(r_i2_path=-0.5, r_i3_exec=0.4, r_i2_exec=0.05, r_i3_path=0.05)
    assert r.path_column == "token" and "Delta[token]=0.90" in r.rule
    r = one(r_i2_path=-0.5, r_i3_exec=0.4, r_i2_exec=0.05, r_i3_path=0.05, path_column="joint")
    assert r.path_column == "joint" and "Delta[joint]=0.90" in r.rule and r.label == C.DECOUPLED


def test_delta_point_value_above_delta_min_is_not_enough():
    """Δ = 0.72 ± 0.05 (animals MIM seed 1 of issue 22): 0.72 - 2·0.05 < 0.7, not Decoupled;
    a clear case (0.9 ± 0.02) still is."""
    responses = dict(r_i2_path=-0.36, r_i3_exec=0.36, r_i2_exec=0.14, r_i3_path=0.14)
    r = one(decoupling_index_se=0.05, **responses)
    assert r.decoupling_index == pytest.approx(0.72)
    assert r.label == C.BALANCED and "Delta - 2*SE = 0.62 < Delta_min=0.7" in r.rule
    assert r.decoupling_excess == pytest.approx(0.72 - 0.1 - 0.7)
    assert one(decoupling_index_se=0.02, r_i2_path=-0.5, r_i3_exec=0.4, r_i2_exec=0.05, r_i3_path=0.05).label == C.DECOUPLED


def test_delta_margin_is_its_own_knob():
    """thresholds.delta_margin_se (default: margin_se) sets how many SE(Δ) Δ must clear Δ_min by."""
    responses = dict(r_i2_path=-0.36, r_i3_exec=0.36, r_i2_exec=0.14, r_i3_path=0.14, decoupling_index_se=0.05)
    assert classify(row(**responses), th={**TH, "delta_margin_se": 0.0}).label[0] == C.DECOUPLED
    assert classify(row(**responses), th={**TH, "delta_margin_se": 0.3}).label[0] == C.DECOUPLED
    assert classify(row(**responses), th={**TH, "delta_margin_se": 0.5}).label[0] == C.BALANCED
    assert classify(row(**responses), th={**TH, "margin_se": 0.3}).label[0] == C.DECOUPLED  # the default follows m
    with pytest.raises(ValueError, match="delta_margin_se"):
        classify(row(), th={**TH, "delta_margin_se": -1.0})


def test_unmeasured_delta_se_cannot_earn_decoupled():
    responses = dict(r_i2_path=-0.5, r_i3_exec=0.4, r_i2_exec=0.05, r_i3_path=0.05, decoupling_index_se=np.nan)
    r = one(**responses)
    assert r.label != C.DECOUPLED and "SE(Delta) not measured" in r.rule
    assert classify(row(**responses), th={**TH, "delta_margin_se": 0.0}).label[0] == C.DECOUPLED


def test_decoupled_beats_eta_rules():
    # eta is far above 1, but rule 1 is evaluated first
    r = one(d=4.0, r_i2_path=0.5, r_i3_exec=0.4, r_i2_exec=0.0, r_i3_path=0.0)
    assert r.eta > 1.5
    assert r.label == C.DECOUPLED


def test_high_delta_but_diagonal_within_noise_falls_through_to_eta_rules():
    # Delta = 0.9 >= 0.7, but |r_i3_exec| = 0.4 < 2 * 0.3
    r = one(d=3.0, r_i2_path=0.5, r_i3_exec=0.4, r_i3_exec_se=0.3, r_i2_exec=0.05, r_i3_path=0.05)
    assert r.decoupling_index >= TH["delta_min"]
    assert r.label == C.DIVERSITY_PRIORITIZED
    assert "within noise" in r.rule
    # response exactly at the noise boundary does not clear it (strict inequality)
    r = one(d=3.0, r_i2_path=0.6, r_i2_path_se=0.3, r_i3_exec=0.4, r_i2_exec=0.0, r_i3_path=0.0)
    assert r.label == C.DIVERSITY_PRIORITIZED


def test_low_delta_does_not_decouple_even_with_clear_responses():
    r = one(r_i2_path=0.3, r_i3_exec=0.3, r_i2_exec=0.4, r_i3_path=0.4)
    assert r.decoupling_index == pytest.approx(0.6 / 1.4)
    assert r.label == C.BALANCED


def test_diversity_prioritized():
    r = one(d=2.5)  # eta = 1.25, SE ~ 0.009
    assert r.eta == pytest.approx(1.25)
    assert r.label == C.DIVERSITY_PRIORITIZED
    assert r.margin == pytest.approx((r.eta - 1) / r.eta_se)
    assert r.margin > TH["margin_se"]
    assert "eta=1.25" in r.rule and ">= 1" in r.rule


def test_compression_prioritized():
    r = one(d=1.5)  # eta = 0.75
    assert r.label == C.COMPRESSION_PRIORITIZED
    assert r.margin == pytest.approx((0.75 - 1) / r.eta_se)
    assert r.margin < -TH["margin_se"]


def test_balanced_when_eta_within_margin():
    # eta = 1.05 but SEs are large: eta - 2 SE < 1 < eta + 2 SE
    r = one(d=2.1, d_se=0.2)
    assert r.eta == pytest.approx(1.05)
    assert r.label == C.BALANCED
    assert abs(r.margin) < TH["margin_se"]
    # the same eta with small SEs is Diversity-Prioritized: the margin, not eta alone, decides
    assert one(d=2.1).label == C.DIVERSITY_PRIORITIZED


def test_margin_se_threshold_is_read_from_config():
    over = dict(d=2.1, d_se=0.03)  # (eta - 1)/SE ~ 3.2
    assert classify(row(**over), th={**TH, "margin_se": 2.0}).label[0] == C.DIVERSITY_PRIORITIZED
    assert classify(row(**over), th={**TH, "margin_se": 4.0}).label[0] == C.BALANCED


def test_unclassified_when_eta_nan_and_decoupling_does_not_fire():
    r = one(d=np.nan, d_se=np.nan)
    assert math.isnan(r.eta)
    assert r.label == C.UNCLASSIFIED
    assert "eta not measured" in r.rule
    assert math.isnan(r.margin)
    # unperturbable family: no responses at all → Delta NaN, still decided on eta
    nan_r = {k: np.nan for k in ("r_i2_path", "r_i2_exec", "r_i3_path", "r_i3_exec")}
    r = one(d=2.5, **nan_r)
    assert math.isnan(r.decoupling_index) and r.label == C.DIVERSITY_PRIORITIZED
    assert "Delta not measured" in r.rule


def test_unclassified_when_eta_se_missing():
    r = one(d=2.5, d_se=np.nan)
    assert np.isfinite(r.eta) and math.isnan(r.eta_se)
    assert r.label == C.UNCLASSIFIED


def test_decoupled_fires_even_when_eta_is_nan():
    r = one(d=np.nan, r_i2_path=0.5, r_i3_exec=0.4, r_i2_exec=0.0, r_i3_path=0.0)
    assert r.label == C.DECOUPLED


def test_every_label_is_a_rule_outcome():
    rows = [
        row(r_i2_path=0.5, r_i3_exec=0.4, r_i2_exec=0.0, r_i3_path=0.0),
        row(d=2.5), row(d=1.5), row(d=2.1, d_se=0.2), row(d=np.nan),
    ]
    out = classify(*rows)
    assert list(out.label) == list(C.LABELS)
    assert len(out) == len(rows) and list(out.columns) == C.OUTPUT_COLUMNS + [C.band_column(b) for b in C.bands(TH)]
    assert out.learned_structure_bits.tolist() == [0.5] * 5 and out.rho_infl.tolist() == [0.3] * 5


# --- numbers ---------------------------------------------------------------------------------------


def test_ratios():
    r = one(h_z=4.0, h_z_data=5.0, h_pos=3.0, h_pos_data=4.0, d=1.0, d_data=2.0, d_iso=0.5)
    assert r.kappa == pytest.approx(0.8)
    assert r.kappa_pos == pytest.approx(0.75)
    assert r.delta == pytest.approx(0.5)
    assert r.delta_iso == pytest.approx(0.25)
    assert r.eta == pytest.approx(0.5 / 0.8)


def test_eta_se_matches_analytic_delta_method():
    # eta = (d / d_data) / (h_z / h_z_data): relative variances of all four inputs add
    v = dict(d=1.0, d_se=0.05, d_data=2.0, d_data_se=0.04, h_z=4.0, h_z_se=0.2, h_z_data=5.0, h_z_data_se=0.1)
    r = one(**v)
    rel = math.sqrt(0.05**2 + (0.04 / 2) ** 2 + (0.2 / 4) ** 2 + (0.1 / 5) ** 2)
    assert r.eta == pytest.approx(0.625)
    assert r.eta_se == pytest.approx(0.625 * rel, rel=1e-12)
    assert r.kappa_se == pytest.approx(0.8 * math.sqrt((0.2 / 4) ** 2 + (0.1 / 5) ** 2), rel=1e-12)
    # single noisy input: SE(eta) = eta * its relative SE
    r = one(d=3.0, d_se=0.3, d_data_se=0.0, h_z_se=0.0, h_z_data_se=0.0)
    assert r.eta_se == pytest.approx(1.5 * 0.1, rel=1e-12)


def test_eta_se_grows_with_each_input_se():
    base = one().eta_se
    for k in ("d_se", "d_data_se", "h_z_se", "h_z_data_se"):
        assert one(**{k: 0.1}).eta_se > base, k
    assert one(d_se=0.2).eta_se > one(d_se=0.1).eta_se


def test_zero_ses_give_zero_eta_se_and_infinite_margin():
    zero = {k: 0.0 for k in ("d_se", "d_data_se", "h_z_se", "h_z_data_se")}
    r = one(d=2.2, **zero)
    assert r.eta_se == 0.0 and r.label == C.DIVERSITY_PRIORITIZED and r.margin == math.inf


def test_ratio_se_defined_at_zero_numerator_and_nan_at_zero_denominator():
    r, se = C.ratio_se(0.0, 0.1, 2.0, 0.1)
    assert r == 0.0 and se == pytest.approx(0.05)
    r, se = C.ratio_se(1.0, 0.1, 0.0, 0.1)
    assert math.isnan(r) and math.isnan(se)


def test_decoupling_index_nan_cases():
    assert math.isnan(C.decoupling_index(0.1, np.nan, 0.1, 0.1))
    assert math.isnan(C.decoupling_index(0.0, 0.0, 0.0, 0.0))
    assert C.decoupling_index(-1.0, 0.0, 0.0, 1.0) == pytest.approx(1.0)
    assert C.decoupling_index(0.0, 1.0, 1.0, 0.0) == pytest.approx(0.0)


def test_input_validation():
    with pytest.raises(ValueError, match="d_iso"):
        C.classify_rows(pd.DataFrame([row()]).drop(columns=["d_iso"]), TH)
    with pytest.raises(KeyError, match="margin_se"):
        C.classify_rows(pd.DataFrame([row()]), {"delta_min": 0.7})
    with pytest.raises(ValueError, match="delta_min"):
        C.classify_rows(pd.DataFrame([row()]), {**TH, "delta_min": 1.5})
    with pytest.raises(ValueError, match="eta_band"):
        C.classify_rows(pd.DataFrame([row()]), {**TH, "eta_band": -0.1})


# --- stability across seeds ------------------------------------------------------------------------


def test_stability_agreeing_seeds_are_stable():
    out = C.stability(classify(row(seed=1, d=2.6), row(seed=0, d=2.4)))
    assert len(out) == 1
    s = out.iloc[0]
    assert s.stable and s.consensus == C.DIVERSITY_PRIORITIZED and s.majority == C.DIVERSITY_PRIORITIZED
    assert s.seeds == [0, 1] and s.labels == [C.DIVERSITY_PRIORITIZED] * 2 and s.n_seeds == 2
    assert s.eta_mean == pytest.approx(1.25)
    assert s.eta_seed_se == pytest.approx(np.std([1.2, 1.3], ddof=1) / math.sqrt(2))
    assert s.delta_iso_mean == pytest.approx(0.9)


def test_stability_disagreeing_seeds_are_unstable():
    out = C.stability(classify(row(seed=0, d=2.5), row(seed=1, d=1.5)))
    s = out.iloc[0]
    assert not s.stable and s.consensus == C.UNSTABLE and s.majority == C.NO_MAJORITY
    assert s.labels == [C.DIVERSITY_PRIORITIZED, C.COMPRESSION_PRIORITIZED]


def test_stability_groups_and_majority():
    rows = [row(seed=k, d=2.5) for k in range(3)] + [row(seed=3, d=1.5)]
    rows += [row(family="famB", seed=k, d=1.5) for k in range(2)]
    out = C.stability(classify(*rows)).set_index("family")
    assert not out.loc["famA", "stable"] and out.loc["famA", "majority"] == C.DIVERSITY_PRIORITIZED
    assert out.loc["famB", "stable"] and out.loc["famB", "consensus"] == C.COMPRESSION_PRIORITIZED
    # NaN quantities are skipped in the mean; a single number has no seed SE
    one_nan = C.stability(classify(row(seed=0, rho_infl=np.nan), row(seed=1, rho_infl=0.4))).iloc[0]
    assert one_nan.rho_infl_mean == pytest.approx(0.4) and math.isnan(one_nan.rho_infl_seed_se)


# --- no family knowledge ---------------------------------------------------------------------------


def test_module_mentions_no_family_names():
    families = {"ar", "mim", "diffusion"}
    families |= set(yaml.safe_load((REPO / "config.yaml").read_text())["families"])
    src = Path(C.__file__).read_text()
    for name in sorted(families):
        hits = re.findall(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", src, flags=re.IGNORECASE)
        assert not hits, f"classification.py mentions family {name!r}"


def test_family_name_does_not_influence_label():
    a = classify(row(family="x", d=2.5), row(family="y", d=2.5))
    assert a.label[0] == a.label[1] and a.rule[0] == a.rule[1]


def test_report_caption_defines_the_ratios_as_the_code_computes_them():
    """κ = H(Z)_gen / H(Z)_data (a generator that uses fewer codes than the data has κ < 1)."""
    caption = (Path(__file__).resolve().parents[1] / "workflow/report/workflow.rst").read_text()
    assert "κ = H(Z)_gen / H(Z)_data" in caption and "δ = D_gen / D_data" in caption
    kappa, _ = C.ratio_se(np.array([3.0]), np.array([0.0]), np.array([6.0]), np.array([0.0]))
    assert kappa[0] == pytest.approx(0.5)  # ratio_se(gen, se, data, se) = gen / data, as in classify_rows


# --- bands and robustness (DESIGN §5: the headline is the robust label or says what it depends on) ----


TIGHT = dict(h_z_se=1e-4, h_z_data_se=1e-4, d_se=1e-4, d_data_se=1e-4)


def test_every_label_is_also_decided_at_each_band():
    """η = 1.015: Diversity-Prioritized at ε = 0 and 0.01, Balanced at the configured 0.02; the
    configured band's column is the label itself."""
    r = classify(row(d=2.03, **TIGHT), th={**TH, "eta_band": 0.02}).iloc[0]
    assert C.bands({**TH, "eta_band": 0.02}) == [0.0, 0.01, 0.02]
    assert (r["label_eps0"], r["label_eps0.01"], r["label_eps0.02"]) == (
        C.DIVERSITY_PRIORITIZED, C.DIVERSITY_PRIORITIZED, C.BALANCED)
    assert r.label == r["label_eps0.02"]
    # a configured band outside the set gets its own column
    assert "label_eps0.05" in classify(row(), th={**TH, "eta_band": 0.05}).columns


def _stacked(*alphabets):
    """A classified table over alphabets: each argument is {seed: d} for one coarse_k."""
    out = []
    for k, ds in enumerate(alphabets):
        t = classify(*[row(seed=s, d=d, **TIGHT) for s, d in ds.items()], th={**TH, "eta_band": 0.02})
        t.insert(3, "coarse_k", 0 if k == 0 else 8 * k)
        out.append(t)
    return pd.concat(out, ignore_index=True)


@pytest.mark.parametrize("alphabets, robust, headline", [
    (({0: 2.5, 1: 2.4}, {0: 2.6, 1: 2.5}), True, C.DIVERSITY_PRIORITIZED),      # every seed, band, alphabet
    (({0: 2.03, 1: 2.03}, {0: 2.03, 1: 2.03}), False, "depends on ε"),           # η 1.015: bands disagree
    (({0: 2.5, 1: 2.5}, {0: 2.0, 1: 2.0}), False, "depends on alphabet"),
    (({0: 2.5, 1: 2.0}, {0: 2.5, 1: 2.0}), False, "depends on seed"),
    (({0: 2.03, 1: 2.0}, {0: 2.5, 1: 2.0}), False, "depends on ε / alphabet / seed"),
])
def test_robust_flag_and_headline_name_what_a_label_depends_on(alphabets, robust, headline):
    out = C.robustness(_stacked(*alphabets))
    assert len(out) == 1
    r = out.iloc[0]
    assert bool(r.robust) is robust and r.headline == headline
    assert r.depends_on == ("" if robust else headline[len("depends on "):])


def test_stability_reports_the_consensus_at_each_band():
    s = C.stability(classify(row(seed=0, d=2.03, **TIGHT), row(seed=1, d=2.05, **TIGHT),
                             th={**TH, "eta_band": 0.02})).iloc[0]
    assert s["consensus_eps0"] == C.DIVERSITY_PRIORITIZED and s["consensus_eps0.02"] == C.UNSTABLE
    assert s.consensus == s["consensus_eps0.02"]


# --- the run's own label calibration suite --------------------------------------------------------


def _confusion(rows):
    """A confusion table as calibration_suite.confusion writes it: {case: (expected, n, {label: share})}."""
    table = pd.DataFrame([{"case": case, "expected": exp, "n_seeds": n, **{lab: shares.get(lab, 0.0) for lab in C.LABELS}}
                          for case, (exp, n, shares) in rows.items()]).set_index("case")
    return table


def test_suite_flags_name_missed_and_unearned_labels():
    """At the pretrained design the decoupled case came out Decoupled in 35 of 40 seeds (issue 22):
    Decoupled is missed there and Balanced given where it is not earned; a case at 100% flags nothing."""
    flags = C.suite_flags(_confusion({
        "decoupled": (C.DECOUPLED, 40, {C.DECOUPLED: 0.875, C.BALANCED: 0.125}),
        "entangled": (C.BALANCED, 20, {C.BALANCED: 1.0}),
        "diversity_prioritized": (C.DIVERSITY_PRIORITIZED, 20, {C.DIVERSITY_PRIORITIZED: 0.95, C.BALANCED: 0.05}),
    }))
    assert set(flags) == {C.DECOUPLED, C.BALANCED}
    assert flags[C.DECOUPLED] == ["suite case decoupled got Decoupled in 88% of 40 seeds (< 95%)"]
    assert "built Decoupled" in flags[C.BALANCED][0]
    assert C.suite_check([C.DIVERSITY_PRIORITIZED], flags) == []
    assert C.suite_check([C.BALANCED, C.DECOUPLED, C.BALANCED], flags) == flags[C.BALANCED] + flags[C.DECOUPLED]
