"""Independent family: per-class, per-position categorical tables counted from training tokens.

p(z_i = k | c) = (count[c, i, k] + alpha) / (count[c, i] + K alpha). No cross-token structure by
construction: the yardstick for how much joint structure the learned families picked up.
Sampled position by position in raster order (like AR) so that stop/resume cuts at the same
token counts; it has no embeddings, so perturbations do not apply.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ibdiv.families.backbone import DecodeState, draw, sampling_log_probs

KNOBS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
SCHEDULE_KNOBS: tuple[str, ...] = ()


class IndependentPrior(nn.Module):
    family = "independent"

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int, alpha: float = 0.5):
        super().__init__()
        self.vocab_size, self.seq_len, self.n_classes = vocab_size, seq_len, n_classes
        self.alpha = alpha
        self.register_buffer("counts", torch.zeros(n_classes, seq_len, vocab_size))

    @classmethod
    def build(cls, vocab_size: int, seq_len: int, n_classes: int, cfg: dict):
        return cls(vocab_size, seq_len, n_classes, cfg["alpha"])

    def spec(self) -> dict:
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len,
                "n_classes": self.n_classes, "alpha": self.alpha}

    @classmethod
    def from_spec(cls, spec: dict):
        return cls(**spec)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def fit(self, tokens: torch.Tensor, labels: torch.Tensor) -> "IndependentPrior":
        positions = torch.arange(self.seq_len, device=tokens.device).expand_as(tokens)
        index = (labels[:, None].expand_as(tokens), positions, tokens)
        self.counts.index_put_(index, torch.ones(tokens.shape, device=tokens.device), accumulate=True)
        return self

    def log_probs(self, classes: torch.Tensor) -> torch.Tensor:
        """(n, N, K) smoothed log-probabilities."""
        smoothed = self.counts[classes] + self.alpha
        return (smoothed / smoothed.sum(-1, keepdim=True)).log()


PRIOR = IndependentPrior


def heldout_bits_per_token(model: IndependentPrior, tokens, labels, gen=None) -> float:
    """Exact negative log-likelihood in bits per token."""
    log_p = model.log_probs(labels).gather(-1, tokens[..., None])
    return -log_p.sum().item() / (tokens.numel() * math.log(2))


def start(model: IndependentPrior, classes: torch.Tensor, knobs: dict) -> DecodeState:
    return DecodeState.fresh(classes, model.seq_len, model.mask_id, model.seq_len, {})


@torch.no_grad()
def advance(model: IndependentPrior, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Draw positions state.step, state.step + 1, ... (randomness: (n, K) per position)."""
    if perturbation is not None:
        raise ValueError("the independent family has no embeddings to perturb")
    table = model.log_probs(state.classes)
    while not state.finished and not state.reached(cut_fraction):
        i = state.step
        log_probs = sampling_log_probs(table[:, i], knobs["temperature"], knobs["top_k"],
                                       knobs["top_p"])
        state.commit_next(*draw(log_probs, gen))
    return state
