"""LlamaGen's jobs sized before they run (issue 25; ibdiv.pipeline.sizing): the sizes come from
llamagen.json alone (no torch, no weights), the estimate holds the measured peak of a sampling
call, a nested resume and the chunked held-out score on a tiny model with a 16 x 16 grid, and a low
budget stops the start naming the key to lower."""
import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT

from ibdiv.backends import llamagen
from ibdiv.pipeline import sizing

pytestmark = [pytest.mark.pretrained]

GRID, CODES, CLASSES = 16, 1024, 4
TINY = {"dim": 64, "n_layer": 2, "n_head": 4, "multiple_of": 32}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    gpt = llamagen.GPT.build(CODES, GRID ** 2, CLASSES, TINY)
    return llamagen.save_checkpoint(tmp_path_factory.mktemp("llamagen") / "tiny", gpt.eval())


def smoke_config(folder, **resources) -> dict:
    """The pretrained smoke config with its LlamaGen dataset on `folder` (the other backends left out)."""
    config = yaml.safe_load((ROOT / "config/pretrained-smoke.yaml").read_text())
    for name in ("amused_tiny", "vq_diffusion_tiny"):
        del config["datasets"][name]
    for name in ("amused", "vq_diffusion"):
        del config["families"][name]
    config["datasets"]["llamagen_tiny"]["checkpoint"] = str(folder)
    config["datasets"]["llamagen_tiny"]["conditions"] = config["datasets"]["llamagen_tiny"]["conditions"][:CLASSES]
    for condition, class_id in zip(config["datasets"]["llamagen_tiny"]["conditions"], range(CLASSES)):
        condition["class_id"] = class_id
    if resources:
        config["resources"] = resources
    return config


def test_sizes_come_from_the_sizes_file_without_torch(folder):
    s = sizing.read_sizes("llamagen", folder)
    model = llamagen.load_checkpoint(folder)
    assert (s.grid, s.codes, s.width, s.layers, s.heads, s.steps, s.causal) == (GRID, CODES, 64, 2, 4, 1, True)
    assert s.transformer_params == s.total_params == sum(p.numel() for p in model.parameters())
    assert s.code_width == model.tok_emb.weight.shape[1]
    # a release names a preset: counted from the sizes (published GPT-B: 111M, built on the meta device)
    release = folder.parent / "release"
    release.mkdir()
    (release / "llamagen.json").write_text(json.dumps({"gpt": {"file": "c2i_B_256.pt", "preset": "GPT-B"}}))
    with torch.device("meta"):
        gpt_b = llamagen.GPT(llamagen.gpt_config({"preset": "GPT-B"}))
    assert sizing.read_sizes("llamagen", release).total_params == sum(p.numel() for p in gpt_b.parameters())
    assert sizing.read_sizes("llamagen", folder.parent) is None  # no llamagen.json: not sized
    # the sizing module reads it at Snakemake start: no torch in that process
    probe = "import sys; from ibdiv.pipeline import sizing; sizing.read_sizes('llamagen', sys.argv[1]); " \
            "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe, str(folder)], check=True, env={"PYTHONPATH": str(ROOT / "src")})


MEASURE = """
import json, sys
import torch
from ibdiv.backends import llamagen
from ibdiv.families.sampling import Perturbation, after_cut, codebook_noise, resume, sample

torch.set_num_threads(1)
folder, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = llamagen.load_checkpoint(folder)
classes = torch.arange(n) % model.config.num_classes
gen = torch.Generator().manual_seed(0)
sample(model, classes[:1], {"cfg_scale": 2.0}, gen)  # warm-up: the kernels' and allocator's first use
cut = sample(model, classes, {"cfg_scale": 2.0}, gen, cut_fraction=0.5) if case == "resume" else None
noise = after_cut(Perturbation(code_noise=codebook_noise(model, n, 1.0, gen)), cut.state) if cut else None
tokens = torch.randint(0, model.config.vocab_size, (4 * n, model.config.seq_len), generator=gen)
labels = torch.arange(4 * n) % model.config.num_classes
def status(key):  # kB lines of /proc/self/status
    line = next(ln for ln in open("/proc/self/status") if ln.startswith(key + ":"))
    return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # resets the peak resident size (VmHWM) to the current one
before = status("VmRSS")
with torch.no_grad():
    if case == "flat":
        sample(model, classes, {"cfg_scale": 2.0}, gen)
    elif case == "resume":
        resume(model, cut.state, {"cfg_scale": 2.0}, gen, perturbation=noise, freeze_committed=True)
    else:
        llamagen.heldout_bits_per_token(model, tokens, labels, rows_per_call=n)
print(json.dumps({"growth": status("VmHWM") - before}))
"""


def measured_growth(folder, case: str, n: int) -> int:
    """Bytes the process's peak resident size (VmHWM, reset just before the call) rose above its
    resident size then: the call's own peak (weights, libraries and the warm-up excluded), in a
    fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(folder), case, str(n)], capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(ROOT / "src")}).stdout
    return json.loads(out.strip().splitlines()[-1])["growth"]


@pytest.mark.slow
@pytest.mark.parametrize("case, n, code_tables, resumes", [("flat", 128, False, False), ("resume", 16, True, True)])
def test_the_estimate_holds_the_measured_peak_of_a_sampling_call(folder, case, n, code_tables, resumes):
    """Guided (cfg 2: two rows a sample); the resume feeds the whole prefix in its first call and
    reads a perturbed code table a sample (after-cut codebook noise)."""
    s = sizing.read_sizes("llamagen", folder)
    estimate = n * sizing.per_sample_bytes(s, True, code_tables, resumes)
    growth = measured_growth(folder, case, n)
    assert growth <= estimate, (growth, estimate)
    assert growth >= estimate / 8, (growth, estimate)  # an estimate, not a bound too loose to size a batch


@pytest.mark.slow
def test_the_estimate_holds_the_measured_peak_of_the_chunked_score(folder):
    s = sizing.read_sizes("llamagen", folder)
    rows = 16
    estimate = rows * sizing.score_row_bytes(s)
    growth = measured_growth(folder, "score", rows)
    assert estimate / 8 <= growth <= estimate, (growth, estimate)


def test_the_chunked_score_is_the_exact_nll(folder):
    model = llamagen.load_checkpoint(folder)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, CODES, (10, GRID ** 2), generator=gen)
    labels = torch.arange(10) % CLASSES
    whole = llamagen.heldout_bits_per_token(model, tokens, labels)
    assert llamagen.heldout_bits_per_token(model, tokens, labels, rows_per_call=3) == pytest.approx(whole, rel=1e-6)


def test_a_low_budget_names_the_key_to_lower(folder):
    config = smoke_config(folder, memory_gib=0.05)
    config["sampling"]["batch_size"] = 1024
    with pytest.raises(sizing.ResourceBudgetError) as err:
        sizing.check_resources(config)
    message = str(err.value)
    assert "datasets.llamagen_tiny (16x16 grid, K 1024)" in message and "resources.memory_gib=0.05" in message
    fit = int(message.split("lower sampling.batch_size to at most ")[1].split(" ")[0])
    assert 1 <= fit < 1024
    config["sampling"]["batch_size"] = fit  # the remedy it names works
    plan = sizing.check_resources(config).datasets["llamagen_tiny"]
    assert all(job.peak_bytes <= 0.05 * sizing.GIB for job in plan.jobs)


def test_auto_batch_score_chunk_and_the_log_lines(folder):
    config = smoke_config(folder, memory_gib=0.05)
    config["sampling"]["batch_size"] = "auto"
    plan = sizing.check_resources(config)
    sized = plan.datasets["llamagen_tiny"]
    assert sized.batch != sizing.AUTO_BATCH_UNSIZED and sized.score_rows >= 1
    jobs = {job.job: job for job in sized.jobs}
    # a resume (nested, cut cells) holds the prefix pass; guidance (standard: cfg 1.75) two rows a sample
    assert jobs["sample_probe/path_clamp/neutral"].peak_bytes > jobs["sample_baseline/neutral"].peak_bytes
    assert jobs["sample_baseline/standard"].guided and not jobs["sample_baseline/neutral"].guided
    assert any(line.startswith("datasets.llamagen_tiny (llamagen: 16x16 grid, K 1024") for line in plan.lines)
    uncached = sizing.estimate({**sizing.sampling_jobs(config, sized.sizes, CLASSES)[0],
                                "cells": [{"kv_cache": False}], "resumes": True}, sized.sizes, 1)
    assert uncached.flops_per_sample == pytest.approx((GRID ** 2 + 1) / 2 * jobs["sample_baseline/neutral"].flops_per_sample)
