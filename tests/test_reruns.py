"""Partial reruns that match intuition, faults that lose nothing, determinism (issue: DVC,
sharing and scale). Each test works on its own copy of the finished smoke run."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from conftest import copy_repository, snakemake

from ibdiv.pipeline.codegraph import code_files

pytestmark = pytest.mark.e2e

FIGURE_RULES = {"figure_examples", "evaluate_tokenizer", "sample_grids", "probe_grids", "diagnostic_figures",
                "oracle_validation", "calibration_figure"}  # every rule whose job draws a figure


@pytest.fixture
def finished(smoke_run, tmp_path):
    """A private copy of the completed smoke run (timestamps and Snakemake metadata kept)."""
    work = tmp_path / "run"
    shutil.copytree(smoke_run, work, symlinks=True)
    return work


def planned(work) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run plans."""
    out = snakemake(work, "--dry-run")
    text = out.stdout + out.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", text):
        m = re.match(r"(?:local)?rule (\S+):\n", block)
        if m and m[1] != "all":
            wildcards = re.search(r"^    wildcards: (.*)$", block, re.M)
            pairs = dict(p.split("=", 1) for p in wildcards[1].split(", ")) if wildcards else {}
            jobs.append((m[1], pairs))
    return jobs


def test_editing_figure_code_plans_only_figure_jobs(finished):
    figures = finished / "src/ibdiv/report/figures/style.py"
    figures.write_text(figures.read_text() + "\n# a real edit: the checksum changes\n")
    rules = Counter(rule for rule, _ in planned(finished))
    assert rules and set(rules) <= FIGURE_RULES, rules
    assert "diagnostic_figures" in rules and "probe_grids" in rules



def test_editing_a_downstream_module_plans_its_importers_and_what_follows(finished):
    """metrics.py is imported (through diagnostics) only by the measuring rules and the
    calibration suite: no tokenizer, training or sampling job reruns."""
    importers = {script.stem for script in (finished / "workflow/scripts").glob("*.py")
                 if finished / "src/ibdiv/measure/metrics.py" in code_files(script, finished / "src")}
    assert importers == {"measure_baseline", "measure_probes", "measure_reference", "oracle_validation",
                         "label_calibration"}
    metrics = finished / "src/ibdiv/measure/metrics.py"
    metrics.write_text(metrics.read_text() + "\n# a real edit: the checksum changes\n")
    # measure_probe (one job per in-house probe) runs the adapter measure_probes.py, as the pretrained
    # backends' grouped measure_probes_<dataset> do (workflow/rules/probes.smk)
    rules = {re.sub(r"^measure_probe$", "measure_probes", rule) for rule, _ in planned(finished)}
    downstream = {"generators_table", "diagnostics_tables", "diagnostic_figures", "findings_tables", "summary",
                  "manifest", "calibration_figure"}
    assert rules == importers | downstream, rules


def test_editing_the_config_validation_plans_nothing(finished):
    """Jobs read their settings from Snakemake's params; the schema and its validation code are
    no job's input."""
    for path in (finished / "src/ibdiv/core/config.py", finished / "workflow/schemas/config.schema.yaml"):
        path.write_text(path.read_text() + "\n# a real edit: the checksum changes\n")
    assert planned(finished) == []

def test_changing_one_probe_sigma_plans_that_probe_and_its_dependents(finished):
    config = yaml.safe_load((finished / "config/smoke.yaml").read_text())
    config["probes"]["codebook_noise"]["sigmas"] = [0.0, 0.5]
    (finished / "config/smoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    jobs = planned(finished)
    # in-house families: one sampling job per probe and run, one measuring job per probe (probes.smk)
    sampled = [w for rule, w in jobs if rule == "sample_probe"]
    measured = [w for rule, w in jobs if rule == "measure_probe"]
    assert len(sampled) == 3 and all(w["probe"] == "codebook_noise" for w in sampled)  # the embedding families
    assert [w["probe"] for w in measured] == ["codebook_noise"]  # one job measures the probe's caches
    rules = {rule for rule, _ in jobs}
    assert rules <= {"sample_probe", "measure_probe", "manifest", "probe_grids", "diagnostics_tables",
                     "diagnostic_figures", "findings_tables", "summary"}, rules
    assert not rules & {"train_prior", "sample_baseline", "measure_baseline", "train_tokenizer"}


def test_changing_coarse_alphabets_plans_only_measuring_and_what_follows(finished):
    """measure.coarse_k (DESIGN §13) is read by the measuring jobs and by the label calibration
    suite (it runs at the run's own alphabets): no training or sampling job may hold `measure`
    whole in its params."""
    config = yaml.safe_load((finished / "config/smoke.yaml").read_text())
    config["measure"]["coarse_k"] = [*config["measure"].get("coarse_k", []), 4]
    (finished / "config/smoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rules = {rule for rule, _ in planned(finished)}
    assert {"measure_reference", "measure_baseline", "measure_probe", "diagnostics_tables", "oracle_validation",
            "label_calibration"} <= rules
    assert rules <= {"measure_reference", "measure_baseline", "measure_probe", "generators_table",
                     "diagnostics_tables", "oracle_validation", "label_calibration", "calibration_figure",
                     "diagnostic_figures", "findings_tables", "summary", "manifest"}, rules


def test_rewriting_unchanged_files_plans_nothing(finished):
    """What a `git checkout` or a copy does: same bytes, new timestamps."""
    later = time.time() + 60
    for path in [*(finished / "src").rglob("*.py"), *(finished / "workflow").rglob("*"), finished / "Snakefile",
                 finished / "config/smoke.yaml"]:
        if path.is_file():
            path.write_bytes(path.read_bytes())
            os.utime(path, (later, later))
    assert planned(finished) == []


def test_a_second_run_killed_and_resumed_gives_byte_identical_results(smoke_run, tmp_path_factory):
    """Determinism and faults in one second run (a whole smoke run is this file's main cost): the
    same config and seed from scratch in a fresh copy, killed as a whole process tree (as an OOM
    kill or power loss would) while the probe caches are being sampled, then resumed. Whatever the
    kill left must be complete, the stale lock must say what to do, and the resumed run must give
    the same bytes as the first, uninterrupted run: every cache, checkpoint and table."""
    again = copy_repository(tmp_path_factory.mktemp("smoke_again"))
    probes = again / "results/shapes/probes"
    original = {p.relative_to(smoke_run): p.read_bytes() for p in (smoke_run / "results/shapes/probes").rglob("samples.npz")}
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"],
                            cwd=again, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(list(probes.rglob("samples.npz"))) < 3:
        time.sleep(0.02)  # let a few caches finish, then kill mid-stream
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = list(probes.rglob("samples.npz"))
    assert 0 < len(written) < len(original), "the kill must land while caches are being written"
    assert all(p.read_bytes() == original[p.relative_to(again)] for p in written)  # none partial
    others = [p.name for p in probes.rglob("*") if p.is_file() and p.name not in ("samples.npz", "measure.json")]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in others), others  # at most a stray temp file
    locked = snakemake(again, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # says what to do
    snakemake(again, "--unlock")
    snakemake(again)
    assert "Nothing to be done" in snakemake(again, "--dry-run").stdout
    compared = []
    for sub in ("data/prepared", "results/shapes", "results/tables"):
        for path in sorted((smoke_run / sub).rglob("*")):
            if path.is_file() and path.suffix in (".npz", ".json", ".csv", ".pt"):
                relative = path.relative_to(smoke_run)
                assert (again / relative).read_bytes() == path.read_bytes(), relative
                compared.append(relative)
    assert (again / "results/summary.json").read_bytes() == (smoke_run / "results/summary.json").read_bytes()
    kinds = Counter(p.suffix for p in compared)
    assert kinds[".npz"] > 20 and kinds[".csv"] > 5 and kinds[".pt"] > 5, kinds
    measured = {p.parent.name for p in compared if p.name == "measure.json"}  # baselines, reference, every probe
    assert measured >= {"samples", "reference", "path_clamp", "decoupling", "enhancement"}, measured


def test_a_damaged_cache_is_set_aside_and_rebuilt_to_the_same_bytes(finished):
    """Truncate a sample cache (a full disk, a half-finished copy): the next run notices that it
    differs from its unit's manifest, keeps it under results/.damaged/ and rebuilds it."""
    cache = finished / "results/shapes/samples/ar/seed0/neutral/baseline.npz"
    original = cache.read_bytes()
    time.sleep(0.01)
    cache.write_bytes(original[: len(original) // 3])
    out = snakemake(finished)
    assert "baseline.npz differs from its manifest" in out.stdout + out.stderr
    assert cache.read_bytes() == original
    assert (finished / "results/.damaged/shapes/samples/ar/seed0/neutral/baseline.npz").read_bytes() == original[: len(original) // 3]
    assert "Nothing to be done" in snakemake(finished, "--dry-run").stdout
