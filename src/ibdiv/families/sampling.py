"""One sampler interface for every family (DESIGN §3, §4).

    result = sample(model, classes, knobs, gen, perturbation=..., cut_fraction=f)
    more = resume(model, result.state, knobs, gen, perturbation=...)

Each family's implementation (a module such as ``ibdiv.families.ar``, or an object a config names: see
ibdiv.core.registry) provides ``KNOBS`` (names and defaults), ``SCHEDULE_KNOBS`` (knobs that fix the step
grid, which a resume may not change), ``PRIOR`` (the model class: ``build(K, N, C, cfg)``, ``spec()``,
``from_spec(spec)``; ``fit(tokens, labels)`` for a family that is counted, not learned), ``start``
and ``advance`` (the generative process over a ``DecodeState``) and ``heldout_bits_per_token``; the
learned ones also ``training_loss``. Its traits (learned, exact likelihood, perturbable: has
``cls_emb`` and ``tok_emb`` tables, or for a prompt-conditioned backend ``condition_scale`` /
``condition_width`` and ``tok_emb``: ibdiv.backends.amused) are the registry's; a model's ``family``
attribute names its registry entry.

Reproducibility contract: a process draws all its randomness from the RNG it is given,
in a fixed order per step, so ``sample(cut_fraction=f)`` followed by ``resume`` with the same
RNG equals the uninterrupted run; ``resume`` with another RNG continues the same
path with fresh randomness. ``resume`` never modifies the state it is given, so one path can be
continued many times.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ibdiv.families.masking import MASK_SCHEDULES
from ibdiv.core import registry
from ibdiv.families.backbone import DecodeState, device_of, gaussian

# Range checks per knob name; every knob of every family must appear here.
KNOB_CHECKS = {
    "temperature": lambda v: isinstance(v, (int, float)) and v > 0,
    "top_k": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "top_p": lambda v: isinstance(v, (int, float)) and 0 < v <= 1,
    "cfg_scale": lambda v: isinstance(v, (int, float)) and v >= 0,
    "kv_cache": lambda v: isinstance(v, bool),
    "steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "schedule": lambda v: v in MASK_SCHEDULES,
    "choice_temperature": lambda v: isinstance(v, (int, float)) and v >= 0,
    "mask_and_replace": lambda v: isinstance(v, bool),
}


@dataclass
class Perturbation:
    """Noise added to what the prior reads: one draw per sample (or per path, in nested designs).

    cond_noise: (n, d) added to the class embedding of the conditional branch. A backend whose
        condition is not one embedding row (a prompt's text encodings: ibdiv.backends.amused) gives its own
        flat width ``condition_width`` and splits the row itself.
    code_noise: (n, K, d) added to the code rows of the token-embedding table (MASK excluded);
        d is that table's width.
    path: (n, N) long or None: the tokens committed at the cut, -1 elsewhere (``after_cut`` sets
        it). Positions holding their path token are read through the clean code table, so codebook
        noise after the cut leaves the committed prefix alone (DESIGN §4; backbone.CodeReads).
        None: the code noise acts on every read (noise on the whole generation, or before the cut).
    """

    cond_noise: torch.Tensor | None = None
    code_noise: torch.Tensor | None = None
    path: torch.Tensor | None = None


def after_cut(perturbation: Perturbation | None, state: DecodeState) -> Perturbation | None:
    """``perturbation`` as noise applied after the cut ``state``: its codebook noise spares the tokens
    committed at the cut (they are the path; DESIGN §4 "after the cut means after the cut").

    Give the result to ``resume(state, ...)``. The reproducibility contract holds with it: the reads
    depend only on the tokens and the path, so sample(cut) + resume with the same object equals the
    uninterrupted run with it."""
    if perturbation is None or perturbation.code_noise is None:
        return perturbation
    path = state.tokens.masked_fill(~state.committed, -1)
    return Perturbation(perturbation.cond_noise, perturbation.code_noise, path)


@dataclass
class SampleResult:
    tokens: torch.Tensor  # (n, N) long; -1 where not committed (complete only when finished)
    logprobs: torch.Tensor  # (n, N) log-prob of each committed token under its draw; NaN elsewhere
    committed: torch.Tensor  # (n, N) bool
    trace: dict  # per-step lists, e.g. "committed" (tokens per sample after each step)
    state: DecodeState | None  # resumable state at a cut; None when finished
    committed_fraction: float  # achieved committed fraction at the cut
    process_fraction: float  # tau: fraction of the process's steps done at the cut


def resolve_knobs(family: str, knobs: dict, vocab_size: int) -> dict:
    """Defaults overlaid with ``knobs``; unknown or out-of-range knobs raise ValueError."""
    defaults = registry.implementation(family).KNOBS
    unknown = sorted(set(knobs) - set(defaults))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown} for family {family!r}; known: {sorted(defaults)}")
    resolved = {**defaults, **knobs}
    for name, value in resolved.items():
        if name not in KNOB_CHECKS:
            raise ValueError(f"knob {name!r} of family {family!r} has no range check; known knobs: {sorted(KNOB_CHECKS)}")
        if not KNOB_CHECKS[name](value):
            raise ValueError(f"knob {name}={value!r} is out of range for family {family!r}")
    if resolved.get("top_k", 0) > vocab_size:
        raise ValueError(f"knob top_k={resolved['top_k']} exceeds the vocabulary size {vocab_size}")
    return resolved


def sample(model, classes: torch.Tensor, knobs: dict, gen: torch.Generator, *,
           perturbation: Perturbation | None = None, cut_fraction: float | None = None) -> SampleResult:
    """Generate ``len(classes)`` token grids; with ``cut_fraction`` stop at the cut and return a state."""
    family = registry.implementation(model.family)
    knobs = resolve_knobs(model.family, knobs, model.vocab_size)
    _check_perturbation(model, perturbation, len(classes))
    state = family.start(model, classes, knobs)
    return _run(model, family, state, knobs, gen, perturbation, cut_fraction)


def resume(model, state: DecodeState, knobs: dict, gen: torch.Generator, *,
           perturbation: Perturbation | None = None, freeze_committed: bool = False) -> SampleResult:
    """Continue a cut process to the end; ``state`` itself is left untouched. ``freeze_committed``:
    the codes committed at the cut stay (the nested designs: continuations share the path's
    prefix); a process that would revise visible codes (vq_diffusion) then counts what it kept."""
    family = registry.implementation(model.family)
    knobs = resolve_knobs(model.family, knobs, model.vocab_size)
    state.check_schedule({key: knobs[key] for key in family.SCHEDULE_KNOBS})
    _check_perturbation(model, perturbation, len(state.classes))
    state = copy.deepcopy(state)
    state.freeze_committed = freeze_committed
    return _run(model, family, state, knobs, gen, perturbation, None)


def _run(model, family, state, knobs, gen, perturbation, cut_fraction) -> SampleResult:
    was_training = model.training
    model.eval()  # dropout would add randomness that bypasses the RNG
    try:
        state = family.advance(model, state, knobs, gen, perturbation, cut_fraction)
    finally:
        model.train(was_training)
    return SampleResult(
        tokens=state.tokens.masked_fill(~state.committed, -1),
        logprobs=state.logprobs.clone(),
        committed=state.committed.clone(),
        trace=copy.deepcopy(state.trace),
        state=None if state.finished else state,
        committed_fraction=state.committed.float().mean().item(),
        process_fraction=state.step / state.total_steps,
    )


def _check_perturbation(model, perturbation: Perturbation | None, n: int) -> None:
    if perturbation is None:
        return
    if not registry.family(model.family).perturbable:
        raise ValueError(f"family {model.family!r} has no embeddings to perturb")
    d_cond, d, K = _condition_width(model), model.tok_emb.weight.shape[1], model.config.vocab_size
    if perturbation.cond_noise is not None and perturbation.cond_noise.shape != (n, d_cond):
        raise ValueError(f"cond_noise must have shape {(n, d_cond)}, got {tuple(perturbation.cond_noise.shape)}")
    if perturbation.code_noise is not None and perturbation.code_noise.shape != (n, K, d):
        raise ValueError(f"code_noise must have shape {(n, K, d)}, got {tuple(perturbation.code_noise.shape)}")
    N = model.config.seq_len
    if perturbation.path is not None and perturbation.path.shape != (n, N):
        raise ValueError(f"path must have shape {(n, N)}, got {tuple(perturbation.path.shape)}")


# --- perturbation helpers (DESIGN §4, I2 and I3) ------------------------------------------

def _rms(table: torch.Tensor) -> float:
    """Per-element RMS: N(0, I) times this matches the table's scale per coordinate (not the
    row norm, which would be sqrt(d) times too strong: DESIGN §11)."""
    return table.detach().pow(2).mean().sqrt().item()


def _condition_width(model) -> int:
    """Width of a cond_noise row: the class embedding's (d_model), or what a backend whose condition
    is several tensors says (``condition_width``: a prompt's pooled + per-token text encodings)."""
    return getattr(model, "condition_width", None) or model.config.d_model


def condition_noise(model, n: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """(n, d) noise: sigma x per-element RMS of the class rows (NULL excluded) x N(0, I).

    A backend with ``condition_scale()`` (a (d,) per-coordinate RMS: one per text tensor of a prompt
    condition, ibdiv.backends.amused) is scaled by it instead; the class-table families are unchanged."""
    if hasattr(model, "condition_scale"):
        scale = sigma * model.condition_scale().to(device_of(model))
        return scale * gaussian((n, scale.numel()), gen, device_of(model))
    scale = sigma * _rms(model.cls_emb.weight[: model.config.n_classes])
    return scale * gaussian((n, model.config.d_model), gen, device_of(model))


def codebook_noise(model, n: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """(n, K, d) noise: sigma x per-element RMS of the code rows (MASK excluded) x N(0, I)."""
    K, d = model.config.vocab_size, model.tok_emb.weight.shape[1]  # d_model in-house; the table's width
    scale = sigma * _rms(model.tok_emb.weight[:K])
    return scale * gaussian((n, K, d), gen, device_of(model))
