"""Tests for the result figures in ibdiv.report.figures: each writes PNG + PDF + CSV, the CSV holds exactly
the numbers drawn (checked against the source table), and families that could not be measured
(all-NaN rows) are skipped without error. Tables are synthetic, shaped like the pipeline's
measurements.csv / summary.csv / classification.csv and round-tripped through CSV so the dtypes
match what the pipeline reads back."""

import inspect
import os
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ibdiv.report.figures import catalogue
from ibdiv.report.figures import diagnostic_plots as F
from ibdiv.core import registry
from ibdiv.core.registry import NESTED_KINDS

Z = 1.96
SEEDS = (0, 1)
MEASURED = ("ar", "mim", "oracle")
BROKEN = "broken"  # a family that cannot be measured or perturbed: every estimand NaN


def _flat(rng, nan=False):
    keys = ["h_z", "h_pos", "d", "conditioning_accuracy"]
    vals = {k: rng.uniform(0.5, 4.0) if k != "conditioning_accuracy" else rng.uniform(0.3, 0.95) for k in keys}
    vals.update({f"{k}_se": rng.uniform(0.01, 0.1) for k in ("h_z", "h_pos", "d")})
    return {k: (np.nan if nan else v) for k, v in vals.items()}


def _nested(rng, fam, cell, nan=False):
    vals = {"committed_fraction": 0.0 if fam == "oracle" else cell + rng.uniform(0, 0.05),
            "influence_clears": bool(rng.integers(2)), "layout_commitment_clears": bool(rng.integers(2))}
    for k in ("d_exec", "d_frozen", "d_influence", "d_influence_excess", "d_tot", "layout_commitment_mi_minus_null_mean"):
        vals[k], vals[f"{k}_se"] = rng.uniform(-0.1, 2.0), rng.uniform(0.01, 0.1)
    if nan:
        vals = {k: np.nan for k in vals}
    return vals


def _roundtrip(rows, tmp_path, name):
    path = tmp_path / f"{name}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return pd.read_csv(path)


@pytest.fixture
def measurements(tmp_path):
    rng = np.random.default_rng(0)
    rows = [dict(family="data", seed=-1, point=np.nan, probe="reference", kind="flat", cell=np.nan,
                 h_z=2.0, h_z_se=0.05, h_pos=1.8, h_pos_se=0.04, d=1.0, d_se=0.03, conditioning_accuracy=0.9)]
    for fam in (*MEASURED, BROKEN):
        nan = fam == BROKEN
        for seed in SEEDS:
            for point in ("neutral", "standard"):
                rows.append(dict(family=fam, seed=seed, point=point, probe="baseline", kind="flat", cell=np.nan,
                                 **_flat(rng, nan)))
            if fam == "oracle":
                rows.append(dict(family=fam, seed=seed, point="neutral", probe="path_clamp", kind="path_clamp",
                                 cell=0.25, **_nested(rng, fam, 0.25)))
                continue
            # temperature sweep without the 1.0 cell: the baseline must be added there
            for t in (0.5, 2.0):
                rows.append(dict(family=fam, seed=seed, point="neutral", probe="temperature", kind="sweep", cell=t,
                                 **_flat(rng, nan)))
            # condition_noise lacks sigma = 0 (baseline added); codebook_noise has its own sigma = 0 row
            for probe, sigmas in (("condition_noise", (0.5, 1.0)), ("codebook_noise", (0.0, 1.0))):
                for s in sigmas:
                    rows.append(dict(family=fam, seed=seed, point="neutral", probe=probe, kind="noise", cell=s,
                                     **_flat(rng, nan)))
            for f in (0.125, 0.25, 0.5):
                rows.append(dict(family=fam, seed=seed, point="neutral", probe="path_clamp", kind="path_clamp",
                                 cell=f, **_nested(rng, fam, f, nan)))
            for cell in ("none", "condition_before_cut", "codebook_after_cut"):
                rows.append(dict(family=fam, seed=seed, point="neutral", probe="decoupling", kind="decoupling",
                                 cell=cell, conditioning_accuracy=0.5, d=9.9, **_nested(rng, fam, 0.25, nan)))
    return _roundtrip(rows, tmp_path, "measurements")


@pytest.fixture
def summary(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for fam in (*MEASURED, BROKEN):
        for seed in SEEDS:
            for point in ("neutral", "standard"):
                row = dict(dataset="ds", family=fam, seed=seed, point=point, d=1.0)
                for r in ("i2", "i3"):
                    for c in ("path", "exec"):
                        measured = point == "neutral" and fam != BROKEN
                        row[f"r_{r}_{c}"] = rng.uniform(-0.5, 0.5) if measured else np.nan
                        row[f"r_{r}_{c}_se"] = rng.uniform(0.01, 0.05) if measured else np.nan
                rows.append(row)
    return _roundtrip(rows, tmp_path, "summary")


@pytest.fixture
def classification(tmp_path):
    rows = []
    for fam in (*MEASURED, BROKEN):
        for seed in SEEDS:
            for point in ("neutral", "standard"):
                label = "Balanced"
                if fam == "ar" and point == "neutral":
                    label = ("Diversity-Prioritized", "Balanced")[seed]
                rows.append(dict(family=fam, seed=seed, point=point, label=label, eta=1.0))
    return _roundtrip(rows, tmp_path, "classification")


def written(path, table):
    """PNG, PDF and CSV exist and are what they claim; the CSV equals the returned table."""
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    csv = pd.read_csv(path.with_suffix(".csv"))
    assert list(csv.columns) == list(table.columns)
    assert len(csv) == len(table)
    return csv


def numeric_cells(measurements):
    """The source table with its cell column as numbers (the CSV reads it as text: 'none', '0.5')."""
    return measurements.assign(cell=pd.to_numeric(measurements["cell"], errors="coerce"))


def seed_mean(rows, col):
    """Mean over seeds and the SE of that mean, as the figures define it."""
    v, se = rows[col].astype(float), rows[f"{col}_se"].astype(float)
    return v.mean(), np.sqrt((se ** 2).sum()) / len(v)


def test_ib_plane_plots_baseline_rows_and_reference(measurements, classification, tmp_path):
    path = tmp_path / "fig" / "ib_plane.png"
    table = F.ib_plane(measurements, classification, path)
    csv = written(path, table)
    assert BROKEN not in set(csv["family"])
    base = measurements[measurements["probe"] == "baseline"]
    for panel, xcol in (("H(Z)", "h_z"), ("H_pos", "h_pos")):
        got = csv[(csv["panel"] == panel) & (csv["family"] != "data")]
        merged = got.merge(base, on=["family", "seed", "point"], validate="one_to_one")
        assert len(merged) == len(MEASURED) * len(SEEDS) * 2
        np.testing.assert_allclose(merged["x"], merged[xcol])
        np.testing.assert_allclose(merged["y"], merged["d"])
        np.testing.assert_allclose(merged["y_err"], Z * merged["d_se"])
        np.testing.assert_allclose(merged["x_err"], Z * merged[f"{xcol}_se"])
        ref = csv[(csv["panel"] == panel) & (csv["family"] == "data")]
        assert len(ref) == 1 and ref["y"].iloc[0] == 1.0
    labels = dict(zip(zip(csv["family"], csv["point"]), csv["label"]))
    assert labels[("ar", "neutral")] == "unstable: Diversity-Prioritized/Balanced"
    assert labels[("mim", "standard")] == "Balanced"


def test_iso_quality_means_over_seeds_and_adds_baseline(measurements, tmp_path):
    path = tmp_path / "iso.png"
    csv = written(path, F.iso_quality(measurements, path, "temperature"))
    measurements = numeric_cells(measurements)
    assert BROKEN not in set(csv["family"])
    assert "oracle" not in set(csv["family"])  # no sweep measured for it
    ar = csv[(csv["family"] == "ar") & (csv["point"] == "neutral")].set_index("cell")
    assert list(ar.index) == [0.5, 1.0, 2.0]
    sweep = measurements[(measurements["family"] == "ar") & (measurements["probe"] == "temperature")]
    base = measurements[(measurements["family"] == "ar") & (measurements["probe"] == "baseline")
                        & (measurements["point"] == "neutral")]
    for cell, rows in ((0.5, sweep[sweep["cell"] == 0.5]), (1.0, base)):
        d, se = seed_mean(rows, "d")
        assert ar.at[cell, "y"] == pytest.approx(d)
        assert ar.at[cell, "y_err"] == pytest.approx(Z * se)
        assert ar.at[cell, "x"] == pytest.approx(rows["conditioning_accuracy"].mean())
    assert csv[csv["family"] == "data"]["x"].tolist() == [0.9]


def test_renamed_temperature_probe_still_draws_iso_quality(measurements, tmp_path):
    """The figure's sweep is found by kind and knob (as diagnostic_figures.py does), not by name."""
    probes = {"top_k": {"kind": "sweep", "knob": "top_k", "values": [4]},
              "heat": {"kind": "sweep", "knob": "temperature", "values": [0.5, 2.0]}}
    renamed = measurements.replace({"probe": {"temperature": "heat"}})
    assert registry.iso_quality_probe(probes) == "heat"
    path = tmp_path / "iso.png"
    csv = written(path, F.iso_quality(renamed, path, registry.iso_quality_probe(probes)))
    assert set(csv["family"]) == {"ar", "mim", "data"}
    F.iso_quality(measurements, tmp_path / "before.png", "temperature")  # the same numbers as before the rename
    pd.testing.assert_frame_equal(csv, pd.read_csv(tmp_path / "before.csv"))


def test_allocation_matches_source_and_marks_null(measurements, tmp_path):
    path = tmp_path / "alloc.png"
    csv = written(path, F.allocation(measurements, path, "path_clamp"))
    measurements = numeric_cells(measurements)
    assert BROKEN not in set(csv["family"])
    src = measurements[measurements["probe"] == "path_clamp"]
    names = {"D_exec": "d_exec", "D_frozen": "d_frozen", "D_influence − null mean": "d_influence_excess"}
    assert set(csv["component"]) == set(names)
    merged = csv.merge(src, on=["family", "seed", "point", "cell"], validate="many_to_one")
    assert len(merged) == 3 * len(src[src["family"] != BROKEN])
    for comp, col in names.items():
        m = merged[merged["component"] == comp]
        np.testing.assert_allclose(m["y"], m[col])
        np.testing.assert_allclose(m["y_err"], Z * m[f"{col}_se"])
        np.testing.assert_allclose(m["x"], m["committed_fraction"])
    infl = merged[merged["component"] == "D_influence − null mean"]
    assert (infl["hollow"] == ~infl["influence_clears"].astype(bool)).all()
    assert not merged[merged["component"] != "D_influence − null mean"]["hollow"].any()
    assert (merged[merged["family"] == "oracle"]["x"] == 0).all()


def test_layout_commitment_draws_oracle_as_line(measurements, tmp_path):
    path = tmp_path / "layout.png"
    csv = written(path, F.layout_commitment(measurements, path, "path_clamp"))
    measurements = numeric_cells(measurements)
    assert BROKEN not in set(csv["family"])
    col = "layout_commitment_mi_minus_null_mean"
    merged = csv.merge(measurements[measurements["probe"] == "path_clamp"],
                       on=["family", "seed", "point", "cell"], validate="one_to_one")
    np.testing.assert_allclose(merged["y"], merged[col])
    np.testing.assert_allclose(merged["y_err"], Z * merged[f"{col}_se"])
    assert (merged["hollow"] == ~merged["layout_commitment_clears"].astype(bool)).all()
    assert set(csv.loc[csv["family"] == "oracle", "drawn_as"]) == {"line"}
    assert set(csv.loc[csv["family"] != "oracle", "drawn_as"]) == {"points"}


def test_responses_sigma_zero_is_baseline(measurements, tmp_path):
    path = tmp_path / "resp.png"
    csv = written(path, F.responses(measurements, path))  # probes found by kind "noise"
    measurements = numeric_cells(measurements)
    assert set(csv["probe"]) == {"condition_noise", "codebook_noise"}
    assert BROKEN not in set(csv["family"])
    base = measurements[(measurements["family"] == "mim") & (measurements["probe"] == "baseline")
                        & (measurements["point"] == "neutral")]
    for quantity in ("h_z", "d", "conditioning_accuracy"):
        rows = csv[(csv["family"] == "mim") & (csv["quantity"] == quantity)]
        cond = rows[rows["probe"] == "condition_noise"].set_index("x")
        assert list(cond.index) == [0.0, 0.5, 1.0]
        assert cond.at[0.0, "y"] == pytest.approx(base[quantity].mean())
        code = rows[rows["probe"] == "codebook_noise"].set_index("x")
        assert list(code.index) == [0.0, 1.0]  # its own sigma = 0 row, no duplicate baseline
        own = measurements[(measurements["family"] == "mim") & (measurements["probe"] == "codebook_noise")
                           & (measurements["cell"] == 0.0)]
        assert code.at[0.0, "y"] == pytest.approx(own[quantity].mean())
    d = csv[(csv["family"] == "ar") & (csv["quantity"] == "d") & (csv["probe"] == "condition_noise")].set_index("x")
    src = measurements[(measurements["family"] == "ar") & (measurements["probe"] == "condition_noise")
                       & (measurements["cell"] == 1.0)]
    mean, se = seed_mean(src, "d")
    assert d.at[1.0, "y"] == pytest.approx(mean) and d.at[1.0, "y_err"] == pytest.approx(Z * se)


def test_decoupling_matrices_values_and_delta(summary, tmp_path):
    path = tmp_path / "dec.png"
    csv = written(path, F.decoupling_matrices(summary, path))
    assert set(zip(csv["family"], csv["point"])) == {(f, "neutral") for f in MEASURED}
    for fam in MEASURED:
        src = summary[(summary["family"] == fam) & (summary["point"] == "neutral")]
        got = csv[csv["family"] == fam].set_index(["row", "col"])
        grid = {}
        for r in ("i2", "i3"):
            for c, name in (("path", "D_path"), ("exec", "D_exec")):
                mean, se = seed_mean(src, f"r_{r}_{c}")
                grid[r, c] = mean
                assert got.at[(r, name), "value"] == pytest.approx(mean)
                assert got.at[(r, name), "se"] == pytest.approx(se)
        delta = (abs(grid["i2", "path"]) + abs(grid["i3", "exec"])) / sum(abs(v) for v in grid.values())
        assert got["decoupling_index"].to_numpy() == pytest.approx(delta)
        assert (got["n_seeds"] == len(SEEDS)).all()


def test_pareto_front_flags():
    x = np.array([0.1, 0.2, 0.3, 0.2, 0.3])
    y = np.array([3.0, 2.0, 1.0, 1.0, 1.0])
    assert F._pareto_front(x, y).tolist() == [True, True, True, False, True]


def test_pareto_flat_probes_only(measurements, tmp_path):
    path = tmp_path / "pareto.png"
    csv = written(path, F.pareto(measurements, path, nested_kinds=NESTED_KINDS))
    measurements = numeric_cells(measurements)
    assert set(csv["kind"]) == {"flat", "sweep", "noise"}  # nested designs excluded by kind
    assert set(csv["family"]) == set(MEASURED)
    assert set(csv["point"]) == {"neutral"}
    for (fam, probe), g in csv.groupby(["family", "probe"]):
        assert g["on_front"].tolist() == F._pareto_front(g["x"], g["y"]).tolist()
        src = measurements[(measurements["family"] == fam) & (measurements["probe"] == probe)
                           & (measurements["point"] == "neutral")]
        for _, row in g.iterrows():
            rows = src[src["cell"].isna()] if np.isnan(row["cell"]) else src[src["cell"] == row["cell"]]
            mean, se = seed_mean(rows, "d")
            assert row["y"] == pytest.approx(mean) and row["y_err"] == pytest.approx(Z * se)
    only = F.pareto(measurements, tmp_path / "p2.png", families=["mim", BROKEN], nested_kinds=NESTED_KINDS)
    assert set(only["family"]) == {"mim"}


def test_unmeasured_tables_give_empty_figures(measurements, summary, classification, tmp_path):
    """A run where nothing but the data reference and an unperturbable family was measured."""
    only = measurements[measurements["family"].isin(["data", BROKEN])]
    calls = {
        "ib_plane": lambda p: F.ib_plane(only, classification, p),
        "iso_quality": lambda p: F.iso_quality(only, p, "temperature"),
        "allocation": lambda p: F.allocation(only, p, "path_clamp"),
        "layout_commitment": lambda p: F.layout_commitment(only, p, "path_clamp"),
        "responses": lambda p: F.responses(only, p),
        "decoupling_matrices": lambda p: F.decoupling_matrices(summary[summary["family"] == BROKEN], p),
        "pareto": lambda p: F.pareto(only, p, nested_kinds=NESTED_KINDS),
    }
    for name, call in calls.items():
        path = tmp_path / f"{name}.png"
        table = call(path)
        csv = written(path, table)
        assert BROKEN not in set(csv.get("family", pd.Series(dtype=object))), name
    # a dataset without layout labels has no layout columns at all: nothing to draw
    no_layouts = only.drop(columns=[c for c in only.columns if c.startswith("layout_")])
    assert F.layout_commitment(no_layouts, tmp_path / "bare_layout.png", "path_clamp").empty


@pytest.mark.parametrize("dropped, draw", [
    ("d_exec", lambda m, p: F.allocation(m, p, "path_clamp")),
    ("conditioning_accuracy", lambda m, p: F.iso_quality(m, p, "temperature")),
    ("d_se", lambda m, p: F.pareto(m, p, nested_kinds=NESTED_KINDS)),
    ("h_pos", lambda m, p: F.ib_plane(m, None, p)),
    ("h_z_se", lambda m, p: F.responses(m, p)),
])
def test_a_missing_column_raises_instead_of_drawing_not_measured(measurements, tmp_path, dropped, draw):
    """Rows to draw without the column they are drawn from: a renamed estimand, not an unmeasured one."""
    with pytest.raises(KeyError, match=dropped):
        draw(measurements.drop(columns=[dropped]), tmp_path / "figure.png")


def test_image_grid_tiles_images_row_major_with_gaps():
    from ibdiv.report.figures.grids import image_grid

    images = np.stack([np.full((3, 2), v / 10) for v in range(6)])
    fig = image_grid(images, rows=2, cols=3, row_labels=["a", "b"])
    mosaic = fig.axes[0].get_images()[0].get_array()
    assert mosaic.shape == (2 * 4 - 1, 3 * 3 - 1)
    for i in range(6):
        r, c = divmod(i, 3)
        assert (mosaic[r * 4: r * 4 + 3, c * 3: c * 3 + 2] == np.float32(i / 10)).all()
    assert (mosaic[3, :] == 1).all() and (mosaic[:, 2] == 1).all()  # white gaps between tiles
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]


def test_sample_grid_decodes_only_the_shown_samples(tmp_path):
    from ibdiv.report.figures.grids import sample_grid

    decoded = []

    def decode(tokens):
        decoded.append(len(tokens))
        return np.zeros((len(tokens), 4, 4), dtype=np.float32)

    labels = np.repeat(np.arange(3), 50)
    sample_grid(decode, np.zeros((150, 16), dtype=np.uint8), labels, tmp_path / "g.png", per_class=5)
    assert decoded == [15] and (tmp_path / "g.png").stat().st_size > 0


# --- the figure catalogue: one row per diagnostic figure -------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_every_catalogued_figure_has_its_function_arguments_and_caption():
    """A row's call binds to its diagnostic_plots function, passes only arguments the adapter
    gives, and its caption workflow/report/<name>.rst exists (the report rule reads it)."""
    assert len(set(catalogue.NAMES)) == len(catalogue.NAMES)
    for figure in catalogue.DIAGNOSTIC_FIGURES:
        function, args, keywords = catalogue.call(figure)
        inspect.signature(getattr(F, function)).bind(*args, **keywords)
        assert (ROOT / "workflow" / "report" / f"{figure.name}.rst").is_file(), figure.name
        assert {"template", "x", "y", "x_label", "y_label", "title"} <= set(figure.plot), figure.name
    with pytest.raises(ValueError, match="not among"):
        catalogue.call(catalogue.DiagnosticFigure("x", "responses(measurements, path, temperature)"))


@pytest.mark.slow
def test_the_adapter_draws_every_catalogued_figure(measurements, summary, classification, tmp_path, monkeypatch):
    """workflow/scripts/diagnostic_figures.py: one PNG + PDF + CSV per row, drawn by the row's call."""
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # job() sets it
    tables = {}
    for name, df in (("measurements", measurements), ("summary", summary), ("classification", classification)):
        tables[name] = tmp_path / f"{name}_full.csv"
        df.assign(coarse_k=0).to_csv(tables[name], index=False)
    probes = {"temperature": {"kind": "sweep", "knob": "temperature"}, "path_clamp": {"kind": "path_clamp"}}
    out = SimpleNamespace(**{n: tmp_path / "figures" / f"{n}.png" for n in catalogue.NAMES})
    smk = SimpleNamespace(input=SimpleNamespace(**tables), output=out, params=SimpleNamespace(probes=probes),
                          log=[str(tmp_path / "figures.log")], threads=1)
    runpy.run_path(str(ROOT / "workflow" / "scripts" / "diagnostic_figures.py"), init_globals={"snakemake": smk})
    for name in catalogue.NAMES:
        written(getattr(out, name), pd.read_csv(getattr(out, name).with_suffix(".csv")))
    direct = F.layout_commitment(measurements, tmp_path / "direct.png", "path_clamp")
    pd.testing.assert_frame_equal(pd.read_csv(out.layout_commitment.with_suffix(".csv")),
                                  pd.read_csv(tmp_path / "direct.csv"))
    assert not direct.empty
