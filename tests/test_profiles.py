"""Execution profiles: the SLURM profile is a valid Snakemake profile for this workflow."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # Snakemake dry runs of the whole DAG, 4-13 s each

ROOT = Path(__file__).resolve().parents[1]


def dry_run(workdir, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--configfile", "config/smoke.yaml", *args],
                          cwd=workdir, capture_output=True, text=True)


@pytest.fixture(scope="module")
def slurm_plan():
    """The smoke DAG planned through the SLURM profile on the CPU (one dry run, read by two tests)."""
    return dry_run(ROOT, "--profile", "profiles/slurm", "--forceall")


def test_slurm_profile_dry_run_plans_every_rule_with_its_resources(slurm_plan):
    out = slurm_plan
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    assert "Using profiles profiles/slurm" in text
    train = re.search(r"rule train_prior:\n(?:    .*\n)*?    resources: (.*)\n", text)
    assert train and "runtime=60" in train[1] and "mem_mb=4000" in train[1]


def test_slurm_profile_executor_is_validated(tmp_path):
    """The check above can fail: a misspelt executor is rejected by the dry run."""
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml", "config"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    profile = tmp_path / "profiles/slurm/config.yaml"
    profile.write_text(profile.read_text().replace("executor: slurm", "executor: slurmx"))
    out = dry_run(tmp_path, "--profile", "profiles/slurm")
    assert out.returncode != 0 and "slurmx" in out.stderr


def test_device_cuda_places_training_and_sampling_jobs_on_a_gpu(slurm_plan):
    """`--config device=cuda` (an execution setting): the jobs that compute with the priors
    declare one `gpu` (the SLURM plugin turns it into --gpus); nothing else, not the oracle."""
    out = dry_run(ROOT, "--profile", "profiles/slurm", "--forceall", "--config", "device=cuda")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    jobs = re.findall(r"rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)\n    resources: (.*)\n", text)
    on_gpu = {(rule, "family=oracle" in wildcards) for rule, wildcards, resources in jobs if "gpu=1" in resources}
    assert on_gpu == {("train_prior", False), ("sample_baseline", False), ("sample_probe", False)}, on_gpu
    assert "gpu=1" not in slurm_plan.stdout  # cpu: the default


def test_unknown_device_fails_validation_naming_it():
    out = dry_run(ROOT, "--config", "device=gpu")
    assert out.returncode != 0 and "device: 'gpu' is not one of" in out.stdout + out.stderr  # the key, then the problem


def test_sampling_and_probe_measuring_are_grouped_on_pretrained_datasets_only():
    """workflow/rules/probes.smk: on a dataset with a pretrained backend one job per run draws its
    baseline and every probe of the run (the in-house structure reference `independent` too), and one
    job per dataset measures the probes (the in-house smoke DAG keeps one job per probe and run:
    tests/test_reruns.py). Each cache has exactly one planned job (no file made by two rules)."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--configfile",
                          "config/pretrained-smoke.yaml"], cwd=ROOT, capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    jobs = re.findall(r"rule (\w+):\n(?:    .*\n)*?    output: (.*)\n(?:    .*\n)*?    wildcards: (.*)\n", text)
    runs = {rule: w for rule, _, w in jobs if rule.startswith("sample_run_")}
    assert set(runs) == {f"sample_run_{family}_{point}" for family in ("amused", "llamagen", "vq_diffusion", "independent")
                         for point in ("neutral", "standard")}, set(runs)
    assert not any(rule in ("sample_probe", "sample_baseline", "measure_probe") for rule, _, _ in jobs)
    assert {rule for rule, _, _ in jobs if rule.startswith("measure_probes_")} == {
        "measure_probes_amused_tiny", "measure_probes_llamagen_tiny", "measure_probes_vq_diffusion_tiny"}
    outputs = {(rule, w): outs.split(", ") for rule, outs, w in jobs if rule.startswith("sample_run_")}
    caches = [path for paths in outputs.values() for path in paths]
    assert len(caches) == len(set(caches))
    for (rule, _), paths in outputs.items():  # the run's baseline, then its probes (none at the standard point)
        assert paths[0].endswith("/baseline.npz") and all(path.endswith("/samples.npz") for path in paths[1:])
        assert (len(paths) > 1) == rule.endswith("_neutral"), (rule, paths)
