"""The report's landing tables (ibdiv.report.findings): what a reader sees first must be the pipeline's
own numbers, each with its SE, and say plainly when something was not measured."""
import math

import pandas as pd

from ibdiv.report import findings


def test_plus_minus_shows_the_se_only_when_there_is_one_and_a_dash_for_nothing():
    assert findings.plus_minus(1.4327, 0.2229) == "1.43 ± 0.22"
    assert findings.plus_minus(1.4327) == "1.43"
    assert findings.plus_minus(1.4327, math.nan) == "1.43"
    assert findings.plus_minus(math.nan, 0.1) == "–"
    assert findings.plus_minus("", "") == "–"  # an empty CSV cell


def test_labels_table_takes_consensus_and_seed_spread_from_the_stability_table():
    stability = pd.DataFrame([{"family": "ar", "point": "neutral", "labels": "['Balanced', 'Decoupled']",
                               "stable": False, "consensus": "unstable", "eta_mean": 1.02, "eta_seed_se": 0.01,
                               "kappa_mean": 2.0, "kappa_seed_se": math.nan}])
    generators = pd.DataFrame([{"family": "ar", "point": "neutral", "conditioning_accuracy": a,
                                "learned_structure_bits": 0.5} for a in (0.8, 0.6)])
    row = findings.labels_table(stability, generators).iloc[0]
    assert row["label"] == "unstable" and row["every seed agrees"] == "no"
    assert row["labels per seed"] == "Balanced, Decoupled"
    assert row["η"] == "1.02 ± 0.01" and row["κ"] == "2" and row["Δ"] == "–"
    assert row["conditioning accuracy"] == "0.7"  # mean over seeds


def test_classification_table_keeps_margin_rule_and_each_quantity_with_its_se():
    classification = pd.DataFrame([{"family": "mim", "point": "standard", "seed": 1, "label": "Diversity-Prioritized",
                                    "margin": 3.21, "rule": "eta clear of 1", "eta": 1.3, "eta_se": 0.05,
                                    "decoupling_index": math.nan, "decoupling_index_se": math.nan}])
    row = findings.classification_table(classification).iloc[0]
    assert (row["seed"], row["label"], row["margin (SE)"], row["rule"]) == (1, "Diversity-Prioritized", "3.2", "eta clear of 1")
    assert row["η"] == "1.3 ± 0.05" and row["Δ"] == "–" and row["κ"] == "–"


def test_coarse_alphabets_get_their_own_rows_named_by_alphabet():
    classification = pd.DataFrame([{"family": "ar", "point": "neutral", "seed": 0, "coarse_k": k, "label": label,
                                    "margin": 1.0, "rule": "r"} for k, label in ((0, "Balanced"), (16, "Decoupled"))])
    table = findings.classification_table(classification)
    assert table.alphabet.tolist() == ["full K", "K' = 16"] and table.label.tolist() == ["Balanced", "Decoupled"]
    stability = pd.DataFrame([{"family": "ar", "point": "neutral", "coarse_k": k, "labels": "['Balanced']",
                               "stable": True, "consensus": "Balanced"} for k in (0, 16)])
    assert findings.labels_table(stability, pd.DataFrame(columns=["family", "point"])).alphabet.tolist() == ["full K", "K' = 16"]
    assert "alphabet" not in findings.classification_table(classification.drop(columns="coarse_k")).columns


def test_rule_text_survives_the_reports_restructuredtext():
    """The report's csv-table parses cells as reStructuredText: a rule that names |r_i2_path|/SE
    (Δ above its threshold but the diagonal within noise) must not become a substitution error."""
    from docutils import nodes
    from docutils.core import publish_doctree

    rule = "not Decoupled (Delta=0.91 >= Delta_min=0.7 but diagonal within noise (|r_i2_path|/SE=1.2 not > 2)) → Balanced"
    table = findings.classification_table(pd.DataFrame([{"family": "ar", "point": "neutral", "seed": 0, "label": "Balanced",
                                                         "margin": 1.0, "rule": rule}]))
    source = ".. csv-table::\n   :header-rows: 1\n\n   rule\n   \"" + table.rule.iloc[0] + "\"\n"
    doc = publish_doctree(source, settings_overrides={"report_level": 5})
    assert not list(doc.findall(nodes.problematic)) and not list(doc.findall(nodes.system_message))
    assert doc.astext().strip().endswith(rule)


def test_labels_table_leads_with_the_headline_and_shows_each_band():
    stability = pd.DataFrame([{"family": "ar", "point": "neutral", "labels": "['Balanced']", "stable": True,
                               "consensus": "Balanced", "consensus_eps0": "Diversity-Prioritized",
                               "consensus_eps0.01": "Balanced", "consensus_eps0.02": "Balanced",
                               "robust": False, "depends_on": "ε", "headline": "depends on ε"}])
    table = findings.labels_table(stability, pd.DataFrame(columns=["family", "point"]))
    row = table.iloc[0]
    assert list(table.columns[:3]) == ["family", "point", "headline"]
    assert row["headline"] == "depends on ε" and row["label"] == "Balanced"
    assert row["label at ε = 0 / 0.01 / 0.02"] == "Diversity-Prioritized / Balanced / Balanced"


def test_labels_table_flags_a_label_the_runs_suite_does_not_back():
    stability = pd.DataFrame([{"family": f, "point": "neutral", "labels": f"['{label}']", "stable": True,
                               "consensus": label} for f, label in (("ar", "Decoupled"), ("mim", "Balanced"))])
    flags = {"Decoupled": ["suite case decoupled got Decoupled in 88% of 40 seeds (< 95%)"]}
    table = findings.labels_table(stability, pd.DataFrame(columns=["family", "point"]), flags).set_index("family")
    assert table.loc["ar", "suite check"] == flags["Decoupled"][0] and table.loc["mim", "suite check"] == "ok"
    assert "suite check" not in findings.labels_table(stability, pd.DataFrame(columns=["family", "point"])).columns
