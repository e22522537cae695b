"""Every job that loads a backend is sized before it runs (issue 25; ibdiv.pipeline.sizing): a tiny
aMUSEd with a released-size 64 x 64 token grid and the tiny VQ-Diffusion, under a low memory budget
(Snakemake refuses to start, naming the key to lower) and an adequate one (it plans, and prints the
estimator's numbers); batch sizes and the held-out score's chunk derived from the budget."""
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, copy_repository

from ibdiv.pipeline import sizing

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.pretrained]

GIB = sizing.GIB


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from ibdiv.backends import amused, vq_diffusion

    root = tmp_path_factory.mktemp("sized")
    return {"amused": amused.save_tiny_checkpoint(root / "amused64", grid=64),
            "vq_diffusion": vq_diffusion.save_tiny_checkpoint(root / "vqd")}


def config_with(folders, **resources) -> dict:
    """The pretrained smoke config on the two prebuilt text-backend folders (LlamaGen left out)."""
    config = yaml.safe_load((ROOT / "config/pretrained-smoke.yaml").read_text())
    del config["datasets"]["llamagen_tiny"], config["families"]["llamagen"]
    config["datasets"]["amused_tiny"]["checkpoint"] = str(folders["amused"])
    config["datasets"]["vq_diffusion_tiny"]["checkpoint"] = str(folders["vq_diffusion"])
    if resources:
        config["resources"] = resources
    return config


def test_sizes_come_from_config_files_and_weight_headers(folders):
    from ibdiv.backends import amused, vq_diffusion

    s = sizing.read_sizes("amused", folders["amused"])
    assert (s.grid, s.codes, s.width, s.attention_grid, s.steps) == (64, 8, 8, 32, 12)
    model = amused.load_checkpoint(folders["amused"], prompts=["a white disc"])
    assert s.transformer_params == sum(p.numel() for p in model.transformer.parameters())
    assert s.code_width == model.tok_emb.weight.shape[1]  # the table codebook noise copies per sample
    v = sizing.read_sizes("vq_diffusion", folders["vq_diffusion"])
    assert (v.grid, v.codes, v.steps, v.logit_bytes) == (vq_diffusion.TINY_GRID, vq_diffusion.TINY_CODES, 100, 8)
    assert sizing.read_sizes("llamagen", folders["amused"]) is None  # not a LlamaGen folder (no llamagen.json): not sized


def test_guidance_code_tables_and_nested_designs_raise_the_estimate(folders):
    s = sizing.read_sizes("amused", folders["amused"])
    plain, guided = sizing.per_sample_bytes(s, False, False), sizing.per_sample_bytes(s, True, False)
    assert guided == 2 * plain and sizing.per_sample_bytes(s, False, True) > plain
    plan = sizing.plan_resources(config_with(folders)).datasets["amused_tiny"]
    jobs = {job.job: job for job in plan.jobs}
    assert jobs["sample_baseline/standard"].guided and not jobs["sample_baseline/neutral"].guided  # cfg 10 vs 1
    assert jobs["sample_probe/path_clamp/neutral"].samples == 4 * 6 * 3  # conditions x paths x continuations
    # the decoupling probe perturbs the codebook after the cut (I3); the sweep and condition noise do not
    assert jobs["sample_probe/decoupling/neutral"].code_tables and not jobs["sample_probe/temperature/neutral"].code_tables
    assert not jobs["sample_probe/condition_noise/neutral"].code_tables
    assert jobs["sample_baseline/standard"].flops_per_sample == 2 * jobs["sample_baseline/neutral"].flops_per_sample


def test_a_low_budget_names_the_keys_to_lower(folders):
    config = config_with(folders, memory_gib=0.5)
    with pytest.raises(sizing.ResourceBudgetError) as err:
        sizing.check_resources(config)
    message = str(err.value)
    assert "datasets.amused_tiny (64x64 grid, K 8)" in message and "resources.memory_gib=0.5" in message
    fit = int(message.split("lower sampling.batch_size to at most ")[1].split(" ")[0])
    assert 1 <= fit < config["sampling"]["batch_size"]
    assert "vq_diffusion_tiny" not in message  # its 6 x 6 grid fits
    config["sampling"]["batch_size"] = fit  # the remedy it names works
    sizing.check_resources(config)


def test_a_nested_design_too_large_for_one_call_is_split_by_the_budget(folders):
    """4 conditions x 6 paths x 3 continuations = 72 continuations do not fit 0.15 GiB in one call
    at the 64 x 64 grid: they are drawn nested_batch at a time, and every job then fits."""
    config = config_with(folders, memory_gib=0.15)
    config["sampling"]["batch_size"] = 1
    plan = sizing.check_resources(config).datasets["amused_tiny"]
    assert plan.nested_batch is not None and 1 <= plan.nested_batch < 72
    jobs = {job.job: job for job in plan.jobs}
    assert jobs["sample_probe/path_clamp/neutral"].samples == plan.nested_batch
    assert all(job.peak_bytes <= 0.15 * GIB for job in plan.jobs)
    roomy = sizing.check_resources(config_with(folders, memory_gib=8)).datasets["amused_tiny"]
    assert roomy.nested_batch is None  # all in one call: the draws of an unsplit run


def test_auto_batch_and_score_chunk_follow_the_budget(folders):
    batches, rows = [], []
    for budget in (0.25, 1.0, 4.0):
        config = config_with(folders, memory_gib=budget)
        config["sampling"]["batch_size"] = "auto"
        config["probes"] = {k: v for k, v in config["probes"].items() if k not in ("path_clamp", "decoupling")}
        plan = sizing.check_resources(config).datasets["amused_tiny"]
        assert all(job.peak_bytes <= budget * GIB for job in plan.jobs)
        batches.append(plan.batch)
        rows.append(plan.score_rows)
    assert batches[0] < batches[1] < batches[2] and rows[0] < rows[1] < rows[2]
    unbudgeted = sizing.plan_resources(config_with(folders)).datasets["amused_tiny"]
    assert unbudgeted.score_rows is None and unbudgeted.batch == 256  # the config's own batch size


def test_throughput_only_changes_the_printed_time(folders):
    slow = sizing.plan_resources(config_with(folders, tflops=1.0)).lines
    fast = sizing.plan_resources(config_with(folders, tflops=100.0)).lines
    assert slow != fast and [line.split("GFLOP")[0] for line in slow] == [line.split("GFLOP")[0] for line in fast]


@pytest.mark.slow
def test_snakemake_start_refuses_a_low_budget_and_logs_the_estimates(tmp_path, folders):
    copy_repository(tmp_path)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "-n", "--configfile"]
    (tmp_path / "low.yaml").write_text(yaml.safe_dump(config_with(folders, memory_gib=0.5)))
    proc = subprocess.run([*cmd, "low.yaml"], cwd=tmp_path, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "ResourceBudgetError" in out
    assert "lower sampling.batch_size to at most" in out and not (tmp_path / "results").exists()
    adequate = config_with(folders, memory_gib=8)
    adequate["sampling"]["batch_size"] = "auto"
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(adequate))
    proc = subprocess.run([*cmd, "ok.yaml"], cwd=tmp_path, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "ibdiv sizing: datasets.amused_tiny (amused: 64x64 grid" in out and "(auto)" in out
    assert "score_checkpoint: peak" in out and "sample_probe/path_clamp/neutral: peak" in out


def test_the_first_gpu_config_is_valid_and_sized(folders):
    """docs/gpu-runbook.md's config: schema-valid, one backend on two conditions, a budget; with a
    folder in place it is sized (here the tiny 64 x 64 aMUSEd) and `auto` resolves to a batch."""
    from ibdiv.core.config import load_config

    config = load_config(ROOT / "config/gpu-first.yaml")
    (name, spec), = config["datasets"].items()
    assert spec["backend"] == "amused" and len(spec["conditions"]) == 2 and config["resources"]["memory_gib"]
    spec["checkpoint"] = str(folders["amused"])
    plan = sizing.check_resources(config).datasets[name]
    assert plan.sizes.grid == 64 and 1 <= plan.batch <= sizing.MAX_BATCH and plan.score_rows >= 1


def test_the_capped_run_script_config_fits_its_cap(folders):
    """scripts/capped_run.py (issue 25's "done when", run by hand: too slow for CI) plans at its
    default cap with batch auto: the estimates it prints come from this plan."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("capped_run", ROOT / "scripts/capped_run.py")
    capped_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capped_run)
    config = capped_run.capped_config(folders, 0.2)
    plan = sizing.check_resources(config)
    assert set(plan.datasets) == {"amused_tiny", "vq_diffusion_tiny"} and plan.datasets["amused_tiny"].sizes.grid == 64
    assert all(job.peak_bytes <= 0.2 * GIB for d in plan.datasets.values() for job in d.jobs)
    assert plan.datasets["amused_tiny"].nested_batch  # the cap splits the 64 x 64 grid's nested continuations
