"""Strategy classification from measured numbers (DESIGN §5): computed, never hard-coded.

Every label is the outcome of a rule applied to ratios of measured entropies; nothing here
knows which generator a row came from. Per row of a summary table:

- kappa     = H(Z)_gen / H(Z)_data,  kappa_pos = H_pos,gen / H_pos,data;
- delta     = D_gen / D_data,        delta_iso = D_iso / D_data (matched conditioning accuracy);
- eta       = delta / kappa  (conditional diversity per bit of codebook entropy, vs data);
- decoupling_index = (|r_i2_path| + |r_i3_exec|) / (sum of the four |r|): the share of the
  absolute I2/I3 response that sits on the diagonal of the 2x2 response matrix.

Standard errors use the first-order delta method with the input SEs treated as uncorrelated:
for a ratio a/b, Var ≈ (sa/b)^2 + (a·sb/b^2)^2, i.e. relative variances add; eta's relative
variance is therefore the sum of the four relative variances of d, d_data, h_z, h_z_data.

Rule (thresholds from config; margins in units of bootstrap SE), evaluated in order:
1. Decoupled               if Δ - m_Δ·SE(Δ) >= delta_min and |r_i2_path| > m·SE and |r_i3_exec| > m·SE;
2. Diversity-Prioritized   if eta - m·SE(eta) >= 1 + ε;
3. Compression-Prioritized if eta + m·SE(eta) <= 1 - ε;
4. Balanced                otherwise;
and Unclassified (with the reason in `rule`) when rule 1 does not fire and eta or SE(eta)
is not a finite number. m = thresholds["margin_se"]; m_Δ = thresholds["delta_margin_se"] (default m):
Δ's point value is not enough, it must clear Δ_min by m_Δ of its paired-bootstrap SEs (a Δ of
0.72 ± 0.05 is one replicate away from 0.68; with m_Δ > 0 a Δ whose SE was not measured cannot
earn Decoupled); ε = thresholds["eta_band"], an effect-size
band: a label must be practically as well as statistically clear (with 200 samples per class
SE(eta) ~ 0.004, so without a band a 0.8% excess would be a label; DESIGN §5). The responses
are on the (D_path, D_exec) columns; their SEs come from a paired bootstrap. Which path column they
are is the row's `path_column` (default "token": the per-position D_path, D_exec; "joint": the
whole-continuation I(X; path | c), H(X | path, c) read with the generator's own likelihood,
ibdiv.measure.joint), named in the rule sentence as Delta[token] or Delta[joint].
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from ibdiv.measure.decoupling import decoupling_index

# --- rule outcomes: the only place the label strings are spelled --------------------------------
DECOUPLED = "Decoupled"
DIVERSITY_PRIORITIZED = "Diversity-Prioritized"
COMPRESSION_PRIORITIZED = "Compression-Prioritized"
BALANCED = "Balanced"
UNCLASSIFIED = "Unclassified"
UNSTABLE = "unstable"
NO_MAJORITY = "no majority"
LABELS = (DECOUPLED, DIVERSITY_PRIORITIZED, COMPRESSION_PRIORITIZED, BALANCED, UNCLASSIFIED)

KEYS = ["dataset", "family", "seed", "point"]
GROUP_KEYS = ["dataset", "family", "point"]
MEASURED = [
    "h_z", "h_z_se", "h_z_data", "h_z_data_se",
    "h_pos", "h_pos_se", "h_pos_data", "h_pos_data_se",
    "d", "d_se", "d_data", "d_data_se",
    "d_iso", "d_iso_se",
    "rho_infl", "learned_structure_bits",
    "r_i2_path", "r_i2_path_se", "r_i2_exec", "r_i2_exec_se",
    "r_i3_path", "r_i3_path_se", "r_i3_exec", "r_i3_exec_se",
]
REQUIRED_COLUMNS = KEYS + MEASURED
OUTPUT_COLUMNS = KEYS + [
    "kappa", "kappa_se", "kappa_pos", "kappa_pos_se",
    "delta", "delta_se", "delta_iso", "delta_iso_se",
    "eta", "eta_se", "eta_z",
    "decoupling_index", "decoupling_index_se", "decoupling_excess", "diag_z_min", "path_column",
    "label", "rule", "margin",
    "learned_structure_bits", "rho_infl",
]
# Every label is also decided at these effect-size bands beside the configured one (DESIGN §5): the
# configured ε = 0.02 was fixed after the first trained families had been seen, so a reader must be
# able to see which labels exist only because of it (column label_eps<ε>, e.g. label_eps0.01).
ROBUSTNESS_BANDS = (0.0, 0.01, 0.02)
# what a headline label can depend on, in the order the headline names them
DEPENDS_ON = ("ε", "alphabet", "seed")
ROBUSTNESS_COLUMNS = ["robust", "depends_on", "headline"]

# quantities averaged across seeds by stability()
SEED_QUANTITIES = ["kappa", "delta", "delta_iso", "eta", "decoupling_index", "rho_infl"]


# --- delta-method arithmetic ----------------------------------------------------------------------


def ratio_se(a, sa, b, sb):
    """a/b and its first-order SE, input errors uncorrelated: sqrt((sa/b)^2 + (a·sb/b^2)^2).

    Equivalent to |a/b|·sqrt((sa/a)^2 + (sb/b)^2) (relative variances add) but also defined at
    a = 0. Returns NaN where b is 0 or any input is NaN. Works on scalars and arrays.
    """
    a, sa, b, sb = (np.asarray(x, dtype=float) for x in (a, sa, b, sb))
    with np.errstate(divide="ignore", invalid="ignore"):
        bad = b == 0
        r = np.where(bad, np.nan, a / np.where(bad, 1.0, b))
        se = np.where(bad, np.nan, np.sqrt((sa / np.where(bad, 1.0, b)) ** 2 + (r * sb / np.where(bad, 1.0, b)) ** 2))
    return r, se


def eta_of(delta, delta_se, kappa, kappa_se):
    """η = δ/κ and its SE: conditional diversity per bit of codebook entropy, relative to data
    (DESIGN §5). Its own function so that the calibration suite can show that a rule ignoring κ
    (η = δ) fails it (tests/test_calibration.py)."""
    return ratio_se(delta, delta_se, kappa, kappa_se)


def _z(x, se):
    """x / se with the SE = 0 limit (±inf, or 0 at x = 0); NaN if either is NaN."""
    if not (np.isfinite(x) and np.isfinite(se)):
        return math.nan
    if se > 0:
        return x / se
    return 0.0 if x == 0 else math.copysign(math.inf, x)


def _check_thresholds(thresholds) -> tuple[float, float, float, float]:
    """(delta_min, margin_se, eta_band, delta_margin_se); delta_margin_se defaults to margin_se
    (DESIGN §5 uses one m for every margin)."""
    try:
        delta_min = float(thresholds["delta_min"])
        margin_se = float(thresholds["margin_se"])
        band = float(thresholds["eta_band"])
    except KeyError as e:
        raise KeyError(f"thresholds: missing key {e.args[0]!r} (need 'delta_min', 'margin_se', 'eta_band')") from None
    delta_margin = float(thresholds.get("delta_margin_se", margin_se))
    if not (math.isfinite(delta_margin) and delta_margin >= 0.0):
        raise ValueError(f"thresholds.delta_margin_se must be a finite number >= 0, got {delta_margin}")
    if not 0.0 <= band < 1.0:
        raise ValueError(f"thresholds.eta_band must be in [0, 1), got {band}")
    if not 0.0 < delta_min <= 1.0:
        raise ValueError(f"thresholds.delta_min must be in (0, 1], got {delta_min}")
    if not (math.isfinite(margin_se) and margin_se >= 0.0):
        raise ValueError(f"thresholds.margin_se must be a finite number >= 0, got {margin_se}")
    return delta_min, margin_se, band, delta_margin


# --- the rule -------------------------------------------------------------------------------------


def _f(x) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}" if abs(x) >= 1e3 or (x != 0 and abs(x) < 1e-2) else f"{x:.2f}"


def _delta_lower(dix: float, se: float, m_delta: float) -> float:
    """Δ - m_Δ·SE(Δ): what Δ_min is compared with. At m_Δ = 0 the point value (SE not needed);
    else NaN when the SE was not measured, so that an unmeasured uncertainty never earns Decoupled."""
    if m_delta == 0.0:
        return dix
    return dix - m_delta * se if np.isfinite(se) else math.nan


def _decide(row: dict, delta_min: float, m: float, band: float, m_delta: float) -> tuple[str, str, float]:
    """(label, rule sentence, margin) for one row of computed quantities."""
    dix = row["decoupling_index"]
    dix_se = row.get("decoupling_index_se", math.nan)
    lower = _delta_lower(dix, dix_se, m_delta)
    z_path = abs(_z(row["r_i2_path"], row["r_i2_path_se"]))
    z_exec = abs(_z(row["r_i3_exec"], row["r_i3_exec_se"]))
    clear_path = np.isfinite(row["r_i2_path"]) and abs(row["r_i2_path"]) > m * row["r_i2_path_se"]
    clear_exec = np.isfinite(row["r_i3_exec"]) and abs(row["r_i3_exec"]) > m * row["r_i3_exec_se"]
    diag = (
        f"|r_i2_path|/SE={_f(z_path)} {'>' if clear_path else 'not >'} {m:g}, "
        f"|r_i3_exec|/SE={_f(z_exec)} {'>' if clear_exec else 'not >'} {m:g}"
    )
    delta_text = f"Delta[{row.get('path_column', 'token')}]={_f(dix)} ± {_f(dix_se)}: Delta - {m_delta:g}*SE = {_f(lower)}"
    if np.isfinite(lower) and lower >= delta_min and clear_path and clear_exec:
        rule = f"{delta_text} >= Delta_min={delta_min:g} (by {_f(lower - delta_min)}); {diag} → {DECOUPLED}"
        return DECOUPLED, rule, float(np.minimum(z_path, z_exec))

    # why rule 1 did not fire, stated before the eta rule that did
    if not np.isfinite(dix):
        why_not = "Delta not measured"
    elif not np.isfinite(lower):
        why_not = f"Delta={_f(dix)} but SE(Delta) not measured"
    elif lower < delta_min:
        why_not = f"{delta_text} < Delta_min={delta_min:g}"
    else:
        why_not = f"{delta_text} >= Delta_min={delta_min:g} but diagonal within noise ({diag})"
    prefix = f"not {DECOUPLED} ({why_not}); "

    eta, se = row["eta"], row["eta_se"]
    if not np.isfinite(eta):
        return UNCLASSIFIED, prefix + f"eta not measured (delta={_f(row['delta'])}, kappa={_f(row['kappa'])}) → {UNCLASSIFIED}", math.nan
    if not (np.isfinite(se) and se >= 0):
        return UNCLASSIFIED, prefix + f"eta={_f(eta)} but SE(eta) not measured → {UNCLASSIFIED}", math.nan
    z = _z(eta - 1.0, se)
    lo, hi = eta - m * se, eta + m * se
    head = f"eta={_f(eta)} ± {_f(se)}: "
    if lo >= 1.0 + band:
        return DIVERSITY_PRIORITIZED, prefix + head + f"eta - {m:g}*SE = {_f(lo)} >= 1 + {band:g} → {DIVERSITY_PRIORITIZED}", z
    if hi <= 1.0 - band:
        return COMPRESSION_PRIORITIZED, prefix + head + f"eta + {m:g}*SE = {_f(hi)} <= 1 - {band:g} → {COMPRESSION_PRIORITIZED}", z
    return BALANCED, prefix + head + f"[{_f(lo)}, {_f(hi)}] (eta ± {m:g}*SE) not clear of 1 ± {band:g} → {BALANCED}", z


def bands(thresholds) -> list[float]:
    """The effect-size bands every label is decided at: ROBUSTNESS_BANDS and the configured one."""
    return sorted(set(ROBUSTNESS_BANDS) | {float(thresholds["eta_band"])})


def band_column(band: float) -> str:
    """The column holding the label decided at band ε: label_eps0, label_eps0.01, ..."""
    return f"label_eps{band:g}"


def classify_rows(summary: pd.DataFrame, thresholds) -> pd.DataFrame:
    """One classified row per input row (same order, fresh index).

    Columns: identifiers; kappa, kappa_pos, delta, delta_iso, eta with their delta-method SEs;
    eta_z = (eta - 1)/SE(eta); decoupling_index Δ, decoupling_excess = Δ - m_Δ·SE(Δ) - delta_min and
    diag_z_min = min(|r_i2_path|/SE, |r_i3_exec|/SE); label; rule (the sentence naming the
    rule that fired, with its numbers); margin (the deciding quantity past its threshold in SE
    units: (eta - 1)/SE(eta) for the eta rules, diag_z_min for Decoupled, NaN for
    Unclassified — a label fired on eta when |margin| >= margin_se); learned_structure_bits
    and rho_infl carried through; then label_eps<ε> for every band of bands(thresholds): the
    label the same rule gives at that ε (the configured band's column equals `label`).
    """
    delta_min, m, band, m_delta = _check_thresholds(thresholds)
    missing = [c for c in REQUIRED_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"summary is missing columns: {missing}")
    s = summary.reset_index(drop=True)
    col = {c: pd.to_numeric(s[c], errors="raise").to_numpy(dtype=float) for c in MEASURED}

    out = s[KEYS].copy()
    out["kappa"], out["kappa_se"] = ratio_se(col["h_z"], col["h_z_se"], col["h_z_data"], col["h_z_data_se"])
    out["kappa_pos"], out["kappa_pos_se"] = ratio_se(col["h_pos"], col["h_pos_se"], col["h_pos_data"], col["h_pos_data_se"])
    out["delta"], out["delta_se"] = ratio_se(col["d"], col["d_se"], col["d_data"], col["d_data_se"])
    out["delta_iso"], out["delta_iso_se"] = ratio_se(col["d_iso"], col["d_iso_se"], col["d_data"], col["d_data_se"])
    out["eta"], out["eta_se"] = eta_of(out["delta"], out["delta_se"], out["kappa"], out["kappa_se"])
    out["eta_z"] = [_z(e - 1.0, se) for e, se in zip(out["eta"], out["eta_se"])]
    out["decoupling_index"] = decoupling_index(col["r_i2_path"], col["r_i2_exec"], col["r_i3_path"], col["r_i3_exec"])
    out["decoupling_index_se"] = (pd.to_numeric(s["decoupling_index_se"], errors="coerce").to_numpy(dtype=float)
                                  if "decoupling_index_se" in s.columns else np.nan)  # paired bootstrap
    out["decoupling_excess"] = [_delta_lower(d, se, m_delta) - delta_min  # what rule 1 compares with 0
                                for d, se in zip(out["decoupling_index"], out["decoupling_index_se"])]
    out["diag_z_min"] = np.minimum(  # NaN if either diagonal response is unmeasured
        np.abs([_z(a, sa) for a, sa in zip(col["r_i2_path"], col["r_i2_path_se"])]),
        np.abs([_z(b, sb) for b, sb in zip(col["r_i3_exec"], col["r_i3_exec_se"])]),
    )
    out["path_column"] = s["path_column"].fillna("token").to_numpy() if "path_column" in s.columns else "token"
    out["learned_structure_bits"] = col["learned_structure_bits"]
    out["rho_infl"] = col["rho_infl"]

    rows = []
    for i in range(len(out)):
        row = {k: out.at[i, k] for k in ("kappa", "delta", "eta", "eta_se", "decoupling_index", "decoupling_index_se",
                                         "path_column")}
        row.update({k: col[k][i] for k in ("r_i2_path", "r_i2_path_se", "r_i3_exec", "r_i3_exec_se")})
        rows.append(row)
    decided = [_decide(row, delta_min, m, band, m_delta) for row in rows]
    out["label"] = [d[0] for d in decided]
    out["rule"] = [d[1] for d in decided]
    out["margin"] = np.array([d[2] for d in decided], dtype=float)
    out = out[OUTPUT_COLUMNS].copy()
    for b in bands(thresholds):
        out[band_column(b)] = [_decide(row, delta_min, m, b, m_delta)[0] for row in rows]
    return out


def band_columns(table: pd.DataFrame) -> list[str]:
    """The label_eps<ε> columns of a classified table, by ascending ε."""
    cols = [c for c in table.columns if c.startswith("label_eps")]
    return sorted(cols, key=lambda c: float(c[len("label_eps"):]))


# --- stability across seeds -----------------------------------------------------------------------


def _seed_se(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) >= 2 else math.nan


def stability(classified: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × family × point.

    seeds / labels: the seeds (sorted) and their labels, in the same order; n_seeds;
    stable: all seeds carry the same label; consensus: that label, or "unstable";
    majority: the label held by more than half of the seeds, or "no majority";
    <q>_mean and <q>_seed_se (SD/sqrt(n) over seeds with a number; NaN below 2) for
    q in kappa, delta, delta_iso, eta, decoupling_index, rho_infl; consensus_eps<ε> for every
    label_eps<ε> column: the consensus over seeds at that band.
    """
    missing = [c for c in KEYS + ["label"] + SEED_QUANTITIES if c not in classified.columns]
    if missing:
        raise ValueError(f"classified is missing columns: {missing}")
    rows = []
    for key, g in classified.sort_values("seed").groupby(GROUP_KEYS, sort=True, dropna=False):
        labels = list(g["label"])
        counts = Counter(labels)
        top, top_n = counts.most_common(1)[0]
        stable = len(counts) == 1
        row = dict(zip(GROUP_KEYS, key))
        row.update(
            seeds=list(g["seed"]),
            labels=labels,
            n_seeds=len(labels),
            stable=stable,
            consensus=labels[0] if stable else UNSTABLE,
            majority=top if top_n * 2 > len(labels) else NO_MAJORITY,
        )
        for column in band_columns(classified):
            row["consensus" + column[len("label"):]] = _consensus(list(g[column]))
        for q in SEED_QUANTITIES:
            v = pd.to_numeric(g[q], errors="coerce")
            row[f"{q}_mean"] = float(v.mean()) if v.notna().any() else math.nan
            row[f"{q}_seed_se"] = _seed_se(v)
        rows.append(row)
    cols = GROUP_KEYS + ["seeds", "labels", "n_seeds", "stable", "consensus", "majority"]
    cols += [f"{q}_{s}" for q in SEED_QUANTITIES for s in ("mean", "seed_se")]
    cols += ["consensus" + c[len("label"):] for c in band_columns(classified)]
    return pd.DataFrame(rows, columns=cols)


def _consensus(labels: list[str]) -> str:
    return labels[0] if len(set(labels)) == 1 else UNSTABLE


# --- robustness across seeds, bands and alphabets -------------------------------------------------


def robustness(classified: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × family × point over every seed, band (label_eps<ε>) and alphabet
    (coarse_k; one alphabet when the column is absent):

    robust: every seed, band and alphabet gives the same label;
    depends_on: what the label changes with, "ε / alphabet / seed" style ("" when robust):
      ε when some seed and alphabet get different labels at different bands; alphabet when
      some seed and band get different labels on different alphabets; seed when some band
      and alphabet get different labels on different seeds;
    headline: the robust label, else "depends on " + depends_on (what the report leads with).
    """
    label_cols = band_columns(classified) or ["label"]
    keys = [k for k in GROUP_KEYS if k in classified.columns]
    alphabet = "coarse_k" if "coarse_k" in classified.columns else None
    long = classified.melt(id_vars=keys + ["seed"] + ([alphabet] if alphabet else []), value_vars=label_cols,
                           var_name="band", value_name="verdict")
    if alphabet is None:
        long["coarse_k"] = 0
    factors = {"ε": "band", "alphabet": "coarse_k", "seed": "seed"}
    rows = []
    for key, g in long.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        robust = g["verdict"].nunique() == 1
        held = {name: [c for c in factors.values() if c != factors[name]] for name in DEPENDS_ON}
        depends = [] if robust else [name for name in DEPENDS_ON if _varies_with(g, held[name])]
        if not robust and not depends:  # an incomplete grid: name every factor that has levels
            depends = [name for name in DEPENDS_ON if g[factors[name]].nunique() > 1]
        text = " / ".join(depends)
        headline = g["verdict"].iloc[0] if robust else f"depends on {text}"
        rows.append({**dict(zip(keys, key)), "robust": bool(robust), "depends_on": text, "headline": headline})
    return pd.DataFrame(rows, columns=keys + ROBUSTNESS_COLUMNS)


def _varies_with(g: pd.DataFrame, others: list[str]) -> bool:
    """Whether the label changes with the remaining factor while the `others` are held fixed."""
    return bool((g.groupby(others, dropna=False)["verdict"].nunique() > 1).any())


# --- what the label calibration suite says about a label ------------------------------------------


SUITE_REQUIRED_SHARE = 0.95  # a suite case must get its own label in at least this share of seeds (DESIGN §5)


def suite_flags(confusion: pd.DataFrame, required_share: float = SUITE_REQUIRED_SHARE) -> dict[str, list[str]]:
    """{label: reasons} for every label the run's own suite (calibration_suite.confusion: one
    row per case with `expected`, `n_seeds` and the share of seeds given each label) does not
    back at this design: a case built to have the label got it in fewer than `required_share`
    of its seeds (the label is missed), or a case built otherwise got it in more than
    1 - `required_share` (the label is given where it is not earned). Labels with no reason
    are absent."""
    flags: dict[str, list[str]] = {}
    for case, row in confusion.iterrows():
        expected, n = row["expected"], int(row["n_seeds"])
        for label in LABELS:
            share = float(row.get(label, 0.0))
            if label == expected and share < required_share:
                flags.setdefault(label, []).append(
                    f"suite case {case} got {label} in {share:.0%} of {n} seeds (< {required_share:.0%})")
            elif label != expected and share > 1.0 - required_share:
                flags.setdefault(label, []).append(
                    f"suite case {case} (built {expected}) got {label} in {share:.0%} of {n} seeds")
    return flags


def suite_check(labels, flags: dict[str, list[str]]) -> list[str]:
    """The suite_flags reasons that concern any of `labels` (the labels a row was given at some
    seed or band), each once, in order; [] when the suite backs all of them."""
    reasons = []
    for label in dict.fromkeys(labels):
        reasons += [r for r in flags.get(label, []) if r not in reasons]
    return reasons
