"""Masked image modelling family (MaskGIT).

Training: a masking ratio gamma(u) = cos(pi u / 2), u ~ U(0, 1), of the N tokens is masked
(at least one) at uniformly random positions; cross-entropy on the masked positions.

Decoding (google-research/maskgit parallel_decode): at step t = 0..T-1 every masked position
draws a token (after guidance and temperature); ratio r = (t + 1) / T; the N - mask_len most
confident positions stay committed, where mask_len = floor(N gamma(r)) clamped to
[1, unknown - 1] and confidence = log p(draw) + choice_temperature (1 - r) Gumbel. Committed
tokens have confidence +inf, so they are never re-masked. The last step commits everything
(MaskGIT returns the last step's pre-remask draws).

Held-out likelihood: MIM has no likelihood of its own; it is scored with the same absorbing
diffusion ELBO estimator as the diffusion family (masking.heldout_bits_per_token), which only
needs p(x_i | visible tokens) from a bidirectional network: one scale for both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ibdiv.families.backbone import (Backbone, DecodeState, Guidance, draw, draw_at, gumbel, row_positions,
                                     sampling_log_probs, uniform)
from ibdiv.families.masking import MASK_SCHEDULES, heldout_bits_per_token  # noqa: F401  (the family's likelihood)

KNOBS = {"steps": 12, "schedule": "cosine", "temperature": 1.0, "choice_temperature": 4.5,
         "cfg_scale": 1.0}
SCHEDULE_KNOBS = ("steps", "schedule")


class MIMPrior(Backbone):
    family = "mim"
    causal = False


PRIOR = MIMPrior


def training_loss(model: MIMPrior, tokens, labels, gen: torch.Generator) -> torch.Tensor:
    """Mean cross-entropy on masked positions under the cosine masking schedule."""
    n, N = tokens.shape
    ratio = torch.cos(math.pi / 2 * uniform(n, gen, tokens.device))
    n_masked = torch.ceil(ratio * N).clamp(1, N)
    rank = uniform((n, N), gen, tokens.device).argsort(1).argsort(1)
    masked = rank < n_masked[:, None]
    logits = model(tokens.masked_fill(masked, model.mask_id), labels)
    return F.cross_entropy(logits[masked], tokens[masked])


def committed_after_step(N: int, steps: int, schedule: str) -> list[int]:
    """Tokens committed after each step (the same for every sample of a batch)."""
    gamma = MASK_SCHEDULES[schedule]
    counts, committed = [], 0
    for t in range(steps - 1):
        unknown = N - committed
        mask_len = max(1, min(unknown - 1, math.floor(N * gamma((t + 1) / steps))))
        committed = N - mask_len
        counts.append(committed)
    return counts + [N]


def start(model: MIMPrior, classes: torch.Tensor, knobs: dict) -> DecodeState:
    schedule = {key: knobs[key] for key in SCHEDULE_KNOBS}
    return DecodeState.fresh(classes, model.config.seq_len, model.mask_id, knobs["steps"], schedule)


@torch.no_grad()
def advance(model: MIMPrior, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Run decoding steps until done or ``cut_fraction`` is reached.

    Randomness per step, in this order: token draws (n, N, K), then choice noise (n, N).
    """
    guide = Guidance(model, state.classes, knobs["cfg_scale"], perturbation)
    T, N = state.total_steps, state.tokens.shape[1]
    targets = committed_after_step(N, T, knobs["schedule"])
    while not state.finished and not state.reached(cut_fraction):
        t = state.step
        # only masked positions can be committed: the network computes their logits only (the
        # committed ones' draws are never read), from the same uniforms (backbone.draw_at)
        masked = row_positions(~state.committed)
        if masked is None:
            logits = guide.logits(model(guide.batch(state.tokens), guide.classes, **guide.kwargs))
            sampled, lp = draw(sampling_log_probs(logits, knobs["temperature"]), gen)
        else:
            logits = guide.logits(model(guide.batch(state.tokens), guide.classes, positions=guide.batch(masked),
                                        **guide.kwargs))
            sampled, lp = draw_at(sampling_log_probs(logits, knobs["temperature"]), masked, N, gen)
        commit_most_confident(state, sampled, lp, knobs["choice_temperature"] * (1 - (t + 1) / T), targets[t],
                              gen)
    return state


def commit_most_confident(state: DecodeState, sampled, lp, choice_temperature: float, n_committed: int,
                          gen: torch.Generator) -> None:
    """MaskGIT's commit: keep the `n_committed` positions of highest confidence (the drawn token's
    log-prob plus `choice_temperature` x Gumbel noise, drawn here); committed positions stay (their
    confidence is +inf). Updates `state` in place and advances it one step."""
    choice_noise = gumbel(state.tokens.shape, gen, state.tokens.device)
    confidence = (lp + choice_temperature * choice_noise).masked_fill(state.committed, math.inf)
    keep = confidence.topk(n_committed, dim=1).indices
    committed = torch.zeros_like(state.committed).scatter(1, keep, True)
    newly = committed & ~state.committed
    state.tokens = torch.where(newly, sampled, state.tokens)
    state.logprobs = torch.where(newly, lp, state.logprobs)
    state.committed = committed
    state.step += 1
    state.trace["committed"].append(n_committed)
