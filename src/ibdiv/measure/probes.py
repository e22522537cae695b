"""Probe designs: which samples to draw for each probe (DESIGN §4).

Two designs cover every probe:

- *flat*: `per_class` samples of every class per cell (a knob value, a noise level).
  All cells share the sampling seed (common random numbers), and perturbation noise comes
  from its own generator, so a cell whose perturbation is zero (σ = 0, temperature 1) is
  bit-identical to the baseline cache, and differences between cells are not blurred by
  independent sampling noise.
- *nested* (path clamp, I1): per class P path prefixes cut where a fraction f of tokens is
  committed, then R continuations of each path with fresh randomness. A perturbation acting
  before the cut is drawn once per path (it shaped the shared prefix); one acting after it is
  drawn independently for every continuation (each is its own generation). Shared after-cut
  noise would be a path variable by construction and move within-path entropy into
  between-path entropy (DESIGN §4).

Codebook noise after the cut (here and in the flat design's `noise_after`) acts only on the reads
of tokens committed after the cut: the path is read through the clean table
(`sampling.after_cut`). Perturbing the path's read would make every trained model "entangled" by
construction (DESIGN §4).

A cell that is the run's baseline cache bit for bit (the enhancement's (0, 0) cell) is copied
from it, not drawn again (registry.baseline_cell, `baseline_as_cell`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from ibdiv.core import registry
from ibdiv.families import sampling
from ibdiv.families.backbone import device_of

NOISE_TARGETS = {"condition": "cond_noise", "codebook": "code_noise"}


def sampling_seed(base_seed: int, dataset: str, family: str, seed, point: str) -> int:
    """The sampling seed of a run's baseline cache. Every probe of the run reuses it, which
    is what makes an unperturbed probe cell bit-identical to the baseline."""
    from ibdiv.core.seeds import derive_seed

    return derive_seed(base_seed, dataset, family, seed, point, "baseline")


def noise_seed_of(base_seed: int, dataset: str, family: str, seed, point: str, probe: str) -> int:
    """The seed of a probe's perturbation noise in one run: derived from the probe's name, so it does
    not depend on which other probes a job draws beside it."""
    from ibdiv.core.seeds import derive_seed

    return derive_seed(base_seed, dataset, family, seed, point, probe, "noise")


def draw_noise(model, target: str | None, sigma: float, n: int, gen: torch.Generator):
    """A Perturbation for n samples (None when there is nothing to perturb)."""
    if target is None:
        return None
    make = {"condition": sampling.condition_noise, "codebook": sampling.codebook_noise}[target]
    return sampling.Perturbation(**{NOISE_TARGETS[target]: make(model, n, sigma, gen)})


def sample_flat(model, n_classes: int, per_class: int, knobs: dict, seed: int, *, noise=(None, 0.0),
                cut_fraction: float | None = None, noise_after=(None, 0.0), noise_seed: int = 0,
                batch_size: int = 1024, memo: dict | None = None) -> dict:
    """`per_class` complete samples of every class (class-major order).

    `noise` = (target or None, sigma) perturbs the whole generation, or only the part before
    the cut when `cut_fraction` (the committed fraction to stop at) is given; `noise_after` perturbs only the part
    after the cut (phase-targeted perturbation, DESIGN §7). A cut without noise changes
    nothing: stopping and resuming with the same RNG is the uninterrupted run (the same
    tokens; AR's log-probs after the cut may move by a float32 ulp, since resuming rebuilds its
    KV cache from the prefix in one pass).
    Returns numpy arrays tokens (n, N), labels (n,), logprobs (n, N) float32, and for a process
    that revises visible codes ``replaced_codes`` (how many it replaced, summed over samples and steps).
    """
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    gen, noise_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(noise_seed)
    tokens, logprobs, replaced = [], [], 0
    for start in range(0, len(labels), batch_size):
        batch = labels[start:start + batch_size].to(device_of(model))
        with torch.no_grad():
            result = _pre_cut(model, batch, knobs, gen, noise_gen, noise, cut_fraction, memo)
            if cut_fraction is not None and result.state is not None:
                after = draw_noise(model, noise_after[0], noise_after[1], len(batch), noise_gen)
                after = sampling.after_cut(after, result.state)  # the prefix is read clean
                result = sampling.resume(model, result.state, knobs, gen, perturbation=after)
        tokens.append(result.tokens.cpu())
        logprobs.append(result.logprobs.cpu())
        replaced += sum(result.trace.get("replaced", []))
    out = {"tokens": torch.cat(tokens).numpy(), "labels": labels.numpy(),
           "logprobs": torch.cat(logprobs).numpy().astype(np.float32)}
    if "replaced" in result.trace:  # a process that revises visible codes (vq_diffusion): how often it did
        out["replaced_codes"] = np.int64(replaced)
    return out


def _pre_cut(model, batch, knobs: dict, gen: torch.Generator, noise_gen: torch.Generator, noise, cut_fraction,
             memo: dict | None):
    """The run up to the cut (or the whole run) of one batch of sample_flat. ``memo`` (a dict shared by
    the cells of a probe): a run that starts from the same generator states with the same batch,
    knobs and noise is the same run, so it is taken from there (a deep copy) and the generators are
    set to the states it left (the enhancement's cells of one condition σ share their pre-cut run)."""
    key = None
    if memo is not None and cut_fraction is not None:
        key = (gen.get_state().numpy().tobytes(), noise_gen.get_state().numpy().tobytes(), batch.cpu().numpy().tobytes(),
               repr(sorted(knobs.items())), repr(noise), cut_fraction)
        if key in memo:
            result, gen_state, noise_state = memo[key]
            gen.set_state(gen_state)
            noise_gen.set_state(noise_state)
            return copy.deepcopy(result)
    before = draw_noise(model, noise[0], noise[1], len(batch), noise_gen)
    result = sampling.sample(model, batch, knobs, gen, perturbation=before, cut_fraction=cut_fraction)
    if key is not None:
        memo[key] = (copy.deepcopy(result), gen.get_state(), noise_gen.get_state())
    return result


def expand_state(state, repeats: int):
    """Each sample of a cut state repeated `repeats` times (consecutively)."""
    return select_state(state, torch.arange(len(state.classes)).repeat_interleave(repeats))


def select_state(state, rows: torch.Tensor):
    """A copy of a state holding the samples `rows` (indices, repeats allowed) in that order."""
    state = copy.deepcopy(state)
    n = len(state.classes)
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if torch.is_tensor(value) and value.ndim and value.shape[0] == n:
            setattr(state, f.name, value[rows.to(value.device)])
    for key, value in state.trace.items():
        if isinstance(value, list) and len(value) == n and key == "layouts":
            state.trace[key] = [value[i] for i in rows.tolist()]
    return state


def sample_nested(model, n_classes: int, paths: int, continuations: int, cut_fraction: float, knobs: dict,
                  seed: int, *, before=(None, 0.0), after=(None, 0.0), noise_seed: int = 0,
                  batch_size: int | None = None) -> dict:
    """Path-clamp design. `before` / `after` = (noise target or None, sigma), applied only to
    the prefix (one draw per path) or only to the continuations (one draw per continuation).
    `batch_size`: continuations per call (None: all C P R in one; a smaller chunk, which the memory
    budget sets where they do not fit, changes the draws, as a flat design's batch does).

    Returns tokens (C, P, R, N), frozen (C, P, N) (committed at the cut), the achieved
    committed fraction, the process fraction tau at the cut, for the oracle the true
    layout of every path (C, P), and for a process that can revise visible codes (vq_diffusion's
    published sampler) ``suppressed_replacements``: the revisions of committed codes that the
    continuations, which keep the prefix frozen, did not make (summed over continuations and steps).
    """
    C, P, R = n_classes, paths, continuations
    classes = torch.arange(C).repeat_interleave(P).to(device_of(model))
    gen, noise_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(noise_seed)
    pre = draw_noise(model, before[0], before[1], C * P, noise_gen)
    with torch.no_grad():
        cut = sampling.sample(model, classes, knobs, gen, perturbation=pre, cut_fraction=cut_fraction)
        if cut.state is None:
            raise ValueError(f"the process finished before committing a fraction {cut_fraction}")
        tokens, suppressed = _continuations(model, expand_state(cut.state, R), knobs, gen, after, noise_gen,
                                            batch_size)
    N = tokens.shape[1]
    out = {
        "tokens": tokens.numpy().reshape(C, P, R, N),
        "frozen": cut.committed.cpu().numpy().reshape(C, P, N),
        "committed_fraction": np.float64(cut.committed_fraction),
        "process_fraction": np.float64(cut.process_fraction),
    }
    if suppressed is not None:  # a process that revises visible codes: what freezing the prefix kept
        out["suppressed_replacements"] = np.int64(suppressed)
    if "layouts" in cut.trace and cut.trace["layouts"] is not None:
        out["path_layouts"] = np.asarray(cut.trace["layouts"], dtype=np.int64).reshape(C, P)
    return out


def _continuations(model, expanded, knobs: dict, gen: torch.Generator, after, noise_gen: torch.Generator,
                   batch_size: int | None) -> tuple[torch.Tensor, int | None]:
    """(tokens (n, N) on the CPU, replacements suppressed or None) of the continuations of an expanded
    cut state, `batch_size` at a time, each chunk with its own draw of the `after` noise (one K x d
    code table a continuation: drawn per chunk, so that only a chunk's tables are ever held)."""
    n = len(expanded.classes)
    chunk = n if batch_size is None else max(1, min(int(batch_size), n))
    tokens, suppressed = [], None
    for start in range(0, n, chunk):
        part = expanded if chunk == n else select_state(expanded, torch.arange(start, min(start + chunk, n)))
        post = draw_noise(model, after[0], after[1], len(part.classes), noise_gen)
        # after-cut codebook noise reads the path through the clean table (DESIGN §4)
        done = sampling.resume(model, part, knobs, gen, perturbation=sampling.after_cut(post, part),
                               freeze_committed=True)
        tokens.append(done.tokens.cpu())
        if "suppressed" in done.trace:
            suppressed = (suppressed or 0) + sum(done.trace["suppressed"])
    return torch.cat(tokens), suppressed


def probe_cells(probe: dict) -> list:
    """The cell labels of a probe, in cache order (the registry's)."""
    return registry.probe_cells(probe)


def run_probe(model, probe: dict, n_classes: int, knobs: dict, *, per_class: int, seed: int,
              noise_seed: int, batch_size: int = 1024, given: dict | None = None,
              nested_batch: int | None = None) -> dict:
    """Every cell of one probe; arrays stacked along a leading cell axis. `given`: {cell index:
    cell arrays} already drawn elsewhere (`baseline_as_cell`), taken as they are instead of sampled.
    Each cell seeds its own generators, so skipping one leaves the others' draws unchanged.
    `batch_size`: samples per call of a flat design; `nested_batch`: continuations per call of a
    nested one (None: all in one call)."""
    design = registry.probe_kind(probe["kind"]).design
    cells = registry.cell_settings(probe, knobs)  # what each cell samples (ProbeKind.cell_settings)
    given = given or {}
    if design == "flat":
        memo = {}  # pre-cut runs the cells share (sample_flat)
        flat = [given[i] if i in given else
                sample_flat(model, n_classes, per_class, seed=seed, noise_seed=noise_seed, batch_size=batch_size,
                            memo=memo, **cell) for i, cell in enumerate(cells)]
        return {"tokens": np.stack([c["tokens"] for c in flat]), "labels": flat[0]["labels"],
                "logprobs": np.stack([c["logprobs"] for c in flat])}
    nested = [given[i] if i in given else
              sample_nested(model, n_classes, probe["paths"], probe["continuations"], knobs=knobs, seed=seed,
                            noise_seed=noise_seed, batch_size=nested_batch, **cell) for i, cell in enumerate(cells)]
    return {key: np.stack([c[key] for c in nested]) for key in nested[0]}


def probe_cache(model, name: str, probe: dict, *, n_classes: int, knobs: dict, per_class: int, run: tuple,
                base_seed: int, baseline: dict | None = None, baseline_cell: int | None = None,
                batch_size: int = 1024, nested_batch: int | None = None) -> dict:
    """The sample cache of one probe in one run `run` = (dataset, family, seed, point): what
    run_probe draws and the cell labels. The sampling seed is the run's (sampling_seed) and the
    noise seed the probe's own (noise_seed_of), so a cache does not depend on which other probes
    its job draws, nor in what order. `baseline`: the run's baseline cache, copied as cell
    `baseline_cell` (registry.baseline_cell) instead of drawn again."""
    seed = sampling_seed(base_seed, *run)
    given = {} if baseline_cell is None else {baseline_cell: baseline_as_cell(baseline, seed=seed)}
    out = run_probe(model, probe, n_classes, knobs, per_class=per_class, seed=seed,
                    noise_seed=noise_seed_of(base_seed, *run, name), batch_size=batch_size, given=given,
                    nested_batch=nested_batch)
    out["cells"] = np.array([str(c) for c in probe_cells(probe)])
    return out


def baseline_as_cell(cache: dict, *, seed: int) -> dict:
    """The run's baseline cache as a flat probe cell (registry.baseline_cell), in the arrays and
    dtypes sample_flat returns; refuses a baseline drawn with another seed."""
    if int(cache["seed"]) != seed:  # the baseline's own record of its seed
        raise ValueError(f"the baseline cache was drawn with seed {int(cache['seed'])}, this run samples with {seed}")
    return {"tokens": cache["tokens"].astype(np.int64), "labels": cache["labels"], "logprobs": cache["logprobs"]}


def baseline_cache(model, n_classes: int, *, per_class: int, knobs: dict, seed: int, batch_size: int,
                   token_dtype) -> tuple[dict, int | None]:
    """A run's baseline sample cache, the arrays its file holds (tokens as `token_dtype`, the
    codebook's compact type, and the sampling seed, which `baseline_as_cell` checks), and how many
    visible codes the sampler replaced (None for a process that never revises them). One function
    for both jobs that draw baselines (sample_baseline, and a pretrained dataset's grouped runs),
    so their files are the same bytes."""
    out = sample_flat(model, n_classes, per_class, knobs, seed, batch_size=batch_size)
    cache = {"tokens": out["tokens"].astype(token_dtype), "labels": out["labels"], "logprobs": out["logprobs"],
             "seed": np.int64(seed)}
    return cache, (int(out["replaced_codes"]) if "replaced_codes" in out else None)


def draw_baseline(model, ref, sampling_settings: dict, knobs: dict, seed: int, device, log, prefix: str = "") -> dict:
    """baseline_cache for a run of the token cache `ref` (its classes and codebook), at the config's
    `sampling` settings, with what both baseline-drawing jobs log: the samples, the codes the sampler
    replaced, and the peak memory beside the estimate printed at start (gpu-runbook.md reads it)."""
    from ibdiv.data import tokens

    cache, replaced = baseline_cache(model, int(ref.labels.max()) + 1, per_class=sampling_settings["baseline_per_class"],
                                     knobs=knobs, seed=seed, batch_size=sampling_settings["batch_size"],
                                     token_dtype=tokens.compact_dtype(ref.codebook_size))
    log.info("%s%d samples, knobs %s", prefix, len(cache["labels"]), knobs)
    if replaced is not None:  # the published sampler revises visible codes (vq_diffusion)
        log.info("%svisible codes replaced by the sampler: %d", prefix, replaced)
    log.info("%s%s", prefix, peak_memory(device))
    return cache


def peak_memory(device) -> str:
    """What a sampling or scoring job measured of its own peak memory, to set beside the estimate
    its Snakemake start printed (ibdiv.pipeline.sizing): the CUDA allocator's peak on a GPU, the
    process's peak resident size on the CPU (weights, libraries and interpreter included)."""
    if torch.device(device).type == "cuda":
        return f"peak GPU memory allocated {torch.cuda.max_memory_allocated(device) / 2 ** 30:.3f} GiB"
    import resource

    return f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.3f} GiB (CPU)"


def load_sampler(family: str, path, device="cpu"):
    """The model a sampler reads: a trained prior on `device`; for a "checkpoint" family (a
    pretrained backend) what its module's `load_checkpoint(folder, device)` loads from the folder
    `path`; for a "tokenizer" family (the oracle) the tokenizer it wraps (the oracle renders images
    with numpy: it always runs on the CPU)."""
    if registry.family(family).model == "checkpoint":
        if str(path).endswith(".json"):  # the DAG's backend.json: the folder and the configured conditions
            spec = json.loads(Path(path).read_text())
            return registry.implementation(family).load_conditioned(spec["folder"], spec["conditions"], device)
        return registry.implementation(family).load_checkpoint(path, device=device)
    if registry.family(family).model == "tokenizer":
        from ibdiv.data.tokenizer import load_tokenizer

        return registry.implementation(family).PRIOR(load_tokenizer(path))
    from ibdiv.families.training import load_model

    return load_model(path).to(device)
