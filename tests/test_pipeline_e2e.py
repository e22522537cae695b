"""End to end: the whole Snakemake DAG on the smoke config, in a temporary copy of the
repository; checks the outputs' content, then that a second run has nothing to do."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import snakemake

from ibdiv.data import classifier, datasets, tokens
from ibdiv.report import findings

TABLE = 1e-5  # tables are written with 6 significant digits
pytestmark = pytest.mark.e2e


def test_token_cache_matches_prepared_data(smoke_run):
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())["datasets"]["shapes"]
    raw = np.load(smoke_run / "data/prepared/shapes.npz")
    cache = np.load(smoke_run / "results/shapes/tokens.npz")
    K, grid = cfg["tokenizer"]["codebook_size"], cfg["tokenizer"]["grid"]
    assert cache["tokens"].shape == (cfg["n_images"], grid * grid) and cache["tokens"].dtype == np.uint8
    assert cache["tokens"].max() < K and int(cache["codebook_size"]) == K
    assert (cache["labels"] == raw["labels"]).all() and (cache["layouts"] == raw["layouts"]).all()
    assert (cache["heldout"] == raw["heldout"]).all()
    per_class = np.bincount(raw["labels"][raw["heldout"]]) / np.bincount(raw["labels"])
    assert np.allclose(per_class, cfg["heldout_fraction"], atol=0.02)
    train = tokens.load_token_cache(smoke_run / "results/shapes/tokens.npz", "train")
    assert len(train.labels) == (~raw["heldout"]).sum() and train.layouts is not None


def test_classifier_metrics_are_its_own_predictions(smoke_run):
    metrics = json.loads((smoke_run / "results/shapes/classifier/metrics.json").read_text())
    model = classifier.load_classifier(smoke_run / "results/shapes/classifier/model.pt")
    held = datasets.load_prepared(smoke_run / "data/prepared/shapes.npz", "heldout")
    pred = classifier.predict(model, held.images)
    assert metrics["heldout_accuracy"] == pytest.approx(np.mean(pred["pred"] == held.labels))
    assert metrics["heldout_layout_accuracy"] == pytest.approx(np.mean(pred["layout_pred"] == held.layouts))


def test_tokenizer_evaluation_is_consistent(smoke_run):
    ev = json.loads((smoke_run / "results/shapes/tokenizer/evaluation.json").read_text())
    cache = tokens.load_token_cache(smoke_run / "results/shapes/tokens.npz", "heldout")
    counts = np.bincount(cache.tokens.ravel(), minlength=cache.codebook_size)
    assert ev["codes_used"] == pytest.approx((counts > 0).mean())
    p = counts[counts > 0] / counts.sum()
    assert ev["perplexity"] == pytest.approx(2 ** -(p * np.log2(p)).sum())
    assert 0 < ev["heldout_mse"] < 1
    curve = (smoke_run / "results/shapes/tokenizer/curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) >= 3


def test_figures_logs_and_benchmarks_written(smoke_run):
    from PIL import Image

    for fig in ("examples", "reconstructions"):
        with Image.open(smoke_run / f"results/shapes/figures/tokenizer/{fig}.png") as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
    for rule in ("prepare_data", "train_classifier", "train_tokenizer", "encode_tokens", "evaluate_tokenizer"):
        assert "done in" in (smoke_run / f"results/logs/{rule}/shapes.log").read_text()
        header, row = (smoke_run / f"results/benchmarks/{rule}/shapes.tsv").read_text().splitlines()[:2]
        assert header.split("\t")[0] == "s" and float(row.split("\t")[0]) > 0


def test_generators_table_matches_per_run_files(smoke_run):
    import pandas as pd

    table = pd.read_csv(smoke_run / "results/tables/shapes/generators.csv")
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    expected = {(f, p) for f in cfg["families"] for p in ("neutral", "standard")} | {("oracle", "neutral")}
    assert set(zip(table.family, table.point)) == expected
    runs = json.loads((smoke_run / "results/shapes/samples/measure.json").read_text())["runs"]
    measured = {(r["family"], r["seed"], r["point"]): r["measurements"][0] for r in runs}
    assert len(measured) == len(table)
    for _, row in table.iterrows():
        measure = measured[(row.family, row.seed, row.point)]
        assert row.conditioning_accuracy == pytest.approx(measure["conditioning_accuracy"], rel=TABLE)
        if row.family not in ("oracle",):
            prior = json.loads((smoke_run / f"results/shapes/priors/{row.family}/seed{row.seed}/metrics.json").read_text())
            assert row.heldout_bits_per_token == pytest.approx(prior["heldout_bits_per_token"], rel=TABLE)
    indep = table[table.family == "independent"].learned_structure_bits
    assert (indep.abs() < 1e-9).all()  # the reference family has zero learned structure by definition


def test_baseline_cache_is_compact_and_complete(smoke_run):
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    cache = np.load(smoke_run / "results/shapes/samples/ar/seed0/standard/baseline.npz")
    n = cfg["sampling"]["baseline_per_class"] * 8
    assert cache["tokens"].shape == (n, 16) and cache["tokens"].dtype == np.uint8
    assert np.isfinite(cache["logprobs"]).all() and (cache["logprobs"] <= 0).all()  # AR: exact log-probs


def test_zero_sigma_cells_reproduce_the_baseline(smoke_run):
    """The noise probes' sigma = 0 cell shares the baseline's seed: same tokens, same numbers."""
    for family in ("ar", "mim", "diffusion"):
        base = np.load(smoke_run / f"results/shapes/samples/{family}/seed0/neutral/baseline.npz")
        probe = np.load(smoke_run / f"results/shapes/probes/codebook_noise/{family}/seed0/neutral/samples.npz")
        assert list(probe["cells"]) == ["0.0", "1.0"]
        assert (probe["tokens"][0] == base["tokens"]).all()
    # sigma = 1 changes the AR samples (the 30-step smoke MIM may ignore its inputs; the
    # unit tests prove every family's response on better-trained models)
    ar_probe = np.load(smoke_run / "results/shapes/probes/codebook_noise/ar/seed0/neutral/samples.npz")
    ar_base = np.load(smoke_run / "results/shapes/samples/ar/seed0/neutral/baseline.npz")
    assert (ar_probe["tokens"][1] != ar_base["tokens"]).any()


def test_enhancement_zero_cell_is_the_baseline_cache(smoke_run):
    """Issue 14: the enhancement's (0, 0) cell is copied from the baseline cache, not resampled."""
    run = "{family}/seed0/neutral"
    for family in ("ar", "mim", "diffusion"):
        base = np.load(smoke_run / f"results/shapes/samples/{run.format(family=family)}/baseline.npz")
        enh = np.load(smoke_run / f"results/shapes/probes/enhancement/{run.format(family=family)}/samples.npz")
        i = list(enh["cells"]).index("0.0/0.0")
        assert np.array_equal(enh["tokens"][i], base["tokens"]) and np.array_equal(enh["logprobs"][i], base["logprobs"], equal_nan=True)
        assert enh["tokens"].dtype == base["tokens"].dtype


def test_measurement_and_classification_tables(smoke_run):
    import pandas as pd

    m = pd.read_csv(smoke_run / "results/tables/shapes/measurements.csv")
    ref = m[m.probe == "reference"].iloc[0]
    measure = json.loads((smoke_run / "results/shapes/reference/measure.json").read_text())
    assert ref.d == pytest.approx(measure["d"]["value"], rel=TABLE)
    assert ref.h_z == pytest.approx(measure["h_z"]["value"], rel=TABLE)
    clamp = m[m.probe == "path_clamp"]
    assert {"d_exec", "d_frozen", "d_influence", "influence_null_q95", "committed_fraction"} <= set(clamp.columns)
    assert np.allclose(clamp.d_frozen + clamp.d_influence, clamp.d_path, atol=1e-5)
    assert (m.h_z.dropna() >= 0).all() and (m.h_z.dropna() <= np.log2(16) + 1e-9).all()
    summary = pd.read_csv(smoke_run / "results/tables/shapes/summary.csv")
    labels = pd.read_csv(smoke_run / "results/tables/shapes/classification.csv")
    assert len(labels) == len(summary) == len(m[m.probe == "baseline"])
    merged = labels.merge(summary, on=["family", "seed", "point", "coarse_k"])
    assert len(merged) == len(labels)
    assert np.allclose(merged.kappa, merged.h_z / merged.h_z_data)
    assert np.allclose(merged.delta, merged.d / merged.d_data)
    assert labels.label.isin(["Decoupled", "Diversity-Prioritized", "Compression-Prioritized", "Balanced", "Unclassified"]).all()
    assert labels.rule.str.contains("→").all()
    # every label also at each band; the headline is the robust label or says what it depends on
    assert {"label_eps0", "label_eps0.01", "label_eps0.02"} <= set(labels.columns)
    assert (labels.label == labels["label_eps0.02"]).all()  # the smoke config's band
    stability = pd.read_csv(smoke_run / "results/tables/shapes/classification_stability.csv")
    robust = stability.robust.astype(str).str.lower() == "true"
    assert (stability.headline[robust] == stability.consensus[robust]).all()
    assert stability.headline[~robust].str.startswith("depends on ").all()
    headline = json.loads((smoke_run / "results/summary.json").read_text())["shapes"]["families"]
    metrics = json.loads((smoke_run / "results/metrics.json").read_text())["shapes"]
    for row in stability[stability.coarse_k == 0].itertuples():
        entry = headline[row.family][row.point]
        assert entry["headline"] == row.headline and isinstance(entry["suite_check"], list)
        assert metrics[row.family][row.point]["robust"] == int(entry["robust"])
    findings_labels = pd.read_csv(smoke_run / "results/tables/shapes/findings/labels.csv")
    assert {"headline", "suite check", "label at ε = 0 / 0.01 / 0.02"} <= set(findings_labels.columns)


def test_coarse_alphabets_are_measured_beside_full_k(smoke_run):
    """measure.coarse_k: every cell of every table once per alphabet, the per-position estimands
    at K' (clipped at log2 K'), the pooled H(Z) at full K; labels per alphabet."""
    coarse_k = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())["measure"]["coarse_k"]
    assert coarse_k, "the smoke config should exercise coarse-graining"
    m = pd.read_csv(smoke_run / "results/tables/shapes/measurements.csv")
    keys = ["family", "seed", "point", "probe", "cell"]
    full = m[m.coarse_k == 0].set_index(keys).sort_index()
    for k in coarse_k:
        small = m[m.coarse_k == k].set_index(keys).sort_index()
        assert small.index.equals(full.index)
        assert (small.h_z.dropna() <= np.log2(k) + 1e-9).all()  # H(Z) on K' too: κ' on the alphabet of δ'
        assert small.h_z.notna().equals(full.h_z.notna())
        assert (small.d.dropna() <= np.log2(k) + 1e-9).all() and (small.d_exec.dropna() <= np.log2(k) + 1e-9).all()
    reference = json.loads((smoke_run / "results/shapes/reference/measure.json").read_text())
    assert sorted(int(k) for k in reference["coarse"]) == sorted(coarse_k)
    for table in ("summary", "classification", "classification_stability"):
        t = pd.read_csv(smoke_run / f"results/tables/shapes/{table}.csv")
        assert sorted(set(t.coarse_k)) == sorted({0, *coarse_k})
    oracle = pd.read_csv(smoke_run / "results/tables/shapes/oracle_validation.csv")
    assert sorted(set(oracle.coarse_k)) == sorted({0, *coarse_k})
    summary = json.loads((smoke_run / "results/summary.json").read_text())["shapes"]
    assert sorted(summary["coarse"]) == sorted(map(str, coarse_k))


def test_oracle_validation_table(smoke_run):
    import pandas as pd

    table = pd.read_csv(smoke_run / "results/tables/shapes/oracle_validation.csv")
    split = table[table.coarse_k == 0].set_index("quantity")
    assert split.loc["d_path", "truth"] == pytest.approx(split.loc["d_tot", "truth"] - split.loc["d_exec", "truth"], abs=1e-5)
    assert (split.loc[["d_exec", "d_tot", "d_path"], "committed_fraction"] == 0).all()  # oracle cut: no token committed


def test_report_contains_every_figure(smoke_run):
    snakemake(smoke_run, "--report", "results/report.html", "--report-stylesheet", "workflow/report/style.css")
    html = (smoke_run / "results/report.html").read_text(errors="ignore")
    figures = sorted(p.name for p in (smoke_run / "results/shapes/figures").rglob("*.png"))
    assert figures and all(name in html for name in figures)
    summary = json.loads((smoke_run / "results/summary.json").read_text())
    labels = pd.read_csv(smoke_run / "results/tables/shapes/classification.csv")
    for _, row in labels.iterrows():
        families = summary["shapes"]["families"] if row.coarse_k == 0 else summary["shapes"]["coarse"][str(row.coarse_k)]
        assert row.label in families[row.family][row.point]["labels_per_seed"]
    # it opens on the findings: the landing text embeds the tables (no "file not found" from docutils)
    for caption in ("shapes: strategy labels", "shapes: classification per seed", "shapes: generators",
                    "Constructed generators with known labels"):
        assert caption in html
    assert "Problems with" not in html and "System Message" not in html
    rules = pd.read_csv(smoke_run / "results/tables/shapes/findings/classification.csv").rule
    assert rules.tolist() == [findings.rst_text(rule) for rule in labels.rule]


def test_second_run_has_nothing_to_do(smoke_run):
    assert "Nothing to be done" in snakemake(smoke_run, "-n").stdout


def test_misspelt_config_key_fails_naming_it(smoke_run, tmp_path):
    bad = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    bad["datasets"]["shapes"]["tokenizer"]["codebok_size"] = 8
    (smoke_run / "config.bad.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config.bad.yaml"],
                          cwd=smoke_run, capture_output=True, text=True)
    assert proc.returncode != 0 and "'codebok_size' was unexpected" in proc.stdout + proc.stderr
