"""The report's landing tables: the findings of one dataset, formatted for a person to read.

The report (workflow/report/workflow.rst) opens on these: the labels with the numbers behind
them, the per-seed classification with its margin and the rule that fired, and the generators.
Every cell is a string ("1.43 ± 0.22"): the machine-readable numbers stay in results/tables/.
"""
from __future__ import annotations

import ast
import math

import pandas as pd

from ibdiv.measure.coarse import FULL_K
from ibdiv.verdict import classification

# the strategy quantities of DESIGN §5, in the order a reader meets them
QUANTITIES = {"kappa": "κ", "delta": "δ", "eta": "η", "decoupling_index": "Δ", "rho_infl": "ρ_infl"}


def plus_minus(value, se=math.nan, digits: int = 3) -> str:
    """'1.43 ± 0.22'; the value alone when there is no SE; '–' when nothing was measured."""
    value, se = _number(value), _number(se)
    if math.isnan(value):
        return "–"
    if math.isnan(se):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {se:.2g}"


def rst_text(text) -> str:
    """Text for a cell of the report's csv-table, which docutils parses as reStructuredText:
    the rule's |r|/SE would be read as a substitution reference (an error in the report)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|")


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def labels_table(stability: pd.DataFrame, generators: pd.DataFrame, suite_flags: dict | None = None) -> pd.DataFrame:
    """One row per family and operating point: the headline (the label when every seed, band
    and alphabet agree, else what it depends on), the consensus label over seeds at the
    configured band, whether every seed agrees, the consensus at each band ε, and the means of
    the quantities ± their SE across seeds. Given the run's suite_flags
    (classification.suite_flags of results/calibration/confusion.csv), "suite check" says
    "ok" or which suite case does not back a label this row was given (at any seed or band)."""
    rows = []
    for _, row in stability.iterrows():
        mine = generators[(generators.family == row.family) & (generators.point == row.point)]
        out = {"family": row.family, "point": row.point, **_alphabet(row),
               "headline": row.get("headline", row.consensus), "label": row.consensus,
               "every seed agrees": "yes" if bool(row.stable) else "no",
               "labels per seed": ", ".join(_as_list(row.labels))}
        bands = [c for c in row.index if c.startswith("consensus_eps")]
        if bands:
            out["label at ε = " + " / ".join(c[len("consensus_eps"):] for c in bands)] = " / ".join(
                str(row[c]) for c in bands)
        if suite_flags is not None:
            given = _as_list(row.labels) + [str(row[c]) for c in bands]
            out["suite check"] = "; ".join(classification.suite_check(given, suite_flags)) or "ok"
        for column, symbol in QUANTITIES.items():
            out[symbol] = plus_minus(row.get(f"{column}_mean"), row.get(f"{column}_seed_se"))
        out["conditioning accuracy"] = plus_minus(mine.conditioning_accuracy.mean()) if len(mine) else "–"
        out["learned structure (bits/token)"] = plus_minus(mine.learned_structure_bits.mean()) if len(mine) else "–"
        rows.append(out)
    return pd.DataFrame(rows)


def classification_table(classification: pd.DataFrame) -> pd.DataFrame:
    """One row per family, seed and point: the label, its margin (in SEs) and the rule's
    sentence, with each quantity ± its SE (DESIGN §5)."""
    rows = []
    for _, row in classification.iterrows():
        out = {"family": row.family, "point": row.point, "seed": int(row.seed), **_alphabet(row), "label": row.label,
               "margin (SE)": plus_minus(row.margin, digits=2)}
        for column, symbol in QUANTITIES.items():
            out[symbol] = plus_minus(row.get(column), row.get(f"{column}_se"))
        out["rule"] = rst_text(row.rule)
        rows.append(out)
    return pd.DataFrame(rows)


def _alphabet(row) -> dict:
    """The per-position alphabet of a row (DESIGN §13): nothing for tables without coarse
    alphabets; else "full K" for coarse_k FULL_K and "K' = 16" for 16 clusters."""
    if "coarse_k" not in row.index:
        return {}
    k = int(row.coarse_k)
    return {"alphabet": "full K" if k == FULL_K else f"K' = {k}"}


def generators_summary(generators: pd.DataFrame) -> pd.DataFrame:
    """One row per family, seed and point: likelihood, learned structure and conditioning."""
    return pd.DataFrame({
        "family": generators.family, "seed": generators.seed, "point": generators.point,
        "held-out bits/token": [plus_minus(v) for v in generators.heldout_bits_per_token],
        "likelihood": generators.likelihood.fillna("–"),
        "learned structure (bits/token)": [plus_minus(v) for v in generators.learned_structure_bits],
        "conditioning accuracy": [plus_minus(v) for v in generators.conditioning_accuracy],
        "accuracy / real data's": [plus_minus(v) for v in generators.accuracy_ratio],
        "parameters": [f"{int(v):,}" if not math.isnan(_number(v)) else "–" for v in generators.n_parameters],
    })


def _as_list(text) -> list[str]:
    """classification_stability stores its labels as a Python list literal."""
    try:
        return [str(x) for x in ast.literal_eval(str(text))]
    except (ValueError, SyntaxError):
        return [str(text)]
