"""Aggregate per-run JSON measurements into tables (one row per run)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ibdiv.core import registry
from ibdiv.core.io import load_json
from ibdiv.measure.coarse import FULL_K
from ibdiv.verdict import classification
from ibdiv.verdict.summary import (  # noqa: F401  (re-exported: the report's table API)
    _rho_at, flatten, iso_quality_diversity, iso_target, summary_table,
)


# the column of measurements_table holding a cell's D on the resamples every cell of its run shares
# (diagnostics.paired_d_replicates); in memory only: diagnostics_tables leaves it out of the CSV
PAIRED = "d_paired_boot"


def paired_difference_se(a, b) -> float:
    """SE of D_a − D_b for two measurement rows of one run: the SD of the paired replicate
    differences when both rows carry PAIRED replicates of one length (common random numbers:
    the cells share their sampling seed, so their D are correlated), else hypot(SE_a, SE_b)."""
    ra, rb = a.get(PAIRED), b.get(PAIRED)
    if isinstance(ra, (list, tuple, np.ndarray)) and isinstance(rb, (list, tuple, np.ndarray)) and len(ra) == len(rb) > 1:
        return float(np.std(np.asarray(ra, float) - np.asarray(rb, float), ddof=1))
    return float(np.hypot(float(a["d_se"]), float(b["d_se"])))


def _keys(run: dict) -> dict:
    """family / seed / point of one run of a measure.json."""
    return {key: run[key] for key in ("family", "seed", "point")}


def generators_table(prior_paths, baseline_path, classifier_path) -> pd.DataFrame:
    """Likelihood, learned joint structure and conditioning accuracy per family, seed and point.

    learned_structure_bits = independent family's held-out bits/token minus the family's
    (same seed): how much cross-token structure the family learned (DESIGN §2). For MIM and
    diffusion the family's number is an ELBO bound, so their structure is a lower bound.
    """
    priors = pd.DataFrame([load_json(p) for p in prior_paths])
    quality = pd.DataFrame([{**_keys(run), "conditioning_accuracy": run["measurements"][0]["conditioning_accuracy"]}
                            for run in load_json(baseline_path)["runs"]])
    table = quality.merge(priors, on=["family", "seed"], how="left")
    independent = priors[priors.family == registry.STRUCTURE_REFERENCE].set_index("seed")["heldout_bits_per_token"]
    table["independent_bits_per_token"] = table["seed"].map(independent)
    table["learned_structure_bits"] = table["independent_bits_per_token"] - table["heldout_bits_per_token"]
    real_accuracy = load_json(classifier_path)["heldout_accuracy"]
    table["classifier_heldout_accuracy"] = real_accuracy
    table["accuracy_ratio"] = table["conditioning_accuracy"] / real_accuracy
    return table.sort_values(["family", "seed", "point"]).reset_index(drop=True)


def measurements_table(reference_path, measured_paths) -> pd.DataFrame:
    """One row per family x seed x point x probe x cell x alphabet, plus the real data's
    reference rows.

    measured_paths: the baseline's and every probe's measure.json ({probe, kind, runs: [{family,
    seed, point, cells, measurements, coarse}]}); the baseline is the probe "baseline" with one
    cell "". `coarse_k` is FULL_K (0) for the full codebook and K' for coarse tokens (DESIGN
    §13): a K' row repeats its full-K row and overwrites the per-position estimands (H_pos, D,
    the path split, ρ_infl, the decoupling responses) and H(Z) with their coarse values (so κ,
    δ and η at K' are ratios on one alphabet), while I(Z;C) and everything read from images
    (accuracy, quality, layout commitment) stay the full-K numbers; every downstream rule reads
    a K' slice like the full-K one.
    """
    reference = load_json(reference_path)
    keys = {"family": "data", "seed": -1, "point": "", "probe": "reference", "kind": "flat", "cell": ""}
    rows = _with_coarse(keys, reference, reference.get("coarse", {}))
    for path in measured_paths:
        m = load_json(path)
        for run in m["runs"]:
            coarse = run.get("coarse", {})
            for i, (cell, values) in enumerate(zip(run["cells"], run["measurements"])):
                keys = {**_keys(run), "probe": m["probe"], "kind": m["kind"], "cell": cell}
                rows += _with_coarse(keys, values, {k: cells[i] for k, cells in coarse.items()})
    return pd.DataFrame(rows)


def _with_coarse(keys: dict, full: dict, coarse: dict) -> list[dict]:
    """The full-K row of one cell and one row per coarse alphabet K' ({str(K'): values})."""
    row = {**keys, "coarse_k": FULL_K, **flatten({k: v for k, v in full.items() if k != "coarse"})}
    if PAIRED in full:  # a list (flatten drops lists): the cell's D on the run's shared resamples
        row[PAIRED] = full[PAIRED]
    return [row] + [{**row, **flatten(values), "coarse_k": int(k)} for k, values in coarse.items()]


def at_alphabet(table: pd.DataFrame, coarse_k: int = FULL_K) -> pd.DataFrame:
    """The rows of one alphabet (a table written before coarse_k existed is all full K)."""
    if "coarse_k" not in table.columns:
        return table if coarse_k == FULL_K else table.iloc[:0]
    return table[table["coarse_k"] == coarse_k]


def alphabets(table: pd.DataFrame) -> list[int]:
    """FULL_K first, then every K' present, ascending."""
    return sorted(set(table["coarse_k"]) | {FULL_K}) if "coarse_k" in table.columns else [FULL_K]


def classification_tables(measurements: pd.DataFrame, generators: pd.DataFrame, probes: dict, thresholds: dict,
                          dataset: str) -> dict[str, pd.DataFrame]:
    """summary, classification and classification_stability of every alphabet, stacked with a
    coarse_k column after `point`: the same summary and rule applied to each alphabet's slice.
    The stability rows also carry robust / depends_on / headline (classification.robustness),
    which span every seed, band and alphabet, so they repeat on each alphabet's row."""
    out = {"summary": [], "classification": [], "stability": []}
    for k in alphabets(measurements):
        summary = summary_table(at_alphabet(measurements, k), generators, probes, thresholds["iso_accuracy"])
        summary.insert(0, "dataset", dataset)
        classified = classification.classify_rows(summary, thresholds)
        for name, table in (("summary", summary), ("classification", classified),
                            ("stability", classification.stability(classified))):
            table.insert(table.columns.get_loc("point") + 1, "coarse_k", k)
            out[name].append(table)
    tables = {name: pd.concat(tables, ignore_index=True) for name, tables in out.items()}
    robust = classification.robustness(tables["classification"])
    tables["stability"] = tables["stability"].merge(robust, on=classification.GROUP_KEYS, how="left")
    return tables


def enhancement_table(measurements: pd.DataFrame, probes: dict, point: str = "neutral") -> pd.DataFrame:
    """Diversity at matched quality (DESIGN §7), per family x seed x flat probe.

    For each flat probe (its cells plus the baseline) the best D among settings whose
    conditioning accuracy is at least the baseline's: how much diversity the knob buys
    without losing quality. `gain` = the enhancement probe's best D minus this probe's
    (gain_se: paired over the run's shared resamples, paired_difference_se; gain_se_unpaired:
    hypot of the two SEs, for comparison); the headline compares with the best usual knob.
    """
    enhancement = registry.probe_of_kind(probes, "enhancement")
    flat = [n for n, p in probes.items() if p["kind"] in registry.FLAT_KINDS]
    rows, best_rows = [], []
    base_rows = measurements[(measurements.probe == "baseline") & (measurements.point == point)]
    for _, base in base_rows.iterrows():
        mine = measurements[(measurements.family == base.family) & (measurements.seed == base.seed)
                            & (measurements.point == point)]
        for probe in flat:
            cells = mine[mine.probe == probe]
            if cells.empty:
                continue
            pts = pd.concat([cells, base.to_frame().T])
            ok = pts[pts.conditioning_accuracy.astype(float) >= float(base.conditioning_accuracy) - 1e-12]
            best = ok.loc[ok.d.astype(float).idxmax()]
            rows.append({"family": base.family, "seed": base.seed, "point": point, "probe": probe,
                         "best_cell": best.cell if best.probe != "baseline" else "baseline",
                         "d_best": float(best.d), "d_best_se": float(best.d_se),
                         "accuracy_at_best": float(best.conditioning_accuracy),
                         "baseline_d": float(base.d), "baseline_accuracy": float(base.conditioning_accuracy)})
            best_rows.append(best)
    table = pd.DataFrame(rows)
    if table.empty or enhancement is None:
        return table
    enh = {(r.family, r.seed): b for r, b in zip(table.itertuples(), best_rows) if r.probe == enhancement}
    missing = pd.Series({"d": np.nan, "d_se": np.nan})
    pairs = [(enh.get((r.family, r.seed), missing), b) for r, b in zip(table.itertuples(), best_rows)]
    table["gain"] = [float(e["d"]) - float(b["d"]) for e, b in pairs]
    table["gain_se"] = [paired_difference_se(e, b) for e, b in pairs]
    table["gain_se_unpaired"] = [float(np.hypot(float(e["d_se"]), float(b["d_se"]))) for e, b in pairs]
    return table


def enhancement_headline(table: pd.DataFrame, enhancement: str, measurements: pd.DataFrame,
                         point: str = "neutral") -> pd.DataFrame:
    """Per family x seed: the enhancement's D minus the best usual knob's, **cross-fitted**.

    The cells are chosen on another seed (the enhancement's best cell at matched quality, and
    the usual knob and cell with the highest D there) and D is read at those cells on this
    seed, so the max over many cells does not inflate the gain (winner's curse, DESIGN §5).
    With one seed nothing can be cross-fitted: the gain is NaN and `selected_on_seed` empty.
    """
    rows = []
    for (family, seed), group in table.groupby(["family", "seed"]):
        if enhancement not in set(group.probe) or (group.probe != enhancement).sum() == 0:
            continue
        row = {"family": family, "seed": seed, "selected_on_seed": None, "best_usual_knob": None,
               "best_usual_cell": None, "enhancement_cell": None, "d_enhancement": np.nan, "d_usual": np.nan,
               "gain": np.nan, "gain_se": np.nan, "gain_se_unpaired": np.nan, "gain_vs_baseline": np.nan,
               "accuracy_enhancement": np.nan}
        other = table[(table.family == family) & (table.seed != seed)]
        if not other.empty:
            chosen_seed = sorted(other.seed)[0]
            chosen = other[other.seed == chosen_seed]
            usual = chosen[chosen.probe != enhancement]
            best = usual.loc[usual.d_best.idxmax()]
            enh_cell = chosen[chosen.probe == enhancement].best_cell.iloc[0]
            enh = _cell_row(measurements, family, seed, point, enhancement, enh_cell)
            use = _cell_row(measurements, family, seed, point, best.probe, best.best_cell)
            base = _cell_row(measurements, family, seed, point, "baseline", "baseline")
            row.update(selected_on_seed=chosen_seed, best_usual_knob=best.probe, best_usual_cell=best.best_cell,
                       enhancement_cell=enh_cell, d_enhancement=float(enh.d), d_usual=float(use.d),
                       gain=float(enh.d) - float(use.d), gain_se=paired_difference_se(enh, use),
                       gain_se_unpaired=float(np.hypot(float(enh.d_se), float(use.d_se))),
                       gain_vs_baseline=float(enh.d) - float(base.d),
                       accuracy_enhancement=float(enh.conditioning_accuracy))
        rows.append(row)
    return pd.DataFrame(rows)


def _cell_row(measurements: pd.DataFrame, family, seed, point, probe: str, cell) -> pd.Series:
    """One measured cell of a run; cell "baseline" is the run's baseline."""
    mine = measurements[(measurements.family == family) & (measurements.seed == seed) & (measurements.point == point)]
    if cell == "baseline" or probe == "baseline":
        return mine[mine.probe == "baseline"].iloc[0]
    return mine[(mine.probe == probe) & (mine.cell.astype(str) == str(cell))].iloc[0]


def headline_summary(datasets, stability_paths, classification_paths, headline_paths, generator_paths,
                     confusion_path=None) -> dict:
    """results/summary.json: per dataset the labels (and whether all seeds agree), the numbers
    behind them with SEs across seeds, learned structure, and the enhancement gains; all at
    full K, and under "coarse" the labels and numbers of every coarse alphabet K' (DESIGN §13).
    Each entry leads with `headline`: the label when every seed, band and alphabet agree
    (`robust`), else "depends on ε / alphabet / seed" naming what it changes with (`depends_on`);
    `label_by_band` is the consensus over seeds at each ε of classification.bands. Given the
    suite's confusion table, `suite_check` lists why the run's own label calibration suite does
    not back a label the entry was given ([] when it does; classification.suite_flags)."""
    flags = (classification.suite_flags(pd.read_csv(confusion_path, index_col=0))
             if confusion_path is not None else None)
    out = {}
    for name, stab, cls, head, gen in zip(datasets, stability_paths, classification_paths, headline_paths, generator_paths):
        stability, classified, generators = pd.read_csv(stab), pd.read_csv(cls), pd.read_csv(gen)
        try:
            headline = pd.read_csv(head)
        except pd.errors.EmptyDataError:
            headline = pd.DataFrame()
        gains = {}
        for family, group in (headline.groupby("family") if len(headline) else []):
            gains[family] = {"gain_bits_mean": _nan_none(group.gain.mean()),
                             "gain_se_per_seed": [_nan_none(v) for v in group.gain_se],
                             "best_usual_knob_per_seed": group.best_usual_knob.tolist(),
                             "gain_vs_baseline_mean": _nan_none(group.gain_vs_baseline.mean())}
        families = {k: _label_entries(at_alphabet(stability, k), at_alphabet(classified, k), generators, flags)
                    for k in alphabets(stability)}
        out[name] = {"families": families.pop(FULL_K), "enhancement": gains,
                     "coarse": {str(k): entries for k, entries in families.items()}}
    return out


def _label_entries(stability: pd.DataFrame, classified: pd.DataFrame, generators: pd.DataFrame,
                   flags: dict | None = None) -> dict:
    """{family: {point: label, stability and numbers}} of one alphabet's tables."""
    families = {}
    for _, row in stability.iterrows():
        per_seed = classified[(classified.family == row.family) & (classified.point == row.point)]
        entry = {"headline": row.get("headline", row.consensus), "robust": _bool(row.get("robust", False)),
                 "depends_on": _text(row.get("depends_on")),
                 "label": row.consensus, "stable": bool(row.stable), "labels_per_seed": per_seed.label.tolist(),
                 "rules_per_seed": per_seed.rule.tolist(),
                 "label_by_band": {c[len("consensus_eps"):]: row[c] for c in row.index if c.startswith("consensus_eps")}}
        if flags is not None:
            entry["suite_check"] = classification.suite_check(entry["labels_per_seed"] + list(entry["label_by_band"].values()),
                                                              flags)
        for q in ("kappa", "delta", "delta_iso", "eta", "decoupling_index", "rho_infl"):
            entry[q] = {"mean": _nan_none(row.get(f"{q}_mean")), "se_across_seeds": _nan_none(row.get(f"{q}_seed_se"))}
        gen = generators[(generators.family == row.family) & (generators.point == row.point)]
        entry["learned_structure_bits"] = _nan_none(gen.learned_structure_bits.mean()) if len(gen) else None
        entry["conditioning_accuracy"] = _nan_none(gen.conditioning_accuracy.mean()) if len(gen) else None
        families.setdefault(row.family, {})[row.point] = entry
    return families


def _bool(value) -> bool:
    """A flag read back from CSV ("True"/"False" strings or booleans)."""
    return str(value).lower() == "true"


def _text(value) -> str:
    """A text cell read back from CSV: an empty cell is NaN there."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _nan_none(value):
    """JSON has no NaN: missing numbers become null."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else value


# results/metrics.json's number for each consensus label of ibdiv.verdict.classification (DVC
# compares numbers only; docs/sharing.md lists the codes); "unstable": the seeds disagree
LABEL_CODES = {"Balanced": 0, "Compression-Prioritized": 1, "Diversity-Prioritized": 2, "Decoupled": 3,
               "Unclassified": -1, "unstable": -2}
# the headline's code when it is not one robust label ("depends on ε / alphabet / seed")
DEPENDS_CODE = -3


def headline_code(headline: str) -> int:
    """results/metrics.json's number for a headline: the robust label's code, or DEPENDS_CODE."""
    return DEPENDS_CODE if str(headline).startswith("depends on") else label_code(headline)


def label_code(label: str) -> int:
    """The number results/metrics.json gives a consensus label (LABEL_CODES): 0 Balanced,
    1 Compression-Prioritized, 2 Diversity-Prioritized, 3 Decoupled, -1 Unclassified,
    -2 unstable (the seeds disagree). An unknown label is an error, not a silent code."""
    if label not in LABEL_CODES:
        raise ValueError(f"no metrics code for label {label!r} (known: {', '.join(LABEL_CODES)})")
    return LABEL_CODES[label]


def dvc_metrics(datasets, stability_paths, generator_paths, classification_paths=None) -> dict:
    """results/metrics.json, DVC's metrics (`dvc exp show`, `dvc metrics diff`): per dataset,
    family and operating point the numbers experiments are compared by, means over seeds:
    κ, δ, η, Δ (decoupling_index), ρ_infl, conditioning accuracy and held-out bits/token; and
    the verdict: `label_code` (the consensus label as a number, LABEL_CODES), `stable` (1 when
    every seed carries that label, else 0) and, given the per-seed classification tables,
    `margin` (mean over seeds of the deciding quantity in SE units; ibdiv.verdict.classification);
    `robust` (1 when every seed, band and alphabet agree) and `headline_code` (the robust label's
    code, or -3 when the label depends on ε, alphabet or seed). Numbers only; a quantity not measured for a row is left out. Full K only: the coarse
    alphabets' numbers are in summary.json and the tables."""
    quantities = ("kappa", "delta", "eta", "decoupling_index", "rho_infl")
    out = {}
    for name, stab, gen, cls in zip(datasets, stability_paths, generator_paths,
                                    classification_paths or [None] * len(datasets)):
        rows = {}
        for _, row in at_alphabet(pd.read_csv(stab)).iterrows():
            rows[(row.family, row.point)] = {q: row.get(f"{q}_mean") for q in quantities}
            rows[(row.family, row.point)].update(label_code=label_code(row.consensus),
                                                 stable=int(_bool(row.stable)))
            if "headline" in row.index:
                rows[(row.family, row.point)].update(robust=int(_bool(row.robust)),
                                                     headline_code=headline_code(row.headline))
        classified = at_alphabet(pd.read_csv(cls)) if cls is not None else pd.DataFrame(columns=["family", "point"])
        for (family, point), group in classified.groupby(["family", "point"], sort=False):
            rows.setdefault((family, point), {})["margin"] = pd.to_numeric(group.margin, errors="coerce").mean()
        for (family, point), group in pd.read_csv(gen).groupby(["family", "point"], sort=False):
            rows.setdefault((family, point), {}).update(
                conditioning_accuracy=group.conditioning_accuracy.mean(),
                heldout_bits_per_token=group.heldout_bits_per_token.mean())
        out[name] = {}
        for (family, point), values in rows.items():
            numbers = {k: (v if k in ("label_code", "stable", "robust", "headline_code") else float(v))
                       for k, v in values.items() if _nan_none(v) is not None}
            out[name].setdefault(family, {})[point] = numbers
    return out
