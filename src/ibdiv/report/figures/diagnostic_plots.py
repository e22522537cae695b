"""The diagnostic figures. Each takes the pipeline's tables, draws one figure, writes it as PNG and
PDF next to a CSV of exactly the numbers drawn, and returns that CSV's DataFrame. Error bars are
1.96 bootstrap SE; where seeds are averaged, the SE of the mean is sqrt(sum SE^2) / n_seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ibdiv.report.figures import style
from ibdiv.report.figures.style import plt


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    """Column as float; all-NaN when the column is missing."""
    if col not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    """Boolean-ish column (bools or 'True'/'False' strings) as True/False/None."""
    if col not in df:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    table = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}
    return df[col].map(lambda v: table.get(v) if isinstance(v, (bool, np.bool_, str)) else None).astype(object)


def _reference(measurements: pd.DataFrame):
    """The real held-out data's row (probe 'reference' / family 'data'), or None."""
    ref = measurements[(measurements["probe"] == "reference") | (measurements["family"] == "data")]
    return ref.iloc[0] if len(ref) else None


def _baseline(measurements: pd.DataFrame) -> pd.DataFrame:
    return measurements[measurements["probe"] == "baseline"]


def _generators(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["family"] != "data") & (df["probe"] != "reference")]


def _cells(df: pd.DataFrame) -> pd.DataFrame:
    """Copy with the probe cell as a number (NaN for named cells)."""
    out = df.copy()
    out["cell"] = _num(df, "cell")
    return out


def _with_baseline(rows: pd.DataFrame, measurements: pd.DataFrame, cell_value) -> pd.DataFrame:
    """Add each family/seed/point's baseline row at `cell_value` where the probe lacks that cell."""
    if cell_value is None or rows.empty:
        return rows
    base = _cells(_baseline(measurements))
    extra = []
    for key, g in rows.groupby(["family", "seed", "point"], sort=False):
        if not np.isclose(g["cell"], cell_value).any():
            b = base[(base["family"] == key[0]) & (base["seed"] == key[1]) & (base["point"] == key[2])]
            extra.append(b.assign(cell=float(cell_value), probe=g["probe"].iloc[0], kind=g["kind"].iloc[0]))
    return pd.concat([rows, *extra], ignore_index=True) if extra else rows


def _seed_mean(df: pd.DataFrame, keys: list, cols: list) -> pd.DataFrame:
    """Mean over seeds per `keys` group of each col, with SE of the mean sqrt(sum SE^2)/n."""
    out_cols = [*keys, "n_seeds", *(c2 for c in cols for c2 in (c, f"{c}_se"))]
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n_seeds"] = int(g["seed"].nunique())
        for c in cols:
            v, se = _num(g, c), _num(g, f"{c}_se")
            ok = v.notna()
            row[c] = float(v[ok].mean()) if ok.any() else np.nan
            row[f"{c}_se"] = float(np.sqrt((se[ok] ** 2).sum()) / ok.sum()) if ok.any() and se[ok].notna().all() else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=out_cols)


def _require(rows: pd.DataFrame, columns, figure: str) -> None:
    """A figure's own columns must exist wherever it has rows to draw: a renamed or dropped
    estimand fails here instead of being drawn as "not measured"."""
    missing = [c for c in columns if c not in rows]
    if len(rows) and missing:
        raise KeyError(f"{figure}: the measurements lack column(s) {missing}")



def _label_per_family_point(classification) -> dict:
    """(family, point) -> the label all seeds agree on, else 'unstable: A/B'."""
    if classification is None or classification.empty or "label" not in classification:
        return {}
    out = {}
    for (fam, pt), g in classification.groupby(["family", "point"], sort=False):
        labels = list(dict.fromkeys(g["label"].dropna()))
        out[(fam, pt)] = labels[0] if len(labels) == 1 else "unstable: " + "/".join(labels)
    return out



def ib_plane(measurements: pd.DataFrame, classification: pd.DataFrame, path) -> pd.DataFrame:
    """The IB plane: conditional diversity D against codebook entropy H(Z) (left) and positional entropy H_pos (right), one marker per family, seed and operating point (±1.96 SE), the real data as a star; the line through the data star is η = 1 (D/D_data = H/H_data): points in the green region above it keep more diversity per bit than the data (Diversity-Prioritized side), points in the red region below keep less (Compression-Prioritized side); text gives each family's computed label."""
    base, ref = _baseline(measurements), _reference(measurements)
    _require(base, ["h_z", "h_z_se", "h_pos", "h_pos_se", "d", "d_se"], "ib_plane")
    labels = _label_per_family_point(classification)
    styles = style.point_styles(base["point"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    rows = []
    for ax, (xcol, xname) in zip(axes, [("h_z", "H(Z)"), ("h_pos", "H_pos")]):
        x, xe, y, ye = _num(base, xcol), style.Z * _num(base, f"{xcol}_se"), _num(base, "d"), style.Z * _num(base, "d_se")
        ok = x.notna() & y.notna()
        for i in base.index[ok]:
            fam, pt = base.at[i, "family"], base.at[i, "point"]
            ax.errorbar(x[i], y[i], xerr=xe[i] if pd.notna(xe[i]) else None, yerr=ye[i] if pd.notna(ye[i]) else None,
                        fmt=styles[pt][0], color=style.colour(fam), ms=6, capsize=2,
                        label=f"{fam} · {pt}: {labels.get((fam, pt), 'no label')}")
            rows.append(dict(panel=xname, family=fam, seed=base.at[i, "seed"], point=pt, x=x[i], x_err=xe[i],
                             y=y[i], y_err=ye[i], label=labels.get((fam, pt), "")))
        xr = float(_num(ref.to_frame().T, xcol).iloc[0]) if ref is not None else np.nan
        yr = float(_num(ref.to_frame().T, "d").iloc[0]) if ref is not None else np.nan
        if np.isfinite(xr) and np.isfinite(yr) and xr > 0:
            xre, yre = style.Z * float(_num(ref.to_frame().T, f"{xcol}_se").iloc[0]), style.Z * float(_num(ref.to_frame().T, "d_se").iloc[0])
            ax.errorbar(xr, yr, xerr=xre if np.isfinite(xre) else None, yerr=yre if np.isfinite(yre) else None,
                        fmt="*", color="black", ms=13, capsize=2, label="real data", zorder=5)
            rows.append(dict(panel=xname, family="data", seed=ref["seed"], point="reference", x=xr, x_err=xre,
                             y=yr, y_err=yre, label="reference"))
            # zoom on the points: every family sits within a few % of the data, which a plot from
            # the origin squeezes into one blob (the η = 1 line still runs through the data star)
            xs_all = np.array([xr, *(x[ok] - xe[ok].fillna(0)), *(x[ok] + xe[ok].fillna(0))])
            ys_all = np.array([yr, *(y[ok] - ye[ok].fillna(0)), *(y[ok] + ye[ok].fillna(0))])
            xpad, ypad = 0.15 * max(np.ptp(xs_all), 0.05), 0.15 * max(np.ptp(ys_all), 0.05)
            xmin, xmax = xs_all.min() - xpad, xs_all.max() + xpad
            ymin, ymax = ys_all.min() - ypad, ys_all.max() + ypad
            xs = np.linspace(xmin, xmax, 50)
            line = yr / xr * xs
            ax.plot(xs, line, color="0.3", lw=0.8, label="η = 1 through data")
            ax.fill_between(xs, np.maximum(line, ymin), ymax, color="tab:green", alpha=0.08, lw=0, label="Diversity-Prioritized side")
            ax.fill_between(xs, ymin, np.clip(line, ymin, ymax), color="tab:red", alpha=0.08, lw=0, label="Compression-Prioritized side")
            ax.set_xlim(xmin, xmax), ax.set_ylim(ymin, ymax)
        else:
            style.note(ax, "no data reference: η = 1 line not drawn" if ok.any() else "not measured")
        ax.set_xlabel(f"{xname} (bits)"), ax.set_ylabel("D (bits)")
    style.outside_legend(axes, title="family · point: label")
    fig.suptitle("IB plane (baseline samples; error bars 1.96 SE)", fontsize=10)
    return style.finish(fig, path, pd.DataFrame(rows, columns=["panel", "family", "seed", "point", "x", "x_err", "y", "y_err", "label"]))


def iso_quality(measurements: pd.DataFrame, path, sweep_probe: str | None, baseline_cell=1.0) -> pd.DataFrame:
    """Diversity at matched quality: conditional diversity D (±1.96 SE of the seed mean) against conditioning accuracy along the sampling sweep (baseline included at temperature 1), one line per family and operating point (mean over seeds, numbers give the swept value), the real data as a star; at equal accuracy, higher is more diverse."""
    rows = _cells(measurements[(measurements["probe"] == sweep_probe) & (measurements["kind"] == "sweep")])
    _require(rows, ["conditioning_accuracy", "d", "d_se"], "iso_quality")
    rows = _with_baseline(rows, measurements, baseline_cell)
    mean = _seed_mean(rows, ["family", "point", "cell"], ["conditioning_accuracy", "d"])
    mean = mean.dropna(subset=["conditioning_accuracy", "d"]).sort_values(["family", "point", "cell"], kind="stable")
    styles = style.point_styles(mean["point"])
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    out = []
    for (fam, pt), g in mean.groupby(["family", "point"], sort=False):
        marker, ls = styles[pt]
        ax.errorbar(g["conditioning_accuracy"], g["d"], yerr=style.Z * g["d_se"].to_numpy(), fmt=marker, ls=ls,
                    color=style.colour(fam), ms=5, capsize=2, label=f"{fam} · {pt}")
        for xv, yv, c in zip(g["conditioning_accuracy"], g["d"], g["cell"]):
            ax.annotate(f"{c:g}", (xv, yv), fontsize=6, xytext=(3, 3), textcoords="offset points", color=style.colour(fam))
        out.append(pd.DataFrame({"family": fam, "point": pt, "cell": g["cell"], "n_seeds": g["n_seeds"],
                                 "x": g["conditioning_accuracy"], "y": g["d"], "y_err": style.Z * g["d_se"]}))
    ref = _reference(measurements)
    if ref is not None and pd.notna(_num(ref.to_frame().T, "conditioning_accuracy").iloc[0]):
        rx, ry = float(ref["conditioning_accuracy"]), float(ref["d"])
        rye = style.Z * float(_num(ref.to_frame().T, "d_se").iloc[0])
        ax.errorbar(rx, ry, yerr=rye if np.isfinite(rye) else None, fmt="*", color="black", ms=12, capsize=2, label="real data")
        out.append(pd.DataFrame([{"family": "data", "point": "reference", "cell": np.nan, "n_seeds": 1,
                                  "x": rx, "y": ry, "y_err": rye}]))
    if mean.empty:
        style.note(ax, f"{sweep_probe} sweep not measured" if sweep_probe else "no temperature sweep configured")
    ax.set_xlabel("conditioning accuracy"), ax.set_ylabel("D (bits)")
    ax.set_title(f"Iso-quality: D vs accuracy along the {sweep_probe} sweep (mean over seeds, 1.96 SE)", fontsize=9)
    style.outside_legend(ax)
    cols = ["family", "point", "cell", "n_seeds", "x", "y", "y_err"]
    return style.finish(fig, path, pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols))


def _committed(df: pd.DataFrame) -> pd.Series:
    """Achieved committed fraction at the cut (falls back to the requested cell)."""
    return _num(df, "committed_fraction").fillna(_num(df, "cell"))


# D_influence as its excess over the shuffle-null mean: a confidence-ranked sampler has a
# null-level offset that is not influence (DESIGN §5); the raw value stays in the tables
_COMPONENTS = {"d_exec": ("D_exec", "tab:blue"), "d_frozen": ("D_frozen", "tab:gray"),
               "d_influence_excess": ("D_influence − null mean", "tab:red")}


def allocation(measurements: pd.DataFrame, path, probe: str | None) -> pd.DataFrame:
    """Where each family's diversity lives: D_exec (chosen after the cut), D_frozen (already committed) and D_influence (how much the path constrains the rest, as its excess over the shuffle-null mean) against the achieved committed fraction at the cut, one panel per family, one line per seed (solid = first operating point, dashed = second), ±1.96 SE; a hollow D_influence marker means it does not clear its shuffle null."""
    rows = measurements[(measurements["probe"] == probe) & (measurements["kind"] == "path_clamp")].copy()
    _require(rows, [c2 for c in _COMPONENTS for c2 in (c, f"{c}_se")] + ["influence_clears"], "allocation")
    rows["x"] = _committed(rows)
    rows["clears"] = _flag(rows, "influence_clears")
    measured = rows[np.column_stack([_num(rows, c).notna() for c in _COMPONENTS]).any(axis=1)] if len(rows) else rows
    families = list(dict.fromkeys(measured["family"]))
    styles = style.point_styles(measured["point"])
    fig, axes = style.panels(len(families), sharey=True)
    xmax = float(np.nanmax(measured["x"])) if measured["x"].notna().any() else 0.5
    out = []
    for ax, fam in zip(axes.ravel(), families):
        ax.set_xlim(-0.03, max(xmax, 0.5) + 0.05)
        for (pt, seed), g in measured[measured["family"] == fam].groupby(["point", "seed"], sort=False):
            g = g.sort_values("x", kind="stable")
            marker, ls = styles[pt]
            for col, (name, colour) in _COMPONENTS.items():
                y, ye = _num(g, col), style.Z * _num(g, f"{col}_se")
                ok = y.notna() & g["x"].notna()
                if not ok.any():
                    continue
                ax.errorbar(g["x"][ok], y[ok], yerr=ye[ok].to_numpy(), ls=ls, color=colour, capsize=2, lw=1,
                            fmt="none" if col == "d_influence_excess" else marker,
                            label="_nolegend_" if col == "d_influence_excess" else f"{name} · {pt}")
                influence = col == "d_influence_excess"
                hollow = (g["clears"][ok] != True).to_numpy() if influence else np.zeros(ok.sum(), bool)  # noqa: E712
                if influence:
                    ax.plot(g["x"][ok], y[ok], ls=ls, color=colour, lw=1)
                    style.markers(ax, g["x"][ok], y[ok], hollow, marker, colour, f"{name} · {pt}",
                             "D_influence within null (hollow)")
                out.append(pd.DataFrame({"family": fam, "seed": seed, "point": pt, "cell": g["cell"][ok],
                                         "component": name, "x": g["x"][ok], "y": y[ok], "y_err": ye[ok],
                                         "hollow": hollow}))
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(fam, fontsize=9), ax.set_xlabel("committed fraction at cut")
    for ax in axes[:, 0]:
        ax.set_ylabel("bits")
    if not families:
        style.note(axes[0, 0], f"{probe} not measured" if probe else "no path_clamp probe configured")
    style.outside_legend(axes)
    fig.suptitle(f"Diversity allocation under {probe} (per seed; 1.96 SE)", fontsize=10)
    cols = ["family", "seed", "point", "cell", "component", "x", "y", "y_err", "hollow"]
    return style.finish(fig, path, pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols))


def layout_commitment(measurements: pd.DataFrame, path, probe: str | None) -> pd.DataFrame:
    """How early each family decides the global layout: layout mutual information I(layout; path | c) minus its shuffle-null mean (±1.96 SE) against the achieved committed fraction at the cut, one line per family and seed (hollow = does not clear the null); the oracle, whose cut commits no tokens, is drawn as a horizontal line (band = 1.96 SE) as the known reference."""
    rows = measurements[(measurements["probe"] == probe) & (measurements["kind"] == "path_clamp")].copy()
    col = "layout_commitment_mi_minus_null_mean"
    rows["x"], rows["y"], rows["y_err"] = _committed(rows), _num(rows, col), style.Z * _num(rows, f"{col}_se")
    rows["hollow"] = (_flag(rows, "layout_commitment_clears") != True).to_numpy()  # noqa: E712
    rows = rows[rows["y"].notna()]
    styles = style.point_styles(rows["point"])
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    out = []
    for (fam, pt, seed), g in rows.groupby(["family", "point", "seed"], sort=False):
        g = g.sort_values("x", kind="stable")
        marker, ls = styles[pt]
        if (g["x"] == 0).all():  # the oracle: its path is the layout, chosen before any token
            y, e = float(g["y"].mean()), float(g["y_err"].mean())
            ax.axhline(y, color=style.colour(fam), ls=ls, lw=1.2, label=f"{fam} · {pt} (commits 0 tokens)")
            if np.isfinite(e):
                ax.axhspan(y - e, y + e, color=style.colour(fam), alpha=0.12, lw=0)
            drawn = "line"
        else:
            c = style.colour(fam)
            ax.errorbar(g["x"], g["y"], yerr=g["y_err"].to_numpy(), fmt="none", ecolor=c, capsize=2)
            ax.plot(g["x"], g["y"], ls=ls, color=c, lw=1)
            h = g["hollow"].to_numpy(bool)
            style.markers(ax, g["x"], g["y"], h, marker, c, f"{fam} · {pt}", f"{fam} · {pt} (within null)")
            drawn = "points"
        out.append(g.assign(drawn_as=drawn)[["family", "seed", "point", "cell", "x", "y", "y_err", "hollow", "drawn_as"]])
    if rows.empty:
        style.note(ax, "layout commitment not measured")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlim(-0.03, max(float(rows["x"].max()) if rows["x"].notna().any() else 0.0, 0.5) + 0.05)
    ax.set_xlabel("committed fraction at cut"), ax.set_ylabel("I(layout; path | c) − null mean (bits)")
    ax.set_title(f"Layout commitment under {probe} (per seed; 1.96 SE)", fontsize=9)
    style.outside_legend(ax)
    cols = ["family", "seed", "point", "cell", "x", "y", "y_err", "hollow", "drawn_as"]
    return style.finish(fig, path, pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols))


_RESPONSES = (("h_z", "H(Z) (bits)"), ("d", "D (bits)"), ("conditioning_accuracy", "conditioning accuracy"))


def responses(measurements: pd.DataFrame, path, probes=None) -> pd.DataFrame:
    """Responses to the zero-shot perturbations: one row of panels per noise probe (condition noise I2, codebook noise I3) showing codebook entropy H(Z), conditional diversity D and conditioning accuracy against the noise scale σ (σ = 0 is the unperturbed baseline), one line per family and operating point (mean over seeds, ±1.96 SE)."""
    if probes is None:
        probes = list(dict.fromkeys(measurements.loc[measurements["kind"] == "noise", "probe"]))
    fig, axes = plt.subplots(max(len(probes), 1), len(_RESPONSES), figsize=(11.5, 3.0 * max(len(probes), 1) + 0.4),
                             squeeze=False)
    out = []
    for r, probe in enumerate(probes):
        rows = _with_baseline(_cells(measurements[measurements["probe"] == probe]), measurements, 0.0)
        _require(rows, [c for c, _ in _RESPONSES] + ["h_z_se", "d_se"], "responses")
        mean = _seed_mean(rows, ["family", "point", "cell"], [c for c, _ in _RESPONSES]).sort_values(
            ["family", "point", "cell"], kind="stable")
        styles = style.point_styles(mean["point"])
        for ax, (col, name) in zip(axes[r], _RESPONSES):
            ok = mean[col].notna() & mean["cell"].notna()
            for (fam, pt), g in mean[ok].groupby(["family", "point"], sort=False):
                marker, ls = styles[pt]
                ax.errorbar(g["cell"], g[col], yerr=style.Z * g[f"{col}_se"].to_numpy(), fmt=marker, ls=ls,
                            color=style.colour(fam), ms=4, capsize=2, label=f"{fam} · {pt}")
                out.append(pd.DataFrame({"probe": probe, "quantity": col, "family": fam, "point": pt,
                                         "n_seeds": g["n_seeds"], "x": g["cell"], "y": g[col],
                                         "y_err": style.Z * g[f"{col}_se"]}))
            if not ok.any():
                style.note(ax)
            ax.set_xlabel(f"{probe} σ"), ax.set_ylabel(name)
    if not probes:
        style.note(axes[0, 0], "no noise probe measured")
    style.outside_legend(axes)
    fig.suptitle("Responses to perturbation (mean over seeds; 1.96 SE)", fontsize=10)
    cols = ["probe", "quantity", "family", "point", "n_seeds", "x", "y", "y_err"]
    return style.finish(fig, path, pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols))


_DECOUPLING_ROWS = (("i2", "I2 condition noise\nbefore cut"), ("i3", "I3 codebook noise\nafter cut"))
_DECOUPLING_COLS = (("path", "D_path"), ("exec", "D_exec"), ("tot", "D_tot"))  # D_tot beside, not in Δ


def decoupling_matrices(summary: pd.DataFrame, path) -> pd.DataFrame:
    """Decoupling test: per family and operating point, the 2×2 response matrix of D_path and D_exec (columns) to condition noise applied only before the cut (one draw per path) and codebook noise applied only after it, on the reads of tokens committed after the cut (one draw per continuation) (rows), in bits (value ± 1.96 paired-bootstrap SE, mean over seeds), with the response of D_tot beside it (ΔD_path ≈ −ΔD_exec with D_tot unchanged: the intervention only moved diversity between the columns); the title gives Δ = share of absolute response on the diagonal (I2→D_path, I3→D_exec), computed from the plotted 2×2 matrix; Δ near 1 with clear diagonal responses means the phases are decoupled."""
    cols = [f"r_{r}_{c}" for r, _ in _DECOUPLING_ROWS for c, _ in _DECOUPLING_COLS]
    mean = _seed_mean(summary, ["family", "point"], cols)
    mean = mean[mean[cols].notna().any(axis=1)]
    fig, axes = style.panels(len(mean), width=4.0, height=3.0)
    vmax = float(np.nanmax(np.abs(mean[cols].to_numpy()))) if len(mean) else 1.0
    vmax = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
    out, image = [], None
    for ax, (_, m) in zip(axes.ravel(), mean.iterrows()):
        grid = np.array([[m[f"r_{r}_{c}"] for c, _ in _DECOUPLING_COLS] for r, _ in _DECOUPLING_ROWS], float)
        se = np.array([[m[f"r_{r}_{c}_se"] for c, _ in _DECOUPLING_COLS] for r, _ in _DECOUPLING_ROWS], float)
        matrix = grid[:, :2]  # Δ reads the (D_path, D_exec) matrix; the D_tot column is shown beside it
        total = np.nansum(np.abs(matrix))
        delta = (abs(matrix[0, 0]) + abs(matrix[1, 1])) / total if total > 0 and np.isfinite(matrix).all() else np.nan
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for i, (rk, rname) in enumerate(_DECOUPLING_ROWS):
            for j, (ck, cname) in enumerate(_DECOUPLING_COLS):
                text = "not measured" if np.isnan(grid[i, j]) else f"{grid[i, j]:+.3f}\n± {style.Z * se[i, j]:.3f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
                out.append(dict(family=m["family"], point=m["point"], n_seeds=m["n_seeds"], row=rk, col=cname,
                                value=grid[i, j], se=se[i, j], err=style.Z * se[i, j], decoupling_index=delta))
        ax.set_xticks(range(len(_DECOUPLING_COLS)), [c for _, c in _DECOUPLING_COLS], fontsize=7)
        ax.set_yticks([0, 1], [r for _, r in _DECOUPLING_ROWS], fontsize=7)
        ax.set_title(f"{m['family']} · {m['point']}  Δ = {delta:.2f}\n(mean over {m['n_seeds']} seed(s))", fontsize=8)
    fig.suptitle("Decoupling response matrices (value ± 1.96 SE)", fontsize=10)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="response (bits)")
    else:
        style.note(axes[0, 0], "decoupling not measured")
    table = pd.DataFrame(out, columns=["family", "point", "n_seeds", "row", "col", "value", "se", "err", "decoupling_index"])
    return style.finish(fig, path, table, tight=False)


def _pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of points not dominated in (x, y), both larger-is-better."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dominated = [((x >= xi) & (y >= yi) & ((x > xi) | (y > yi))).any() for xi, yi in zip(x, y)]
    return ~np.array(dominated, dtype=bool)


def pareto(measurements: pd.DataFrame, path, families=None, point: str = "neutral", *,
           nested_kinds) -> pd.DataFrame:
    """Diversity–quality trade-off per family (one panel, neutral operating point): conditional diversity D (±1.96 SE, mean over seeds) against conditioning accuracy for every flat probe (sampling sweeps, noise probes, baseline), one colour per probe, each probe's Pareto front (higher accuracy and higher D are both better) drawn as a line through the highlighted points; the star is the real data."""
    rows = _cells(_generators(measurements))
    # nested designs (registry.NESTED_KINDS) measure paths and continuations, not a flat sample
    rows = rows[~rows["kind"].isin(nested_kinds) & (rows["point"] == point)]
    _require(rows, ["conditioning_accuracy", "d", "d_se"], "pareto")
    mean = _seed_mean(rows, ["family", "probe", "kind", "cell"], ["conditioning_accuracy", "d"])
    mean = mean.dropna(subset=["conditioning_accuracy", "d"])
    families = list(dict.fromkeys(mean["family"])) if families is None else [f for f in families if f in set(mean["family"])]
    probes = list(dict.fromkeys(mean["probe"]))
    colours = {p: f"C{i % 10}" for i, p in enumerate(probes)}
    ref = _reference(measurements)
    fig, axes = style.panels(len(families), sharey=True)
    out = []
    for ax, fam in zip(axes.ravel(), families):
        for probe, g in mean[mean["family"] == fam].groupby("probe", sort=False):
            g = g.sort_values("conditioning_accuracy", kind="stable")
            front = _pareto_front(g["conditioning_accuracy"], g["d"])
            c = colours[probe]
            ax.errorbar(g["conditioning_accuracy"], g["d"], yerr=style.Z * g["d_se"].to_numpy(), fmt="o", color=c,
                        alpha=0.35, ms=4, capsize=2)
            ax.plot(g["conditioning_accuracy"][front], g["d"][front], "o-", color=c, ms=5, label=probe)
            out.append(pd.DataFrame({"family": fam, "point": point, "probe": probe, "kind": g["kind"], "cell": g["cell"],
                                     "n_seeds": g["n_seeds"], "x": g["conditioning_accuracy"], "y": g["d"],
                                     "y_err": style.Z * g["d_se"], "on_front": front}))
        if ref is not None and pd.notna(ref.get("conditioning_accuracy")) and pd.notna(ref.get("d")):
            ax.plot(float(ref["conditioning_accuracy"]), float(ref["d"]), "*", color="black", ms=11, label="real data")
        ax.set_title(f"{fam} · {point}", fontsize=9), ax.set_xlabel("conditioning accuracy"), ax.set_ylabel("D (bits)")
    if not families:
        style.note(axes[0, 0], "no flat probe measured")
    style.outside_legend(axes)
    fig.suptitle("Diversity vs quality per probe (mean over seeds; Pareto fronts as lines)", fontsize=10)
    cols = ["family", "point", "probe", "kind", "cell", "n_seeds", "x", "y", "y_err", "on_front"]
    return style.finish(fig, path, pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols))
