"""The report's landing tables (ibdiv.findings): what a reader sees first must be the pipeline's
own numbers, each with its SE, and say plainly when something was not measured."""
import math

import pandas as pd

from ibdiv import findings


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
