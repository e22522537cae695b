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


@torch.no_grad()
def heldout_bits_per_token(model: Backbone, tokens, labels, gen: torch.Generator,
                           chunk: int = 256) -> float:
    """Absorbing-diffusion NELBO in bits/token, an upper bound on the exact NLL.

    Uses the any-order form of the continuous-time ELBO (equal in expectation):
    -log p(x) <= sum_{k=1..N} E_{|M|=k} (1/k) sum_{i in M} -log p(x_i | x outside M),
    estimated with one uniformly random mask set M per k and sequence. It needs only
    p(x_i | visible tokens) from a bidirectional network, so MIM is scored with it too.
    """
    N = tokens.shape[1]
    total = 0.0
    for x, y in zip(tokens.split(chunk), labels.split(chunk)):
        k = torch.arange(1, N + 1, device=x.device).repeat(x.shape[0])  # masks of every size, per sequence
        xs, ys = x.repeat_interleave(N, 0), y.repeat_interleave(N, 0)
        rank = uniform(xs.shape, gen, x.device).argsort(1).argsort(1)
        masked = rank < k[:, None]
        logits = model(xs.masked_fill(masked, model.mask_id), ys)
        nll = F.cross_entropy(logits.transpose(1, 2), xs, reduction="none")
        total += ((nll * masked).sum(1) / k).sum().item()
    return total / (tokens.numel() * math.log(2))
