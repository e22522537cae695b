"""Autoregressive family: next-token prediction in raster order after a class prefix (LlamaGen c2i).

Sampling: one token per step; CFG, temperature, top-k, top-p (in that order, as LlamaGen), with
or without a KV cache. The recorded log-prob of each token is under the distribution it was
actually drawn from (after guidance and truncation), so summing them gives the sampler's exact
sequence log-probability.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ibdiv.families.backbone import (Backbone, DecodeState, Guidance, KVCache, draw, repeated_rows,
                                     sampling_log_probs)

KNOBS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "cfg_scale": 1.0, "kv_cache": True}
SCHEDULE_KNOBS: tuple[str, ...] = ()  # one token per step: the grid is fixed by N


class ARPrior(Backbone):
    family = "ar"
    causal = True

    def forward_step(self, new_tokens, classes, cache: KVCache, *, cond_override=None,
                     code_table=None) -> torch.Tensor:
        """TokenPrior.forward_step; on an empty cache, samples whose inputs are bit-identical (a nested
        design's R continuations of one path: its prefix) are run once and their keys, values and
        logits repeated (backbone.repeated_rows: a sample's result does not depend on its batch)."""
        if cache.length or not len(new_tokens):
            return super().forward_step(new_tokens, classes, cache, cond_override=cond_override,
                                        code_table=code_table)
        x = torch.cat([self.condition(classes, cond_override)[:, None], self.embed_tokens(new_tokens, code_table)],
                      dim=1)
        runs = repeated_rows(x)
        if runs is None:
            return self._run(x, 0, cache)[:, -1]
        first, counts = runs
        logits = self._run(x[first], 0, cache)[:, -1]
        cache.keys = [k.repeat_interleave(counts, dim=0) for k in cache.keys]
        cache.values = [v.repeat_interleave(counts, dim=0) for v in cache.values]
        return logits.repeat_interleave(counts, dim=0)


PRIOR = ARPrior


def training_loss(model: ARPrior, tokens, labels, gen: torch.Generator) -> torch.Tensor:
    """Mean next-token cross-entropy (nats/token); ``generator`` is unused (no noise needed)."""
    logits = model(tokens, labels)
    return F.cross_entropy(logits.flatten(0, 1), tokens.flatten())


@torch.no_grad()
def heldout_bits_per_token(model: ARPrior, tokens, labels, gen: torch.Generator) -> float:
    """Exact negative log-likelihood in bits per token."""
    logits = model(tokens, labels)
    nats = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="sum")
    return nats.item() / (tokens.numel() * math.log(2))


def start(model: ARPrior, classes: torch.Tensor, knobs: dict) -> DecodeState:
    N = model.config.seq_len
    return DecodeState.fresh(classes, N, model.mask_id, total_steps=N, schedule={})


@torch.no_grad()
def advance(model: ARPrior, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Sample tokens state.step, state.step + 1, ... until done or ``cut_fraction`` is reached.

    The cache is always rebuilt from the committed prefix on entry: a resumed run reads the
    prefix through its own (possibly different) perturbation, like MIM and diffusion do; through
    the clean code table where that perturbation names it as the path (``sampling.after_cut``).
    Without ``kv_cache`` the prefix is recomputed at every step (reference behaviour).
    """
    guide = Guidance(model, state.classes, knobs["cfg_scale"], perturbation)
    cache, fed = KVCache(), 0
    while not state.finished and not state.reached(cut_fraction):
        i = state.step
        if not knobs["kv_cache"]:
            cache, fed = KVCache(), 0
        new = guide.batch(state.tokens[:, fed:i])
        logits = guide.logits(model.forward_step(new, guide.classes, cache, **guide.kwargs))
        fed = i
        log_probs = sampling_log_probs(logits, knobs["temperature"], knobs["top_k"], knobs["top_p"])
        state.commit_next(*draw(log_probs, gen))
    return state
