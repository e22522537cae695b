"""Every job that loads a pretrained backend, sized before it runs (issue 25).

At Snakemake start (workflow/rules/common.smk) each `source: pretrained` dataset whose checkpoint
folder exists is sized from its config files and weight-file headers alone (no weights read, no
torch imported): the token grid, the codebook K, the transformer's width, layers and heads, the
steps a sample takes, the parameter counts. From them, for every job that loads the backend
(score_checkpoint, sample_baseline per operating point, sample_probe per probe and point), an
estimate of its peak memory and of its compute per sample; the estimates are printed (the
"ibdiv sizing:" lines of the start-up log) and checked against the optional `resources` config
section:

    resources:
      memory_gib: 70    # the memory one job may use: the GPU's (device=cuda) or the host's
      tflops: 10        # assumed sustained throughput, only to turn FLOPs into seconds

A job that does not fit fails the start with the key to lower (sampling.batch_size) or
`resources.memory_gib` to raise. Where `sampling.batch_size` is `auto` (or left out) the batch is
the largest that fits every sampling job of the dataset; the held-out score's network-call chunk
(`rows_per_call`) and, where a nested design's conditions x paths x continuations do not fit one
call, its continuations per call (`nested_batch`) are always sized from the budget.

The memory model is a rule of thumb, float32 weights and activations, per network row (one
sequence in one forward; a guided batch has two rows a sample). The masked and diffusion backends
(aMUSEd, VQ-Diffusion) run the whole grid every step:
  activations   ACTIVATION_COPIES x N x width floats (residual stream, q/k/v, MLP hidden)
  attention     heads x N_att x L for cross-attention to L text positions (the N_att^2 self-
                attention scores only with MATERIALISED_ATTENTION: the fused kernels do not hold them)
  logits        LOGIT_COPIES x N x (K + 1) of the sampler's largest temporaries (logits,
                log-softmax, Gumbel noise, sort for top-p; VQ-Diffusion's are float64: its
                log-softmax and q_posterior run in double)
times MARGIN, plus the weights once, plus one K x d code table per sample under codebook noise.
LlamaGen (raster order, one token a step, KV cache; sizes from llamagen.json through the torch-free
ibdiv.backends.llamagen_sizes) holds per row instead
  KV cache      2 x (layers + 1) x (N + 1) x width floats (keys and values of every layer, one layer's
                torch.cat copy)
  one step      LOGIT_COPIES x K floats of the sampler plus one position's activations
  a resume      where a job cuts and resumes (nested designs, cut cells) or runs without the cache,
                the first call feeds the whole prefix (at most N + 1 positions): ACTIVATION_COPIES x
                (N + 1) x width and (N + 1) x K logits (the 2 x heads x (N + 1)^2 causal scores only
                with MATERIALISED_ATTENTION: the fused kernels take the causal mask without them)
times MARGIN, and under codebook noise 2 K x d tables a sample (the noise and the perturbed table),
4 when guided (both stacked for the two branches: backbone.CodeReads.twice). Its held-out score is
the exact NLL, one teacher-forced row a sequence (LOGIT_COPIES x N x K logits), chunked like the
masked backends' masked rows. FLOPs per network row: 2 x transformer parameters x N + 4 x layers x
N_att^2 x width (LlamaGen: one such row a sample with the KV cache, about (N + 1) / 2 without). It has not been
measured against a GPU run: treat it as an order of magnitude and check the first job's peak
(docs/gpu-runbook.md).

No job imports this module: the sizes it derives reach the jobs as params (a batch size, a chunk).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ibdiv.core import registry

GIB = 2 ** 30
FLOAT32 = 4
ACTIVATION_COPIES = 12  # live (N, width) float32 tensors of one block: residual, norm, q, k, v, out, MLP 4x
LOGIT_COPIES = 4
# diffusers' attention goes through torch's scaled_dot_product_attention, whose fused kernels do not
# hold the N_att^2 scores (measured on the CPU: a 64 x 64 tiny aMUSEd grew by 1.2 MB a row, not the 8 MB
# the materialised scores would take); 1 counts them (the math kernel)
MATERIALISED_ATTENTION = 0
MARGIN = 1.5  # allocator slack and the temporaries the rule of thumb misses (tiny VQ-Diffusion: 0.10 MB a row measured)
DEFAULT_TFLOPS = 10.0  # an assumption (float32 on a current datacenter GPU, well below its peak)
MAX_BATCH = 1024  # `auto` never asks for more samples at once (sample_flat's old default)
AUTO_BATCH_UNSIZED = 32  # `auto` where nothing is sized (a tiny checkpoint the DAG builds; the old pretrained batch)
MAX_SCORE_ROWS = 1024
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                     "BOOL": 1}


class ResourceBudgetError(ValueError):
    """A job's estimated peak memory exceeds `resources.memory_gib`; the message names the key to change."""


@dataclass(frozen=True)
class ModelSizes:
    """What the estimate reads of a checkpoint folder."""

    backend: str
    grid: int  # token grid side: N = grid^2
    codes: int  # K
    width: int  # the transformer's hidden width
    layers: int
    heads: int
    attention_grid: int  # side of the grid the attention runs on (aMUSEd's U-ViT may halve it)
    text_length: int  # cross-attended text positions
    steps: int  # network calls per sample at the module's default (aMUSEd: its `steps` knob)
    transformer_params: int
    total_params: int  # every component the job loads (transformer, text encoder, VQ, ...)
    code_width: int  # width d of the code-embedding table that codebook noise perturbs
    logit_bytes: int  # bytes per element of the sampler's logit-sized temporaries
    causal: bool = False  # raster order with a KV cache (LlamaGen): the per-row model of the docstring

    @property
    def tokens(self) -> int:
        return self.grid ** 2

    def describe(self) -> str:
        return (f"{self.grid}x{self.grid} grid, K {self.codes}, width {self.width}, {self.layers} layers, "
                f"{self.transformer_params / 1e6:.2f}M transformer / {self.total_params / 1e6:.2f}M loaded parameters")


def safetensors_params(path: Path) -> tuple[int, int]:
    """(parameters, bytes on disk) of one .safetensors file, from its header only."""
    with open(path, "rb") as handle:
        (n,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(n))
    tensors = [t for name, t in header.items() if name != "__metadata__"]
    params = sum(math.prod(t["shape"]) for t in tensors)
    return params, sum(math.prod(t["shape"]) * SAFETENSORS_BYTES.get(t["dtype"], 4) for t in tensors)


def _params_under(folder: Path) -> int:
    return sum(safetensors_params(p)[0] for p in sorted(folder.rglob("*.safetensors")) if ".cache" not in p.parts)


def _config(folder: Path, sub: str, name: str = "config.json") -> dict:
    return json.loads((folder / sub / name).read_text())


def _amused_sizes(folder: Path) -> ModelSizes:
    t, text = _config(folder, "transformer"), _config(folder, "text_encoder")
    grid = int(t["sample_size"])
    return ModelSizes(
        backend="amused", grid=grid, codes=int(t["codebook_size"]), width=int(t["hidden_size"]),
        layers=int(t["num_hidden_layers"]), heads=int(t["num_attention_heads"]),
        attention_grid=grid // 2 if t.get("downsample") else grid,
        text_length=int(text.get("max_position_embeddings", 77)), steps=12,  # amused.KNOBS["steps"]
        transformer_params=_params_under(folder / "transformer"), total_params=_params_under(folder),
        code_width=int(t["in_channels"]), logit_bytes=FLOAT32)  # embed.embeddings: (vocab, in_channels)


def _vq_diffusion_sizes(folder: Path) -> ModelSizes:
    t, text = _config(folder, "transformer"), _config(folder, "text_encoder")
    scheduler = _config(folder, "scheduler", "scheduler_config.json")
    width = int(t["num_attention_heads"]) * int(t["attention_head_dim"])
    grid = int(t["sample_size"])
    return ModelSizes(
        backend="vq_diffusion", grid=grid, codes=int(t["num_vector_embeds"]) - 1, width=width,
        layers=int(t["num_layers"]), heads=int(t["num_attention_heads"]), attention_grid=grid,
        text_length=int(text.get("max_position_embeddings", 77)), steps=int(scheduler["num_train_timesteps"]),
        transformer_params=_params_under(folder / "transformer"), total_params=_params_under(folder),
        code_width=width, logit_bytes=8)  # float64 log p(x0) and posterior


def _llamagen_sizes(folder: Path) -> ModelSizes | None:
    """From llamagen.json's "gpt" entry (a preset and / or explicit sizes): the weights are torch
    pickles, whose headers say nothing; the parameters are counted from the sizes. A sampling job
    loads the GPT only (the VQ is the encoding and decoding jobs'). None without llamagen.json
    (not a LlamaGen folder: the checkpoint's record says so)."""
    from ibdiv.backends.llamagen_sizes import gpt_config

    sizes_file = folder / "llamagen.json"  # llamagen.SIZES_FILE (that module needs torch)
    if not sizes_file.is_file():
        return None
    c = gpt_config(json.loads(sizes_file.read_text())["gpt"])
    return ModelSizes(
        backend="llamagen", grid=c.grid, codes=c.vocab_size, width=c.dim, layers=c.n_layer, heads=c.n_head,
        attention_grid=c.grid, text_length=0, steps=1,  # one network row a sample: a token a step, KV cache
        transformer_params=c.parameters, total_params=c.parameters, code_width=c.dim, logit_bytes=FLOAT32,
        causal=True)


READERS = {"amused": _amused_sizes, "vq_diffusion": _vq_diffusion_sizes, "llamagen": _llamagen_sizes}


def read_sizes(backend: str, folder) -> ModelSizes | None:
    """The sizes of a checkpoint folder, or None where there is no reader or no folder."""
    folder = Path(folder)
    if backend not in READERS or not folder.is_dir():
        return None
    return READERS[backend](folder)


# --- the per-row model ----------------------------------------------------------------------------

def row_bytes(s: ModelSizes, resumes: bool = False) -> int:
    """Peak bytes one network row adds while sampling (see the module docstring); `resumes`: the job
    cuts and resumes (a causal backend then feeds the whole prefix in one call)."""
    if s.causal:
        return _causal_row_bytes(s, resumes)
    N, n_att = s.tokens, s.attention_grid ** 2
    activations = ACTIVATION_COPIES * N * s.width * FLOAT32
    attention = s.heads * n_att * (2 * n_att * MATERIALISED_ATTENTION + s.text_length) * FLOAT32
    logits = LOGIT_COPIES * N * (s.codes + 1) * s.logit_bytes
    return int(MARGIN * (activations + attention + logits))


def _causal_row_bytes(s: ModelSizes, resumes: bool) -> int:
    positions = s.tokens + 1  # the class token, then the codes
    cache = 2 * (s.layers + 1) * positions * s.width * FLOAT32
    step = (LOGIT_COPIES * (s.codes + 1) + ACTIVATION_COPIES * s.width) * FLOAT32
    prefix = _causal_forward_bytes(s, 1) if resumes else 0
    return int(MARGIN * (cache + step + prefix))


def _causal_forward_bytes(s: ModelSizes, logit_copies: int) -> int:
    """One row fed all N + 1 positions at once: activations, causal scores, logits at every position."""
    positions = s.tokens + 1
    return (ACTIVATION_COPIES * positions * s.width + 2 * s.heads * positions ** 2 * MATERIALISED_ATTENTION
            + logit_copies * positions * s.codes) * FLOAT32


def score_row_bytes(s: ModelSizes) -> int:
    """One row of the held-out score: a masked row (a forward plus the cross-entropy's float32
    log-softmax) or, for a causal backend, one teacher-forced sequence."""
    if s.causal:
        return int(MARGIN * _causal_forward_bytes(s, LOGIT_COPIES))
    return row_bytes(s) + 2 * s.tokens * s.codes * FLOAT32


def weight_bytes(s: ModelSizes) -> int:
    """Every component's weights in float32 (as the backends load them)."""
    return s.total_params * FLOAT32


def row_flops(s: ModelSizes) -> float:
    """Network FLOPs of one row: the matmuls over every token, plus self-attention's N_att^2 terms."""
    n_att = s.attention_grid ** 2
    return 2.0 * s.transformer_params * s.tokens + 4.0 * s.layers * n_att * n_att * s.width


@dataclass(frozen=True)
class JobEstimate:
    job: str  # e.g. "sample_probe/codebook_noise/neutral"
    samples: int  # samples in one call (a batch; a nested design's continuations; score: rows)
    guided: bool
    code_tables: bool  # one K x d code table per sample (codebook noise)
    peak_bytes: int
    flops_per_sample: float  # network FLOPs per finished sample (score: per held-out sequence)
    remedy: str  # what to lower when it does not fit

    def line(self, tflops: float) -> str:
        """The job's start-up log line: peak, what a call holds, FLOPs and time per sample."""
        scoring = self.job.startswith("score")
        holds = (" (guided: 2 rows a sample)" if self.guided else "") + (", code tables" if self.code_tables else "")
        seconds = self.flops_per_sample / (tflops * 1e12)
        return (f"{self.job}: peak {self.peak_bytes / GIB:.3f} GiB at {self.samples} "
                f"{'rows' if scoring else 'samples'} a call{holds}; {self.flops_per_sample / 1e9:.3g} GFLOP = "
                f"{seconds * 1e3:.3g} ms a {'sequence' if scoring else 'sample'} at {tflops:g} TFLOP/s")


def per_sample_bytes(s: ModelSizes, guided: bool, code_tables: bool, resumes: bool = False) -> int:
    tables = (2 + 2 * guided if s.causal else 1) if code_tables else 0  # see the module docstring
    return (2 if guided else 1) * row_bytes(s, resumes) + tables * s.codes * s.code_width * FLOAT32


def _guided(knobs: dict) -> bool:
    return float(knobs.get("cfg_scale", 1.0)) != 1.0


def _uncached(s: ModelSizes, knobs: dict) -> bool:
    """A causal backend run without its KV cache (LlamaGen's kv_cache knob): the prefix every step."""
    return s.causal and knobs.get("kv_cache", True) is False


def _steps(s: ModelSizes, knobs: dict) -> float:
    """Network rows a sample runs (each over the whole grid); a causal backend without its cache
    recomputes the prefix at every token: (N + 1) / 2 rows on average."""
    return (s.tokens + 1) / 2 if _uncached(s, knobs) else int(knobs.get("steps", s.steps))


def sampling_jobs(config: dict, s: ModelSizes, n_conditions: int) -> list[dict]:
    """Each sampling job of the backend (the baseline per point, each applicable probe per point):
    {job, cells (each cell's knobs), code_tables (a cell perturbs the codebook), nested
    (continuations of a nested design; None for a flat one, whose batch is sampling.batch_size),
    resumes (a cell cuts and resumes, or runs a causal backend uncached), remedy (the key to lower)}."""
    backend, jobs = s.backend, []
    points = config["families"].get(backend, {})
    for point, knobs in points.items():
        jobs.append({"job": f"sample_baseline/{point}", "cells": [knobs], "code_tables": False, "nested": None,
                     "resumes": _uncached(s, knobs)})
    for name, probe in config["probes"].items():
        if backend not in probe.get("families", [backend]) or not registry.applies(probe, backend):
            continue
        design = registry.probe_kind(probe["kind"]).design
        for point, knobs in points.items():
            if point not in probe.get("points", registry.POINTS):
                continue
            cells = registry.cell_settings(probe, knobs)
            tables = any("codebook" in str(c.get(k)) for c in cells for k in ("noise", "noise_after", "after", "before"))
            nested = n_conditions * probe["paths"] * probe["continuations"] if design == "nested" else None
            cell_knobs = [c.get("knobs", knobs) for c in cells]
            resumes = any("cut_fraction" in c for c in cells) or any(_uncached(s, k) for k in cell_knobs)
            jobs.append({"job": f"sample_probe/{name}/{point}", "cells": cell_knobs, "resumes": resumes,
                         "code_tables": tables, "nested": nested,
                         "remedy": f"probes.{name}.paths / probes.{name}.continuations" if nested else None})
    return jobs


def estimate(job: dict, s: ModelSizes, batch: int, nested_batch: int | None = None) -> JobEstimate:
    """A job's estimate: a flat design draws `batch` samples a call, a nested one all its
    continuations, or `nested_batch` at a time where the budget splits them."""
    guided = any(_guided(k) for k in job["cells"])
    samples = min(job["nested"], nested_batch or job["nested"]) if job["nested"] else batch
    flops = max((2 if _guided(k) else 1) * _steps(s, k) for k in job["cells"]) * row_flops(s)
    peak = weight_bytes(s) + samples * per_sample_bytes(s, guided, job["code_tables"], job["resumes"])
    return JobEstimate(job["job"], samples, guided, job["code_tables"], peak, flops,
                       job.get("remedy") or "sampling.batch_size")


def score_rows(s: ModelSizes, budget_bytes: float | None) -> int | None:
    """Masked rows per network call of the held-out score: the most the budget holds (None without one)."""
    if budget_bytes is None:
        return None
    return max(0, min(MAX_SCORE_ROWS, int((budget_bytes - weight_bytes(s)) // score_row_bytes(s))))


# --- the plan of a config -------------------------------------------------------------------------

@dataclass
class DatasetPlan:
    dataset: str
    sizes: ModelSizes | None
    batch: int  # samples per sampling call (flat designs)
    score_rows: int | None  # masked rows per network call of the held-out score (None: the backend's default)
    jobs: list[JobEstimate] = field(default_factory=list)
    nested_batch: int | None = None  # continuations per call of a nested design (None: all in one call)


@dataclass
class Plan:
    datasets: dict[str, DatasetPlan]
    lines: list[str]
    problems: list[str]


SCORE_LEVELS = 16  # diffusers_common.SCORE_LEVELS (not imported: that module needs torch)
SCORE_ROWS_UNSIZED = 16  # diffusers_common.SCORE_ROWS_PER_CALL: the chunk without a budget


def plan_resources(config: dict, checkpoint_folder=lambda name: None) -> Plan:
    """Sizes, estimates, derived batch sizes and score chunks, and the problems, of every dataset.
    `checkpoint_folder(name)`: the folder of a pretrained dataset (the configured path by default;
    a tiny checkpoint the DAG builds is not sized)."""
    resources = config.get("resources", {})
    budget = resources["memory_gib"] * GIB if "memory_gib" in resources else None
    tflops = float(resources.get("tflops", DEFAULT_TFLOPS))
    asked = config["sampling"].get("batch_size", "auto")
    plans, lines, problems = {}, [], []
    for name, spec in config["datasets"].items():
        auto_batch = AUTO_BATCH_UNSIZED if asked == "auto" else asked
        sizes = None
        if spec["source"] == "pretrained":
            folder = checkpoint_folder(name) or (spec["checkpoint"] if isinstance(spec["checkpoint"], str) else None)
            sizes = read_sizes(spec["backend"], folder) if folder else None
        if sizes is None:
            plans[name] = DatasetPlan(name, None, auto_batch, None)
            if spec["source"] == "pretrained":
                lines.append(f"datasets.{name} ({spec['backend']}): not sized (no size reader or no folder yet); "
                             f"sampling batch {auto_batch}")
            continue
        plan = _plan_dataset(config, name, spec, sizes, asked, budget, tflops, problems)
        plans[name] = plan
        where = f"datasets.{name} ({sizes.backend}: {sizes.describe()})"
        lines.append(f"{where}: weights {weight_bytes(sizes) / GIB:.3f} GiB, budget "
                     f"{'none (resources.memory_gib unset)' if budget is None else f'{budget / GIB:g} GiB'}, "
                     f"sampling batch {plan.batch}{' (auto)' if asked == 'auto' else ''}, "
                     f"score {plan.score_rows or 'default'} rows a call"
                     + (f", nested continuations {plan.nested_batch} a call" if plan.nested_batch else ""))
        lines += [f"  {job.line(tflops)}" for job in plan.jobs]
    return Plan(plans, lines, problems)


def _plan_dataset(config, name, spec, s, asked, budget, tflops, problems) -> DatasetPlan:
    jobs = sampling_jobs(config, s, len(spec["conditions"]))
    flat = [j for j in jobs if j["nested"] is None]
    if asked == "auto":
        batch = AUTO_BATCH_UNSIZED
        if budget is not None and flat:
            per_sample = max(per_sample_bytes(s, any(_guided(k) for k in j["cells"]), j["code_tables"], j["resumes"])
                             for j in flat)
            batch = max(1, min(MAX_BATCH, int((budget - weight_bytes(s)) // per_sample)))
    else:
        batch = asked
    rows = score_rows(s, budget)
    nested = _nested_batch([j for j in jobs if j["nested"]], s, budget)
    shown = rows or SCORE_ROWS_UNSIZED
    passes = 1 if s.causal else SCORE_LEVELS  # an exact NLL: one teacher-forced row a sequence
    score = JobEstimate("score_checkpoint", shown, False, False, weight_bytes(s) + shown * score_row_bytes(s),
                        passes * row_flops(s), "resources.memory_gib")
    estimates = [score] + [estimate(j, s, batch, nested) for j in jobs]
    plan = DatasetPlan(name, s, batch, rows, estimates, nested)
    if budget is None:
        return plan
    if rows == 0:
        problems.append(f"datasets.{name} ({s.grid}x{s.grid} grid, K {s.codes}): the held-out score needs "
                        f"{(weight_bytes(s) + score_row_bytes(s)) / GIB:.3f} GiB for one masked row, more than "
                        f"resources.memory_gib={budget / GIB:g}: raise resources.memory_gib.")
    over = [job for job in estimates[1:] if job.peak_bytes > budget]
    for remedy in dict.fromkeys(job.remedy for job in over):
        problems.append(_budget_problem(name, s, [j for j in over if j.remedy == remedy], budget, asked))
    return plan


def _nested_batch(nested: list[dict], s: ModelSizes, budget: float | None) -> int | None:
    """Continuations per call where some nested design does not fit the budget in one call: the
    most every nested job fits (at least 1: a budget below one sample is a problem reported
    with the estimates); None where all fit (or there is no budget)."""
    if budget is None or not nested:
        return None
    fits = {j["job"]: int((budget - weight_bytes(s)) // per_sample_bytes(s, any(_guided(k) for k in j["cells"]),
                                                                           j["code_tables"], j["resumes"]))
            for j in nested}
    if all(j["nested"] <= fits[j["job"]] for j in nested):
        return None
    return max(1, min(fits.values()))


def _budget_problem(name: str, s: ModelSizes, over: list[JobEstimate], budget: float, asked) -> str:
    """One problem for the jobs over budget that the same key sizes: the largest, and the remedy."""
    worst = max(over, key=lambda j: j.peak_bytes)
    fit = min(int((budget - weight_bytes(s)) // ((j.peak_bytes - weight_bytes(s)) / j.samples)) for j in over)
    key = worst.remedy
    if fit < 1:
        remedy = "not even one sample fits: raise resources.memory_gib"
    elif key == "sampling.batch_size":
        remedy = (f"lower sampling.batch_size to at most {fit} (or set it to auto), or raise resources.memory_gib"
                  if asked != "auto" else "raise resources.memory_gib")
    else:
        remedy = f"lower {key} (at most {fit} samples fit a call), or raise resources.memory_gib"
    jobs = ", ".join(j.job for j in over)
    return (f"datasets.{name} ({s.grid}x{s.grid} grid, K {s.codes}): {worst.job} needs an estimated "
            f"{worst.peak_bytes / GIB:.3f} GiB at {worst.samples} samples a call, more than resources.memory_gib="
            f"{budget / GIB:g} (over: {jobs}): {remedy}.")


def check_resources(config: dict, checkpoint_folder=lambda name: None) -> Plan:
    """`plan_resources`, raising ResourceBudgetError listing every job that does not fit."""
    plan = plan_resources(config, checkpoint_folder)
    if plan.problems:
        raise ResourceBudgetError("jobs that do not fit resources.memory_gib (estimated before any job runs; "
                                  "ibdiv.pipeline.sizing):\n  - " + "\n  - ".join(plan.problems))
    return plan
