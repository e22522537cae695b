"""What the masked (absorbing-state) families share: the mask schedules and the absorbing-diffusion
ELBO that scores MIM, diffusion and the masked pretrained backends on one scale (DESIGN §3)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ibdiv.families.backbone import Backbone, uniform

MASK_SCHEDULES = {
    "cosine": lambda r: math.cos(math.pi / 2 * r),  # MaskGIT default
    "linear": lambda r: 1.0 - r,
}


SEQUENCES_PER_DRAW = 256  # mask draws are made for this many sequences at a time: bounded memory,
# and the same draws whatever ``rows_per_call`` is (the chunking of the network calls)


def mask_levels(n: int, N: int, levels: int | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, M) mask sizes k and (n, M) weights of a stratified draw over k = 1..N.

    k = 1..N is split into M = min(levels, N) strata of consecutive sizes (equal up to rounding);
    each sequence draws one k uniformly in every stratum, weighted by the stratum's size, so
    sum_j weight_j f(k_j) is an unbiased estimate of sum_{k=1..N} f(k). With ``levels`` None (or
    >= N) every stratum holds one k: all N sizes, weight 1 (the exact sum over sizes)."""
    M = N if levels is None else min(int(levels), N)
    edges = torch.div(torch.arange(M + 1) * N, M, rounding_mode="floor")  # stratum j: k in (edges[j], edges[j+1]]
    width = edges[1:] - edges[:-1]
    if M == N:
        return torch.arange(1, N + 1).expand(n, N), torch.ones(n, N)
    u = torch.rand((n, M), generator=gen)
    k = edges[:-1] + 1 + (u * width).long().clamp(max=width - 1)
    return k, width.float().expand(n, M)


@torch.no_grad()
def nelbo_per_sequence(model: Backbone, tokens, labels, gen: torch.Generator, *, levels: int | None = None,
                       rows_per_call: int | None = None) -> torch.Tensor:
    """(n,) absorbing-diffusion NELBO of each sequence in nats, an upper bound on its exact NLL.

    Uses the any-order form of the continuous-time ELBO (equal in expectation):
    -log p(x) <= sum_{k=1..N} E_{|M|=k} (1/k) sum_{i in M} -log p(x_i | x outside M),
    estimated with one uniformly random mask set M per mask size drawn (``mask_levels``: all N
    sizes when ``levels`` is None, the exact sum over sizes; else a fixed number of stratified
    sizes per sequence, a Monte-Carlo estimate of the same bound whose cost does not grow with N).
    It needs only p(x_i | visible tokens) from a bidirectional network, so MIM is scored with it too.
    Each masked copy of a sequence is one row of a network call; ``rows_per_call`` rows go through
    the network at a time (the memory knob: the draws, hence the result, do not depend on it; None:
    the rows of SEQUENCES_PER_DRAW sequences in one call, the in-house families' small sizes)."""
    N = tokens.shape[1]
    out = []
    for x, y in zip(tokens.split(SEQUENCES_PER_DRAW), labels.split(SEQUENCES_PER_DRAW)):
        k, w = mask_levels(len(x), N, levels, gen)
        M = k.shape[1]
        rank = uniform((len(x), M, N), gen, x.device).argsort(-1).argsort(-1)
        masks = (rank < k.to(x.device)[..., None]).reshape(-1, N)
        rows, row_labels = x.repeat_interleave(M, 0), y.repeat_interleave(M, 0)
        step = rows_per_call or len(rows)
        per_row = torch.cat([_masked_nll(model, rows[i:i + step], row_labels[i:i + step], masks[i:i + step])
                             for i in range(0, len(rows), step)])
        out.append((per_row.reshape(len(x), M) * (w / k).double().to(x.device)).sum(1))
    return torch.cat(out)


def _masked_nll(model: Backbone, rows, labels, masked) -> torch.Tensor:
    """(rows,) summed -log p(x_i | visible) over the masked positions of each row (float64)."""
    logits = model(rows.masked_fill(masked, model.mask_id), labels)
    nll = F.cross_entropy(logits.transpose(1, 2), rows, reduction="none")
    return (nll * masked).sum(1).double()


@torch.no_grad()
def heldout_bits_per_token(model: Backbone, tokens, labels, gen: torch.Generator, *, levels: int | None = None,
                           rows_per_call: int | None = None) -> float:
    """Absorbing-diffusion NELBO in bits/token (``nelbo_per_sequence``): exact over mask sizes
    by default (the in-house families: cheap), Monte-Carlo with ``levels`` sizes per sequence."""
    per_sequence = nelbo_per_sequence(model, tokens, labels, gen, levels=levels, rows_per_call=rows_per_call)
    return per_sequence.sum().item() / (tokens.numel() * math.log(2))
