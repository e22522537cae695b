"""Oracle family for `shapes`: the true data-generating process behind the sampler interface.

The process has two steps, so its path/execution split is known by construction (DESIGN §3):

1. **path stage**: a layout per sample, uniformly random among ``shapes.N_LAYOUTS``
   (``shapes.sample_layouts``); commits no tokens.
2. **execution stage**: rendering noise (``shapes.render``) and tokenisation with the trained
   VQ tokenizer (``vq.encode``); commits all N tokens at once.

Cuts (DESIGN §4, I1): any ``cut_fraction`` in (0, 1) cuts after the path stage (the known path cut:
committed_fraction 0, process_fraction 0.5); ``cut_fraction <= 0`` cuts before it, like the other
families; ``cut_fraction >= 1`` (or None) runs to the end. ``resume`` with another RNG draws new
execution noise for the same layouts; with the same RNG state it reproduces the
uninterrupted run exactly.

Randomness: each step draws one 63-bit seed from the torch RNG (path stage first, then
execution stage) and runs numpy's ``default_rng(seed)``, so everything comes from the generator
in a fixed order. The chosen layouts are recorded in ``trace["layouts"]`` (one int per sample,
set by the path stage); read them with ``layout_of``. Log-probabilities are not defined for the
oracle (NaN), nor is held-out bits per token; there are no knobs and no embeddings to perturb.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ibdiv.data import shapes
from ibdiv.families.backbone import DecodeState
from ibdiv.data.tokenizer import VQVAE

KNOBS: dict = {}
SCHEDULE_KNOBS: tuple[str, ...] = ()

PATH_STEPS = 1  # steps of the path stage (layout choice)
TOTAL_STEPS = 2  # path stage + execution stage
_SEED_HIGH = 2**63 - 1  # seeds are drawn in [0, 2**63 - 1)


class OraclePrior(nn.Module):
    """The `shapes` generating process as a "prior": layouts, then noisy renders, then VQ codes."""

    family = "oracle"

    def __init__(self, vq: VQVAE):
        super().__init__()
        self.vq = vq
        self.image_size = vq.cfg.image_size
        self.vocab_size = vq.cfg.codebook_size
        self.seq_len = vq.cfg.grid ** 2
        self.n_classes = len(shapes.CLASS_NAMES)
        self.n_layouts = shapes.N_LAYOUTS
        self.eval()  # nothing to train; keeps sampling from flipping the tokenizer to train mode

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def spec(self) -> dict:
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len,
                "n_classes": self.n_classes, "image_size": self.image_size}


PRIOR = OraclePrior


def heldout_bits_per_token(model: OraclePrior, tokens, labels, gen=None) -> float:
    raise NotImplementedError(
        "held-out bits per token is not defined for the oracle family: the tokenised shapes "
        "process has no tractable likelihood over token grids (use the learned or independent "
        "families for a likelihood)")


def start(model: OraclePrior, classes: torch.Tensor, knobs: dict) -> DecodeState:
    classes = torch.as_tensor(classes, dtype=torch.long).cpu()
    if classes.ndim != 1:
        raise ValueError(f"classes must be 1-D, got shape {tuple(classes.shape)}")
    if len(classes) and (classes.min() < 0 or classes.max() >= model.n_classes):
        raise ValueError(f"classes must lie in [0, {model.n_classes}), got "
                         f"[{classes.min().item()}, {classes.max().item()}]")
    state = DecodeState.fresh(classes, model.seq_len, model.mask_id, TOTAL_STEPS, {})
    state.trace["layouts"] = None  # set by the path stage
    return state


def _should_stop(state: DecodeState, cut_fraction: float | None) -> bool:
    if cut_fraction is None:
        return False
    if cut_fraction <= 0:
        return True  # like the other families: nothing committed yet already reaches the cut
    if cut_fraction < 1:
        return state.step >= PATH_STEPS  # the known path cut
    return state.reached(cut_fraction)  # >= 1: only when every token is committed (i.e. finished)


def _numpy_rng(gen: torch.Generator) -> np.random.Generator:
    seed = torch.randint(0, _SEED_HIGH, (1,), generator=gen, dtype=torch.long).item()
    return np.random.default_rng(seed)


@torch.no_grad()
def advance(model: OraclePrior, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """Step 1: draw layouts; step 2: render with execution noise and tokenise."""
    if perturbation is not None:
        raise ValueError("the oracle family has no embeddings to perturb")
    while not state.finished and not _should_stop(state, cut_fraction):
        if state.step == 0:  # path stage
            layouts = shapes.sample_layouts(len(state.classes), _numpy_rng(gen))
            state.trace["layouts"] = [int(v) for v in layouts]
        else:  # execution stage
            layouts = np.asarray(state.trace["layouts"], dtype=np.int64)
            images = shapes.render(state.classes.numpy(), layouts, model.image_size,
                                   _numpy_rng(gen))
            codes = model.vq.encode(images) if len(images) else np.zeros((0, model.seq_len))
            state.tokens = torch.as_tensor(codes, dtype=torch.long).reshape(-1, model.seq_len)
            state.committed[:] = True
        state.step += 1
        state.trace["committed"].append(int(state.committed.sum(1).min().item())
                                        if len(state.classes) else 0)
    return state


def layout_of(result) -> np.ndarray:
    """Layouts (int64, one per sample) of a finished or cut ``SampleResult`` (or a DecodeState)."""
    trace = result.trace
    layouts = trace.get("layouts")
    if layouts is None:
        raise ValueError("no layouts yet: the path stage has not run (cut at cut_fraction <= 0?)")
    return np.asarray(layouts, dtype=np.int64)
