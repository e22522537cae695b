"""dvc.yaml mirrors the Snakemake DAG (no drift; its figure blocks are what scripts/dvc_yaml.py
writes from the figure catalogue), and the record / push / clone / pull cycle gives a colleague
identical numbers without recomputing (README "Sharing results")."""
from __future__ import annotations

import difflib
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from ibdiv.report.figures import catalogue

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)  # snakemake / dvc of this environment
NOT_VERSIONED = ("results/logs/", "results/benchmarks/")  # run diagnostics, not results


def run(cmd, cwd, check=True):
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and out.returncode:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def snakemake_jobs(cwd, *args) -> list[tuple[str, set, set]]:
    """(rule, inputs, outputs) of every job of the current DAG, from a forced dry run
    (recorded metadata would describe the last run, not the current rules)."""
    out = run([sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--nocolor", *args], cwd)
    jobs, current = [], None
    for line in (out.stdout + out.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\S+):$", line):
            current = {"rule": m[1], "input": set(), "output": set()}
            jobs.append(current)
        elif current and (m := re.match(r"^    (input|output): (.*)$", line)):
            current[m[1]] = set(m[2].split(", "))
        elif not line.startswith("    "):
            current = None
    return [(j["rule"], j["input"], j["output"]) for j in jobs if j["rule"] != "all"]


@functools.lru_cache(maxsize=None)
def _posix(path: str) -> str:
    return str(PurePosixPath(path))  # normalised once per path: "a//b/" and "a/./b" are "a/b"


def under(path, roots) -> bool:
    """`path` is one of `roots` or inside one. On normalised strings: PurePosixPath objects for each
    (path, root) pair made a drift check ~40 CPU-s, nearly all of it building them."""
    path = _posix(path)
    return any(path == root or path.startswith(root + "/") for root in map(_posix, roots))


def drift(cwd, jobs) -> list[str]:
    """Everything that makes cwd's dvc.yaml disagree with the Snakemake DAG `jobs` (snakemake_jobs);
    [] when in sync."""
    from dvc.repo import Repo

    made = {f: (rule, inputs) for rule, inputs, outputs in jobs for f in outputs}
    errors, covered, allowing, told = [], set(), {}, set()  # allowing: stage -> its --allowed-rules
    with Repo(str(cwd)) as repo:
        for stage in repo.index.stages:
            deps = {str(d.def_path).rstrip("/") for d in stage.deps}
            outs = {str(o.def_path).rstrip("/") for o in stage.outs}
            argv = shlex.split(stage.cmd)
            if argv[:1] != ["snakemake"] or "--allowed-rules" not in argv or "--" not in argv:
                errors.append(f"{stage.addressing}: cmd must be `snakemake ... --allowed-rules R.. -- T..`")
                continue
            allowed = set(argv[argv.index("--allowed-rules") + 1:argv.index("--")])
            allowing[stage.name] = allowed
            lacking: dict[str, set] = {}  # dep -> the rules that read it
            read = set()
            for f, (rule, inputs) in made.items():
                if not under(f, outs):
                    continue
                covered.add(f)
                read |= inputs
                if rule not in allowed and (stage.name, rule) not in told:
                    told.add((stage.name, rule))
                    errors.append(f"{stage.addressing}: {f} is made by {rule}, not in --allowed-rules: add {rule} to them")
                for x in inputs:
                    if not under(x, outs) and not under(x, deps):
                        lacking.setdefault(x, set()).add(rule)
            if lacking:
                rules = sorted(set().union(*lacking.values()))
                errors.append(f"{stage.addressing}: deps miss {sorted(lacking)} (inputs of {', '.join(rules)}): add "
                              f"{sorted({_spelt(x, stage.name) for x in lacking})} to its deps"
                              + (" (code deps: run `python scripts/dvc_yaml.py`)"
                                 if any(x.startswith(('src/', 'workflow/')) for x in lacking) else ""))
            # a code dep no job reads (a module no script imports) would rerun the stage for nothing
            errors += [f"{stage.addressing}: code dep {d} is read by no job of the stage" for d in sorted(deps)
                       if d.startswith(("src/", "workflow/")) and not any(under(x, {d}) for x in read)]
            for target in argv[argv.index("--") + 1:]:
                if not under(target, outs):
                    errors.append(f"{stage.addressing}: target {target} is not one of its outs")
            for o in outs:
                if not any(under(f, {o}) for f in made):
                    errors.append(f"{stage.addressing}: out {o} is not made by any Snakemake job")
    errors += [f"Snakemake output {f} is not tracked by any DVC stage: {_where_to_add(f, made[f][0], allowing)}"
               for f in sorted(set(made) - covered) if not f.startswith(NOT_VERSIONED)]
    return errors


def _spelt(path: str, addressing: str) -> str:
    """A path as a stage of dvc.yaml spells it: a foreach stage's key as ${key}."""
    _, _, key = addressing.partition("@")
    return "/".join("${key}" if key and part == key else part for part in path.split("/"))


def _where_to_add(path: str, rule: str, allowing: dict) -> str:
    """What to write in dvc.yaml for an output no stage tracks."""
    if rule == "diagnostic_figures":
        return "its figure blocks are not current: run `python scripts/dvc_yaml.py`"
    stages = [s for s, allowed in allowing.items() if rule in allowed]
    own = [s for s in stages if s.partition("@")[2] in path.split("/")] or stages
    if not own:
        return f"add a stage whose --allowed-rules include {rule} and whose outs hold it"
    return f"add {_spelt(path, own[0])} (or a folder above it) to the outs of stage {own[0].partition('@')[0]}"


@pytest.fixture(scope="module")
def dag_jobs():
    """The default DAG's jobs: one forced dry run (~4 CPU-s) read by every drift check of this file;
    they change dvc.yaml only, which Snakemake does not read."""
    return snakemake_jobs(ROOT)


@pytest.mark.slow
def test_dvc_yaml_mirrors_the_snakemake_dag(dag_jobs):
    assert drift(ROOT, dag_jobs) == []


def test_dvc_yaml_figure_blocks_are_the_catalogue_s():
    """The figures' outs and plots are what scripts/dvc_yaml.py writes from the figure catalogue."""
    out = run([sys.executable, "scripts/dvc_yaml.py", "--check"], ROOT, check=False)
    assert out.returncode == 0, out.stderr


def test_dvc_yaml_script_writes_a_new_figure(monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import dvc_yaml
    finally:
        sys.path.pop(0)
    from ibdiv.report.figures import catalogue

    text = (ROOT / "dvc.yaml").read_text()
    new = catalogue.DiagnosticFigure("extra", "responses(measurements, path)", {
        "template": "scatter", "x": "x", "y": "y", "x_label": "a: b", "y_label": "c", "title": "extra figure"})
    monkeypatch.setattr(catalogue, "DIAGNOSTIC_FIGURES", (*catalogue.DIAGNOSTIC_FIGURES, new))
    written = dvc_yaml.render(text)
    added = [line[2:].strip() for line in difflib.ndiff(text.splitlines(), written.splitlines()) if line.startswith("+ ")]
    assert added == ["- results/${key}/figures/diagnostics/extra.pdf", "- results/${key}/figures/diagnostics/extra.png",
                     "- results/${key}/figures/diagnostics/extra.csv:", "template: scatter", "x: x", "y: y",
                     'x_label: "a: b"', "y_label: c", 'title: "${key}: extra figure"']
    stage = yaml.safe_load(written)["stages"]["tables"]["do"]
    assert "results/${key}/figures/diagnostics/extra.pdf" in stage["outs"]
    assert {"results/${key}/figures/diagnostics/extra.csv": {**new.plot, "title": "${key}: extra figure"}} in stage["plots"]


@pytest.mark.slow
def test_drift_is_detected(tmp_path, dag_jobs):
    """The check can fail: an output DVC does not track, a rule a stage does not allow, a missing
    dep, an unread code dep. (A copy of the checkout, so that dvc.yaml can be broken; its DAG is the
    checkout's.)"""
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml", "dvc.yaml"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    dvc_yaml = (tmp_path / "dvc.yaml").read_text()
    broken = dvc_yaml.replace("        - results/${key}/figures/probes\n", "")
    (tmp_path / "dvc.yaml").write_text(broken)
    errors = "\n".join(drift(tmp_path, dag_jobs))
    assert "figures/probes" in errors and "is not tracked by any DVC stage" in errors
    # ... naming the stage and the out to add, as dvc.yaml spells it
    assert "add results/${key}/figures/probes" in errors and "to the outs of stage probes" in errors
    # ... and a code dep that no job of the stage reads (the config validation)
    extra = "      - workflow/scripts/summary.py\n      - src/ibdiv/core/config.py\n"
    (tmp_path / "dvc.yaml").write_text(dvc_yaml.replace(" probe_grids manifest", " manifest")
                                       .replace("      - workflow/scripts/summary.py\n", extra))
    errors = drift(tmp_path, dag_jobs)
    assert any("made by probe_grids, not in --allowed-rules" in e for e in errors)
    assert any(e.endswith("summary: code dep src/ibdiv/core/config.py is read by no job of the stage") for e in errors)
    # the probes stage without the quality reference its measuring jobs read
    probes = dvc_yaml.index("  probes:")
    no_reference = dvc_yaml[:probes] + dvc_yaml[probes:].replace("        - results/${key}/reference\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(no_reference)
    errors = drift(tmp_path, dag_jobs)
    assert any("probes@" in e and "deps miss" in e and "reference/quality.npz" in e for e in errors)
    assert any("add ['results/${key}/reference/quality.npz'" in e and "to its deps" in e for e in errors), errors


def test_metrics_are_flat_numbers_per_dataset_family_point(tmp_path):
    """results/metrics.json (DVC's metrics): means over seeds, numbers only, missing ones left out;
    the verdict as numbers: the label's code, whether the seeds agree, the mean margin."""
    from ibdiv.report.tables import dvc_metrics

    (tmp_path / "stability.csv").write_text(
        "dataset,family,point,stable,kappa_mean,delta_mean,eta_mean,decoupling_index_mean,rho_infl_mean,consensus\n"
        "d,ar,neutral,True,10,11,1.1,0.5,0.2,Balanced\n"
        "d,ar,standard,False,8,7,0.875,,,unstable\n")
    (tmp_path / "classification.csv").write_text(
        "dataset,family,seed,point,label,margin\n"
        "d,ar,0,neutral,Balanced,1.5\nd,ar,1,neutral,Balanced,0.5\n"
        "d,ar,0,standard,Compression-Prioritized,-3.0\nd,ar,1,standard,Unclassified,\n")
    (tmp_path / "generators.csv").write_text(
        "family,seed,point,conditioning_accuracy,heldout_bits_per_token\n"
        "ar,0,neutral,0.8,2.5\nar,1,neutral,0.9,2.7\nar,0,standard,0.95,2.5\nar,1,standard,0.97,2.7\n")
    metrics = dvc_metrics(["d"], [tmp_path / "stability.csv"], [tmp_path / "generators.csv"],
                          classification_paths=[tmp_path / "classification.csv"])
    assert metrics["d"]["ar"]["neutral"] == pytest.approx(
        {"kappa": 10, "delta": 11, "eta": 1.1, "decoupling_index": 0.5, "rho_infl": 0.2,
         "conditioning_accuracy": 0.85, "heldout_bits_per_token": 2.6, "label_code": 0, "stable": 1, "margin": 1.0})
    standard = metrics["d"]["ar"]["standard"]
    assert set(standard) == {"kappa", "delta", "eta", "conditioning_accuracy", "heldout_bits_per_token",
                             "label_code", "stable", "margin"}
    assert (standard["label_code"], standard["stable"], standard["margin"]) == (-2, 0, -3.0)  # NaN margin left out
    json.dumps(metrics, allow_nan=False)


def test_metrics_encode_every_label_as_its_documented_code(tmp_path):
    """Each consensus label becomes the number docs/sharing.md documents, so `dvc metrics diff`
    shows a label that changed; a label without a code is an error, not a silent number."""
    from ibdiv.report.tables import LABEL_CODES, dvc_metrics, label_code
    from ibdiv.verdict import classification

    assert set(LABEL_CODES) == {*classification.LABELS, classification.UNSTABLE}
    documented = {"Balanced": 0, "Compression-Prioritized": 1, "Diversity-Prioritized": 2, "Decoupled": 3,
                  "Unclassified": -1, "unstable": -2}
    assert LABEL_CODES == documented
    docs = (ROOT / "docs/sharing.md").read_text()
    assert all(f"{code} {label}" in docs for label, code in documented.items())
    rows = "".join(f"d,f{i},neutral,{label != 'unstable'},1.0,{label}\n" for i, label in enumerate(documented))
    (tmp_path / "stability.csv").write_text("dataset,family,point,stable,eta_mean,consensus\n" + rows)
    (tmp_path / "generators.csv").write_text("family,seed,point,conditioning_accuracy,heldout_bits_per_token\n")
    metrics = dvc_metrics(["d"], [tmp_path / "stability.csv"], [tmp_path / "generators.csv"])["d"]
    assert {label: metrics[f"f{i}"]["neutral"]["label_code"] for i, label in enumerate(documented)} == documented
    assert [metrics[f"f{i}"]["neutral"]["stable"] for i in range(len(documented))] == [1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="no metrics code"):
        label_code("Balanced-ish")


@pytest.mark.slow
def test_experiment_s_key_value_without_a_file_is_config_yaml_s(tmp_path):
    """`bash scripts/share.sh exp -S key=value` (DVC's docs' spelling, no file) sets config.yaml's
    key: DVC's own default, params.yaml, is absent here (a link to config.yaml would not do: at a
    git revision DVC reads a link's target path, not the config). A tiny repo, no workflow."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts/share.sh", tmp_path / "scripts/share.sh")
    (tmp_path / "config.yaml").write_text("classification:\n  margin_se: 2.0\n  eta_band: 0.02\nseed: 0\n")
    (tmp_path / "label.py").write_text(
        "import json, yaml\nm = yaml.safe_load(open('config.yaml'))['classification']['margin_se']\n"
        "json.dump({'d': {'f': {'neutral': {'label_code': 0 if m > 1.9 else 2}}}}, open('metrics.json', 'w'))\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  label:\n    cmd: python label.py\n    deps: [label.py]\n"
        "    params:\n      - config.yaml:\n          - classification\n    metrics:\n      - metrics.json\n")
    for command in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "t@ibdiv"],
                    ["git", "config", "user.name", "test"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"],
                    "git add -A && git commit -q -m baseline"):
        run(command, tmp_path)
    plain = run(["dvc", "exp", "run", "-S", "classification.margin_se=1.0"], tmp_path, check=False)
    assert plain.returncode != 0  # what the wrapper is for: DVC alone looks for params.yaml
    before = "HEAD"  # each experiment starts from the last one's results, applied to the workspace
    for i, spelling in enumerate((["-S", "classification.margin_se=1.0"], ["-Sclassification.margin_se=1.5"],
                                  ["--set-param=classification.eta_band=0.05"], ["-S", "config.yaml:classification.eta_band=0.03"])):
        run(["bash", "scripts/share.sh", "exp", "-n", f"e{i}", *spelling], tmp_path)
        params = json.loads(run(["dvc", "params", "diff", before, f"e{i}", "--json"], tmp_path).stdout)["config.yaml"]
        key, _, value = spelling[-1].removeprefix("-S").removeprefix("--set-param=").removeprefix("config.yaml:").partition("=")
        assert set(params) == {key} and params[key]["new"] == yaml.safe_load(value), params
        before = f"e{i}"
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "e0", "--json"], tmp_path).stdout)["metrics.json"]
    assert diff == {"d.f.neutral.label_code": {"old": 0, "new": 2, "diff": 2}}
    assert not (tmp_path / "params.yaml").exists()


# --- sharing: record after a run, push, fresh clone, pull, resync -----------------------------------

SHARED = ["Snakefile", "workflow", "src", "profiles", "envs", "scripts", "dvc.yaml", ".gitignore", "pyproject.toml"]


def _repo_with_smoke_run(repo, smoke_run):
    """A fresh git + DVC repo at `repo` with the code, the smoke config as config.yaml and the
    finished smoke run's data, results and Snakemake metadata."""
    for name in SHARED:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, repo / name)
    shutil.copy(ROOT / "config/smoke.yaml", repo / "config.yaml")
    for name in ("data", "results", ".snakemake"):
        shutil.copytree(smoke_run / name, repo / name, symlinks=True)
    for command in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "t@ibdiv"],
                    ["git", "config", "user.name", "test"], ["dvc", "init", "-q"]):
        run(command, repo)
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    return repo


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory, smoke_run):
    """A git + DVC repo holding the finished smoke run (its config as config.yaml, as a user's
    experiment repo would, with the plot template of .dvc/plots), recorded and pushed to a local
    directory remote with scripts/share.sh. Read-only: recording is this file's main cost, so the
    experiment test works on a copy instead of recording its own."""
    repo, remote = _repo_with_smoke_run(tmp_path_factory.mktemp("origin"), smoke_run), tmp_path_factory.mktemp("remote")
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")
    for command in (["dvc", "remote", "add", "-d", "shared", str(remote)], "git add -A && git commit -q -m code",
                    ["bash", "scripts/share.sh", "record", "smoke results"], ["bash", "scripts/share.sh", "push"]):
        run(command, repo)
    return repo, remote


def test_push_clone_pull_gives_identical_numbers_without_recomputing(shared_repo, tmp_path):
    repo, _ = shared_repo
    assert run(["dvc", "status", "-q"], repo, check=False).returncode == 0  # recorded = workspace
    clone = tmp_path / "colleague"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "results/shapes/priors").exists()  # nothing but code and dvc.lock in git
    run(["bash", "scripts/share.sh", "pull"], clone)
    assert json.loads((clone / "results/summary.json").read_text()) == json.loads((repo / "results/summary.json").read_text())
    for unit in ("priors", "samples", "probes"):
        manifest = f"results/shapes/{unit}/manifest.json"
        assert (clone / manifest).read_bytes() == (repo / manifest).read_bytes()
    dry = run([sys.executable, "-m", "snakemake", "--dry-run"], clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_record_refuses_an_incomplete_workspace(shared_repo, tmp_path):
    repo, _ = shared_repo
    clone = tmp_path / "half"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    out = run(["bash", "scripts/share.sh", "record"], clone, check=False)
    assert out.returncode == 1 and "has work left" in out.stderr


# --- experiments: one knob, both runs with their metrics, plots compared (README "Experiments with DVC")

@pytest.fixture
def experiment_repo(shared_repo, tmp_path):
    """A copy of the recorded repo (the finished smoke run as its baseline, as after
    `bash scripts/share.sh record`) that an experiment may change."""
    repo = tmp_path / "experiments"
    shutil.copytree(shared_repo[0], repo, symlinks=True)
    return repo


@pytest.mark.e2e
def test_experiment_loop_changes_one_knob_and_compares_metrics_and_plots(experiment_repo, tmp_path):
    repo = experiment_repo
    # `-S key=value` as in DVC's docs, without the file: share.sh exp reads it as config.yaml's key
    out = run(["bash", "scripts/share.sh", "exp", "-n", "margin1", "-S", "classification.margin_se=1.0"], repo)
    log = out.stdout + out.stderr
    for unchanged in ("data", "tokenizer", "priors", "samples", "probes"):  # nothing is retrained or resampled
        assert f"Stage '{unchanged}@shapes' didn't change, skipping" in log
    assert "Running stage 'tables@shapes'" in log and "Running stage 'summary'" in log

    # dvc exp show: the baseline and the experiment, each with its knob and its flat metrics
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    baseline = next(r for r in shown if r.get("name") == "main")
    experiment = next(rev for e in baseline["experiments"] for rev in e["revs"] if rev.get("name") == "margin1")
    for entry, margin in ((baseline, 2.0), (experiment, 1.0)):
        data = entry["data"]
        assert data["params"]["config.yaml"]["data"]["classification"]["margin_se"] == margin
        metrics = data["metrics"]["results/metrics.json"]["data"]["shapes"]
        assert set(metrics) == {"ar", "mim", "diffusion", "independent", "oracle"}
        neutral = metrics["ar"]["neutral"]
        assert {"kappa", "delta", "eta", "decoupling_index", "rho_infl", "conditioning_accuracy",
                "heldout_bits_per_token", "label_code", "stable", "margin"} <= set(neutral)
        assert all(isinstance(v, (int, float)) for point in metrics.values() for row in point.values() for v in row.values())

    # dvc metrics diff: the labels the knob flipped (a lower margin: Balanced (0) becomes Diversity-Prioritized (2))
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "margin1", "--json"], repo).stdout)["results/metrics.json"]
    flipped = {key: (d["old"], d["new"]) for key, d in diff.items() if key.endswith(".label_code")}
    assert flipped and all(old != new for old, new in flipped.values()), diff
    assert any(old == 0 for old, _ in flipped.values()), flipped  # a narrower margin: fewer Balanced
    text = run(["dvc", "metrics", "diff", "HEAD", "margin1"], repo).stdout
    assert any(re.search(r"\.label_code\s+-?\d+\s+-?\d+\s+-?\d+\s*$", line) for line in text.splitlines()), text

    # the readable table of docs/sharing.md: the knob and what it changed, not ~230 columns
    table = run(["dvc", "exp", "show", "--csv", "--only-changed", "--drop", "Created|data/|results/|src/|workflow/"],
                repo).stdout
    header = table.splitlines()[0].split(",")
    # the headline (robust label or "depends on ...") may flip with the labels it summarises
    headline = {c for c in header if c.endswith((".headline_code", ".robust"))}
    assert set(header) - {"Experiment", "rev", "typ", "parent"} - headline == {"classification.margin_se", *flipped}, header

    # dvc plots diff: training curves and the diagnostics' numbers for both runs, and their figures
    plots = json.loads(run(["dvc", "plots", "diff", "HEAD", "margin1", "--json"], repo).stdout)
    assert not plots.get("errors")
    data = plots["data"]
    curves = data["results/shapes/prior_curves.csv"][0]
    assert curves["type"] == "vega" and curves["revisions"] == ["HEAD", "margin1"]
    assert {row["run"] for row in curves["content"]["data"]["values"]} == {f"{f}/seed0" for f in ("ar", "mim", "diffusion", "independent")}
    for name in catalogue.NAMES:
        assert data[f"results/shapes/figures/diagnostics/{name}.csv"][0]["revisions"] == ["HEAD", "margin1"]
        assert [e["type"] for e in data[f"results/shapes/figures/diagnostics/{name}.png"]] == ["image", "image"]
    html = tmp_path / "plots"
    run(["dvc", "plots", "diff", "HEAD", "margin1", "-o", str(html)], repo)
    assert "prior_curves.csv" in (html / "index.html").read_text()
