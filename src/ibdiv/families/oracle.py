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

``TunableOracle`` (registry family ``oracle_knobs``, implementation ``TUNABLE``) is the same process
with two zero-shot handles, so that the decoupling probe can act on a *natural* process whose split
is known (DESIGN §5): it has a condition table and a code table like a trained prior.

* **path-stage knob (I2)**: the layout is drawn from logits −pull · dev_c · r_l, dev_c the mean
  squared deviation per element of the condition it reads from the clean class row (in units of the
  class table's variance) and r_l the distance of layout l's anchor from the canvas centre (in
  anchor steps): a blurred condition falls back on central placements. Clean, the layouts are
  uniform, as in the dataset.
* **execution-stage knob (I3)**: the renderer reads the code table; dev_z is the deviation of the
  table it reads (as dev_c). ``decoupled``: the rendering noise is scaled by 1 + gain · dev_z, the
  layout is the path's. ``entangled``: the renderer reads the layout through that table and
  misreads it with probability min(1, misread · dev_z), rendering a uniformly drawn layout instead
  (a noisy reading of the layout). Both draw the same random numbers whatever the noise, so
  sigma = 0 is bit-identical to no perturbation. The layout rendered is recorded in
  ``trace["rendered"]``: the ground truth of whether a continuation kept its path.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

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
WIRINGS = ("decoupled", "entangled")


@dataclass(frozen=True)
class OracleKnobs:
    """How the tunable oracle's two stages read their tables (module docstring)."""

    wiring: str = "decoupled"
    d_model: int = 16
    pull: float = 8.0  # I2: layout logits -pull x dev_c x distance from the centre
    gain: float = 2.0  # I3, decoupled: rendering noise x (1 + gain x dev_z)
    misread: float = 2.0  # I3, entangled: P(render another layout) = min(1, misread x dev_z)
    seed: int = 0  # the tables' own random numbers (not the sampling seed)


class TunableOracle(OraclePrior):
    """The shapes process with a condition table (I2 tilts its layout choice) and a code table (I3
    acts on its rendering): ``OracleKnobs``. ``vq`` may be any tokenizer with ``cfg`` (image_size,
    codebook_size, grid) and ``encode``."""

    family = "oracle_knobs"

    def __init__(self, vq, knobs: OracleKnobs = OracleKnobs()):
        super().__init__(vq)
        if knobs.wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {WIRINGS}, got {knobs.wiring!r}")
        self.knobs = knobs
        self.config = types.SimpleNamespace(vocab_size=self.vocab_size, seq_len=self.seq_len,
                                            n_classes=self.n_classes, d_model=knobs.d_model)
        g = torch.Generator().manual_seed(knobs.seed)
        self.cls_emb = nn.Embedding(self.n_classes + 1, knobs.d_model)  # last row: null (unused)
        self.tok_emb = nn.Embedding(self.vocab_size + 1, knobs.d_model)  # last row: MASK (never read)
        with torch.no_grad():
            self.cls_emb.weight.copy_(torch.randn(self.cls_emb.weight.shape, generator=g))
            self.tok_emb.weight.copy_(torch.randn(self.tok_emb.weight.shape, generator=g))
        self.requires_grad_(False)

    def layout_logits(self, classes: torch.Tensor, cond_noise: torch.Tensor | None) -> np.ndarray:
        """(n, N_LAYOUTS) logits of the path stage: 0 (uniform) for the clean condition."""
        n = len(classes)
        if cond_noise is None:
            return np.zeros((n, self.n_layouts))
        dev = _deviation(cond_noise, self.cls_emb.weight[: self.n_classes]).numpy()
        return -self.knobs.pull * dev[:, None] * _centre_distance(self.n_layouts)[None, :]

    def code_deviation(self, code_noise: torch.Tensor | None, n: int) -> np.ndarray:
        """(n,) dev_z of the code table the renderer reads (0 without codebook noise)."""
        if code_noise is None:
            return np.zeros(n)
        return _deviation(code_noise, self.tok_emb.weight[: self.vocab_size]).numpy()


def _deviation(noise: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Mean squared noise per element of each sample, in units of the table's mean square."""
    return noise.detach().pow(2).reshape(len(noise), -1).mean(1) / table.detach().pow(2).mean()


def _centre_distance(n_layouts: int) -> np.ndarray:
    """Distance of each layout's anchor from the canvas centre, in anchor steps (0, 1 or sqrt 2):
    the 3 x 3 anchors of shapes.layout_params, layout = size x 9 + anchor."""
    anchor = np.arange(n_layouts) % 9
    ay, ax = np.divmod(anchor, 3)
    return np.hypot(ax - 1, ay - 1)


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
    tunable = isinstance(model, TunableOracle)
    if perturbation is not None and not tunable:
        raise ValueError("the oracle family has no embeddings to perturb")
    cond_noise = None if perturbation is None else perturbation.cond_noise
    code_noise = None if perturbation is None else perturbation.code_noise
    while not state.finished and not _should_stop(state, cut_fraction):
        if state.step == 0:  # path stage
            rng = _numpy_rng(gen)
            if tunable:
                layouts = _draw(model.layout_logits(state.classes, cond_noise), rng)
            else:
                layouts = shapes.sample_layouts(len(state.classes), rng)
            state.trace["layouts"] = [int(v) for v in layouts]
        else:  # execution stage
            layouts = np.asarray(state.trace["layouts"], dtype=np.int64)
            rng, scale = _numpy_rng(gen), 1.0
            if tunable:
                layouts, scale = _execution_reads(model, layouts, code_noise, rng)
                state.trace["rendered"] = [int(v) for v in layouts]
            images = shapes.render(state.classes.numpy(), layouts, model.image_size, rng, scale)
            codes = model.vq.encode(images) if len(images) else np.zeros((0, model.seq_len))
            state.tokens = torch.as_tensor(codes, dtype=torch.long).reshape(-1, model.seq_len)
            state.committed[:] = True
        state.step += 1
        state.trace["committed"].append(int(state.committed.sum(1).min().item())
                                        if len(state.classes) else 0)
    return state


def _draw(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row by inverse CDF (one uniform each, whatever the logits)."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    cdf = np.cumsum(p / p.sum(1, keepdims=True), axis=1)
    u = rng.random(len(logits))
    return np.minimum((cdf < u[:, None]).sum(1), logits.shape[1] - 1).astype(np.int64)


def _execution_reads(model: "TunableOracle", layouts: np.ndarray, code_noise, rng: np.random.Generator):
    """The layouts rendered and the rendering-noise scale, from the code table the renderer reads.
    The coins and the redrawn layouts are drawn whatever the wiring and noise (same random numbers)."""
    n, knobs = len(layouts), model.knobs
    dev = model.code_deviation(code_noise, n)
    coin, redrawn = rng.random(n), rng.integers(0, model.n_layouts, size=n)
    if knobs.wiring == "entangled":
        misread = coin < np.minimum(1.0, knobs.misread * dev)
        return np.where(misread, redrawn, layouts), 1.0
    return layouts, 1.0 + knobs.gain * dev


TUNABLE = types.SimpleNamespace(KNOBS=KNOBS, SCHEDULE_KNOBS=SCHEDULE_KNOBS, PRIOR=TunableOracle, start=start,
                                advance=advance, heldout_bits_per_token=heldout_bits_per_token)


def layout_of(result) -> np.ndarray:
    """Layouts (int64, one per sample) of a finished or cut ``SampleResult`` (or a DecodeState)."""
    trace = result.trace
    layouts = trace.get("layouts")
    if layouts is None:
        raise ValueError("no layouts yet: the path stage has not run (cut at cut_fraction <= 0?)")
    return np.asarray(layouts, dtype=np.int64)
