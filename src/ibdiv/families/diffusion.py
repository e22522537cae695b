"""Absorbing-state discrete diffusion (MDLM-style), with an optional mask-and-replace variant.

Forward process: at noise level t in (0, 1] each token is independently corrupted with
probability t (MDLM's linear / loglinear schedule, mask probability = t). Corrupted tokens become
MASK; with ``replace_fraction`` rho > 0 (VQ-Diffusion-style mask-and-replace) a fraction rho of
them instead become a uniformly random code, so the network must also judge visible tokens.

Training: the continuous-time ELBO, CE on masked positions weighted by 1/t. With rho > 0 the
network must also predict x0 at visible positions (some of which are replaced); those get
weight 1 (VQ-Diffusion's auxiliary x0 loss). The masked part is the absorbing ELBO either way.

Reverse process (``advance``): T steps on the grid t_j = 1 - j/T. Step j commits exactly
round(N (j+1)/T) - round(N j/T) new tokens at uniformly random masked positions (MDLM's random
unmasking order; fixing the count instead of drawing it binomially makes "the first step at
which >= f N tokens are committed" the same step for the whole batch), each drawn from the
network's x0 prediction after guidance, temperature and top-p. With ``mask_and_replace`` (only
for networks trained with rho > 0) every visible token is also re-drawn from the x0 prediction
and, if the draw differs, replaced with the posterior probability (t - s) / t that a token
visible at t but wrong was still clean at s; committed tokens can then change. In the nested
designs' continuations (``state.freeze_committed``, set by ``sampling.resume``) they do not: the
revision coins are still drawn (the same randomness per step), the revisions they would make are
kept out and counted in ``trace["suppressed"]``, as the vq_diffusion backend does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ibdiv.families.masking import heldout_bits_per_token  # noqa: F401  (the family's likelihood)
from ibdiv.families.backbone import (Backbone, BackboneConfig, DecodeState, Guidance, draw, draw_at, sampling_log_probs,
                                     uniform)

KNOBS = {"steps": 12, "temperature": 1.0, "top_p": 1.0, "cfg_scale": 1.0,
         "mask_and_replace": False}
SCHEDULE_KNOBS = ("steps",)
MIN_NOISE = 1e-3  # MDLM's sampling_eps: keeps the 1/t weight finite


class DiffusionPrior(Backbone):
    family = "diffusion"
    causal = False

    def __init__(self, config: BackboneConfig, replace_fraction: float = 0.0):
        super().__init__(config)
        self.replace_fraction = replace_fraction

    @classmethod
    def build(cls, vocab_size, seq_len, n_classes, cfg):
        model = super().build(vocab_size, seq_len, n_classes, cfg)
        model.replace_fraction = cfg["replace_fraction"]
        return model

    def spec(self) -> dict:
        return {**super().spec(), "replace_fraction": self.replace_fraction}

    @classmethod
    def from_spec(cls, spec):
        return cls(BackboneConfig(**spec["config"]), spec["replace_fraction"])


PRIOR = DiffusionPrior


def training_loss(model: DiffusionPrior, tokens, labels, gen: torch.Generator) -> torch.Tensor:
    """Continuous-time absorbing ELBO (nats/token) plus, for rho > 0, the visible-token x0 loss."""
    n, N = tokens.shape
    # stratified noise levels (MDLM's antithetic sampling): lower-variance ELBO estimate
    device = tokens.device
    t = (uniform(1, gen, device) + torch.arange(n, device=device) / n) % 1.0
    t = (MIN_NOISE + (1 - MIN_NOISE) * t)[:, None]
    corrupted = uniform((n, N), gen, device) < t
    replaced = corrupted & (uniform((n, N), gen, device) < model.replace_fraction)
    random_codes = torch.randint(0, model.config.vocab_size, (n, N), generator=gen).to(device)
    noisy = torch.where(replaced, random_codes, tokens)
    masked = corrupted & ~replaced
    noisy = noisy.masked_fill(masked, model.mask_id)
    ce = F.cross_entropy(model(noisy, labels).transpose(1, 2), tokens, reduction="none")
    weight = masked / t
    if model.replace_fraction > 0:
        weight = weight + (~masked).float()
    return (ce * weight).sum() / tokens.numel()


def committed_after_step(N: int, steps: int) -> list[int]:
    """Tokens committed after each reverse step: round(N (j+1) / T), ending at N."""
    return [math.floor(N * (j + 1) / steps + 0.5) for j in range(steps)]


def check_replace_knob(model: DiffusionPrior, knobs: dict) -> None:
    if knobs["mask_and_replace"] and model.replace_fraction == 0:
        raise ValueError("mask_and_replace needs a network trained with replace_fraction > 0; "
                         "an absorbing-only network never learned to judge visible tokens")


def start(model: DiffusionPrior, classes: torch.Tensor, knobs: dict) -> DecodeState:
    check_replace_knob(model, knobs)
    # "suppressed" only where revisions can happen: a nested design's cache then records
    # suppressed_replacements (ibdiv.measure.probes), an absorbing-only run's stays as it was
    keys = ("committed", "revised", "suppressed") if knobs["mask_and_replace"] else ("committed", "revised")
    return DecodeState.fresh(classes, model.config.seq_len, model.mask_id, knobs["steps"],
                             {"steps": knobs["steps"]}, trace_keys=keys)


@torch.no_grad()
def advance(model: DiffusionPrior, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Run reverse steps until done or ``cut_fraction`` is reached.

    Randomness per step, in this order: unmasking order (n, N), token draws (n, N, K), and with
    mask-and-replace the revision coins (n, N). Steps that commit nothing (T > N) draw nothing.
    With ``state.freeze_committed`` no committed token is revised (``trace["suppressed"]`` counts
    the revisions kept out; ``trace["revised"]`` stays 0).
    """
    check_replace_knob(model, knobs)
    guide = Guidance(model, state.classes, knobs["cfg_scale"], perturbation)
    T, N = state.total_steps, state.tokens.shape[1]
    targets = committed_after_step(N, T)
    while not state.finished and not state.reached(cut_fraction):
        j = state.step
        n_new = targets[j] - (targets[j - 1] if j else 0)
        revised = suppressed = 0
        if n_new or knobs["mask_and_replace"]:
            order = uniform(state.tokens.shape, gen, state.tokens.device)
            order = order.masked_fill(state.committed, math.inf)
            first = order.topk(n_new, dim=1, largest=False).indices
            newly = torch.zeros_like(state.committed).scatter(1, first, True)
            if knobs["mask_and_replace"]:  # every visible token is re-drawn: every position's logits
                logits = guide.logits(model(guide.batch(state.tokens), guide.classes, **guide.kwargs))
                sampled, lp = draw(sampling_log_probs(logits, knobs["temperature"], top_p=knobs["top_p"]), gen)
            else:  # only the positions committed now are read: their logits only, the same uniforms
                first = first.sort(1).values
                logits = guide.logits(model(guide.batch(state.tokens), guide.classes, positions=guide.batch(first),
                                            **guide.kwargs))
                sampled, lp = draw_at(sampling_log_probs(logits, knobs["temperature"], top_p=knobs["top_p"]),
                                      first, N, gen)
            update = newly
            if knobs["mask_and_replace"]:
                t, s = 1 - j / T, 1 - (j + 1) / T
                coin = uniform(state.tokens.shape, gen, state.tokens.device) < (t - s) / t
                revise = state.committed & (sampled != state.tokens) & coin
                if state.freeze_committed:  # a nested continuation: the prefix stays the path's
                    suppressed, revise = int(revise.sum()), torch.zeros_like(revise)
                revised = int(revise.sum())
                update = newly | revise
            state.tokens = torch.where(update, sampled, state.tokens)
            state.logprobs = torch.where(update, lp, state.logprobs)
            state.committed = state.committed | newly
        state.step += 1
        state.trace["committed"].append(targets[j])
        state.trace["revised"].append(revised)
        if "suppressed" in state.trace:
            state.trace["suppressed"].append(suppressed)
    return state
