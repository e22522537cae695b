"""The inputs of the strategy classification (DESIGN §5) from a measurements table: one row per
family x seed x point with H(Z), H_pos, D of the generator and of the real data, iso-quality D,
ρ_infl and the decoupling responses with their paired SEs.

In the verdict layer because the label calibration suite (calibration_suite) puts its constructed
generators through exactly this function, as the pipeline does its families (report.tables builds
the measurements table and calls it): a suite that assembled its own summary row could pass
while the pipeline's summary is wrong.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ibdiv.core import registry


def flatten(measurement: dict, prefix: str = "") -> dict:
    """Nested measurement dict -> flat columns: {"d": {"value", "se"}} -> d, d_se; other
    sub-dicts -> name_key. Lists and strings are dropped (they are not table cells)."""
    out = {}
    for key, value in measurement.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "value" in value and "se" in value:
            out[name], out[f"{name}_se"] = value["value"], value["se"]
        elif isinstance(value, dict):
            out.update(flatten(value, f"{name}_"))
        elif isinstance(value, (int, float, bool)) or value is None:
            out[name] = value
    return out


def iso_quality_diversity(points: pd.DataFrame, target_accuracy: float) -> tuple[float, float]:
    """D (and SE) interpolated linearly at `target_accuracy` along a sweep (columns
    conditioning_accuracy, d, d_se and, when measured, conditioning_accuracy_se); NaN when the
    sweep does not bracket the target.

    The SE propagates both the D and the accuracy uncertainty of the two bracketing points
    (delta method, points independent): with w the target's position between them and s the
    slope dD/dacc, Var = (1-w)² se_lo² + w² se_hi² + s² ((1-w)² sa_lo² + w² sa_hi²). Errors
    in accuracy move the interpolation point along the slope.
    """
    pts = points.sort_values("conditioning_accuracy")
    acc, d, se = (pts[c].to_numpy(float) for c in ("conditioning_accuracy", "d", "d_se"))
    acc_se = (pts["conditioning_accuracy_se"].to_numpy(float) if "conditioning_accuracy_se" in pts
              else np.zeros_like(acc))
    if len(acc) < 2 or not acc[0] <= target_accuracy <= acc[-1]:
        return float("nan"), float("nan")
    hi = int(np.clip(np.searchsorted(acc, target_accuracy, side="left"), 1, len(acc) - 1))
    lo = hi - 1
    width = acc[hi] - acc[lo]
    if width <= 0:  # equal accuracies: nothing to interpolate along
        return float(d[lo:hi + 1].mean()), float(np.hypot(se[lo], se[hi]) / 2)
    w, slope = (target_accuracy - acc[lo]) / width, (d[hi] - d[lo]) / width
    value = d[lo] + w * (d[hi] - d[lo])
    var = ((1 - w) * se[lo]) ** 2 + (w * se[hi]) ** 2 + slope ** 2 * (((1 - w) * acc_se[lo]) ** 2 + (w * acc_se[hi]) ** 2)
    return float(value), float(np.sqrt(var))


def iso_target(measurements: pd.DataFrame, sweep: str | None, point: str, iso_accuracy, families=None) -> float:
    """The common accuracy at which families are compared (DESIGN §2, matched quality).

    A number is a fraction of the real data's accuracy. "auto" takes the middle of the
    accuracy range that every family's sweep (with its baseline) covers at this operating
    point, so each family's D can be interpolated there; NaN when the ranges do not overlap.
    `families` restricts the overlap (default: every family with sweep rows).
    """
    ref = measurements[measurements.probe == "reference"].iloc[0]
    if iso_accuracy != "auto":
        return float(iso_accuracy) * float(ref["conditioning_accuracy"])
    rows = measurements[(measurements.point == point) & measurements.probe.isin(["baseline", sweep])]
    swept = set(rows[rows.probe == sweep].family)
    rows = rows[rows.family.isin(swept if families is None else swept & set(families))]
    ranges = rows.groupby("family").conditioning_accuracy.agg(["min", "max"])
    low, high = ranges["min"].max(), ranges["max"].min()
    return float((low + high) / 2) if sweep and low <= high else float("nan")


def summary_table(measurements: pd.DataFrame, generators: pd.DataFrame, probes: dict, iso_accuracy) -> pd.DataFrame:
    """Per family x seed x point: the inputs of the strategy classification (DESIGN §5)."""
    ref = measurements[measurements.probe == "reference"].iloc[0]
    sweep = registry.iso_quality_probe(probes)
    decoupling = registry.probe_of_kind(probes, "decoupling")
    clamp = registry.probe_of_kind(probes, "path_clamp")
    reference_cut = probes[decoupling]["cut_fraction"] if decoupling else None
    structure = generators.set_index(["family", "seed", "point"])["learned_structure_bits"]
    # Compare at a quality every family that learned cross-token structure can reach.
    learned = set(generators[generators.learned_structure_bits > 0].family)
    targets = {point: iso_target(measurements, sweep, point, iso_accuracy, learned)
               for point in set(measurements.point) - {""}}
    rows = []
    runs = measurements[measurements.probe == "baseline"]
    for _, base in runs.iterrows():
        key = (base["family"], base["seed"], base["point"])
        mine = measurements[(measurements.family == key[0]) & (measurements.seed == key[1]) & (measurements.point == key[2])]
        row = {"family": key[0], "seed": key[1], "point": key[2], "target_accuracy": targets[key[2]],
               "conditioning_accuracy": base["conditioning_accuracy"],
               "learned_structure_bits": structure.get(key, float("nan"))}
        for col in ("h_z", "h_pos", "d"):
            row[col], row[f"{col}_se"] = base[col], base[f"{col}_se"]
            row[f"{col}_data"], row[f"{col}_data_se"] = ref[col], ref[f"{col}_se"]
        sweep_rows = pd.concat([mine[mine.probe == sweep], base.to_frame().T]) if sweep else base.to_frame().T
        row["d_iso"], row["d_iso_se"] = iso_quality_diversity(sweep_rows, targets[key[2]])
        row["rho_infl"] = _rho_at(mine[mine.probe.isin([decoupling, clamp])], reference_cut)
        row.update(_decoupling_responses(mine[mine.probe == decoupling]))
        rows.append(row)
    return pd.DataFrame(rows)


def _rho_at(rows: pd.DataFrame, fraction) -> float:
    """D_influence / D_tot at the reference cut: the decoupling probe's unperturbed cell (it is
    sampled at every operating point), else the path-clamp cut nearest the reference fraction."""
    if fraction is None:
        return float("nan")
    unperturbed = rows[rows["cell"] == "none"]
    if not unperturbed.empty:
        return float(unperturbed["rho_infl"].iloc[0])
    cuts = rows[pd.to_numeric(rows["cell"], errors="coerce").notna()]
    if cuts.empty:
        return float("nan")
    nearest = (cuts["cell"].astype(float) - fraction).abs().idxmin()
    return float(cuts.loc[nearest, "rho_infl"])


def _decoupling_responses(cells: pd.DataFrame) -> dict:
    """The decoupling matrix's responses with their paired SEs (measured with the unperturbed
    cell: diagnostics.decoupling_responses), ΔD_tot beside them (r_*_tot), and Δ's SE; and which
    path column they are (path_column: "token" unless the measurement says otherwise; the suite's
    joint columns carry the token-level matrix beside them as token_r_*, token_decoupling_index)."""
    names = ([f"r_{probe}_{col}" for probe in ("i2", "i3") for col in ("path", "exec", "infl", "tot")]
             + ["decoupling_index"])
    none = cells[cells["cell"] == "none"]
    if none.empty:
        return {"path_column": "token", **{k: float("nan") for n in names for k in (n, f"{n}_se")}}
    row = none.iloc[0]
    out = {k: float(row.get(f"responses_{k}", float("nan"))) for n in names for k in (n, f"{n}_se")}
    column = row.get("path_column", "token")
    out["path_column"] = column if isinstance(column, str) else "token"
    out.update({f"token_{k}": float(row[f"responses_token_{k}"]) for n in names for k in (n, f"{n}_se")
                if f"responses_token_{k}" in row.index})
    return out
