"""Synthetic token generators with known behaviour, for calibrating the diagnostics (DESIGN §5).

A verdict (a label, an SE, a null) is trusted once a constructed case with known truth shows it.
`CalibrationPrior` is a tiny generator behind the normal sampler interface: it has a condition
embedding table and a code-embedding table, so the real probes (condition noise I2, codebook
noise I3, the path clamp I1) act on it exactly as on a trained family, but its mechanism is
written out by hand:

* the **path**: position 0 picks one of M modes from logits b_cm + <e - e_c, V_cm> (e the
  condition embedding it reads, e_c the clean one, so I2 reshapes the mode distribution);
  positions 1 .. n_path-1 then spell the mode out (they are committed with it);
* the **execution**: every later position j draws a code near a mode-specific target t(c, m, j),
  among a small support of L codes, with logits gain * <W_k, W_t> / d (W the code-embedding
  table, so I3 reshapes the spread around the target).

Two ways to wire the execution make the cases of DESIGN §5:

* ``decoupled``: the target is a fixed lookup of the mode and the supports of different modes
  are disjoint; the gain is the same for every mode. Condition noise before the cut can only move
  the path, codebook noise after it only the spread around a known target: path and execution
  diversity respond to different interventions.
* ``entangled``: the path is a mode and a sharpness (position 1: sharp or soft execution, sharp
  preferred by the class), and the continuation carries it through what it has itself written: sharp
  and soft executions of a mode use disjoint supports, so every execution token spells the whole
  state, and each step follows the state its last token spells. The first execution step picks the
  path up through the code table it writes with and misreads it with a probability that grows with
  that table's deviation (misread_probability), re-drawing the state from the class's clean prior;
  the continuation then follows the misread state to its end (a misread persists, as in a network
  that has misread its path). Codebook noise after the cut (it perturbs the reads of the tokens
  committed after it, never the path's: DESIGN §4) then moves whole continuations to another path:
  the joint information I(X; path | c) falls and H(X | path, c) rises by about as much; condition
  noise before the cut changes the mix of sharp and soft paths (moves both columns). Each
  intervention moves both columns. (Until 2026-12-07 a misread lasted one token and the first step
  never misread, so every continuation still spelled its path: jointly decoupled,
  docs/methods-joint-path.md.)

``mode_read = "embedding"`` (decoupled wiring only) makes the execution identify its mode, at its
first step, from the embedding of token 0 read through the code table rather than symbolically, and
then follow the mode its last token spells. Under the fixed I3 that read is clean (token 0 is the
path), so the case stays Decoupled; under the old whole-table I3 the read is noisy, a misread persists
and the case looks entangled (tests/test_calibration.py shows both).

Two more constructions exercise κ, the codebook-entropy ratio that η divides by:

* ``layout="shared"``: every class and position spells its modes with the same codes (the
  default ``"spread"`` gives each class and position its own random offset). Which codes a cell
  uses changes the pooled code usage H(Z) a lot and the per-position conditional diversity D
  little, so a generator and data built in the two layouts differ in κ at δ ≈ 1;
* ``wiring="iid"``: every token is drawn independently from one fixed distribution over the K
  codes (no class, no position, no path; neither perturbation reaches it). Its H(Z), H_pos and
  D are all that distribution's entropy, so sampled colder than its data it loses codebook
  entropy and conditional diversity in proportion: κ = δ, η = 1.

Temperature (the one knob) scales every logit: sampled hotter or colder than the data's own
distribution (temperature 1), the generator spreads or concentrates its conditional diversity,
which is how the Diversity- and Compression-Prioritized cases are built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

import torch
from torch import nn

from ibdiv.families import ar
from ibdiv.families.backbone import CodeReads, DecodeState, TokenPrior, code_reads, draw, sampling_log_probs

KNOBS = {"temperature": 1.0}
SCHEDULE_KNOBS: tuple[str, ...] = ()
WIRINGS = ("decoupled", "entangled", "iid")
MODE_READS = ("symbolic", "embedding")
LAYOUTS = ("spread", "shared")


@dataclass(frozen=True)
class CalibrationConfig:
    """Sizes as in the in-house `shapes` setting: 8 classes, 4x4 tokens, K = 64."""

    wiring: str = "decoupled"
    n_classes: int = 8
    vocab_size: int = 64
    seq_len: int = 16
    d_model: int = 16
    n_modes: int = 4
    n_path: int = 4  # positions committed with the mode: the path is decided at f = n_path / N
    support: int = 4  # codes an execution step chooses among
    path_gain: float = 1.5  # spread of the clean mode logits
    path_sensitivity: float = 2.5  # how far condition noise moves them (jitter SD ~ sigma x this)
    exec_gain: float = 2.0
    mode_read: str = "symbolic"  # decoupled wiring: how the execution knows its mode (module docstring)
    layout: str = "spread"  # which codes spell the modes: a random offset per class and position, or one for all
    iid_gain: float = 1.5  # iid wiring: SD of its fixed logits over the K codes
    seed: int = 0  # the construction's own random tables (not the sampling seed)


class CalibrationPrior(TokenPrior):
    family = "calibration"

    def __init__(self, config: CalibrationConfig):
        super().__init__()
        if config.wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {WIRINGS}, got {config.wiring!r}")
        if config.mode_read not in MODE_READS or (config.mode_read != "symbolic" and config.wiring != "decoupled"):
            raise ValueError(f"mode_read must be one of {MODE_READS} ('embedding' only for the decoupled wiring)")
        C, K, N, d, M = config.n_classes, config.vocab_size, config.seq_len, config.d_model, config.n_modes
        if config.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {config.layout!r}")
        if M * config.support * (2 if config.wiring == "entangled" else 1) > K:
            raise ValueError("n_modes * support (x 2 for the entangled wiring's soft supports) must not exceed the vocabulary")
        self.config = config
        g = torch.Generator().manual_seed(config.seed)
        self.cls_emb = nn.Embedding(C + 1, d)  # last row: the null class (unused, as in Backbone)
        self.tok_emb = nn.Embedding(K + 1, d)  # last row: MASK (never read; perturbations skip it)
        with torch.no_grad():
            self.cls_emb.weight.copy_(torch.randn(C + 1, d, generator=g))
            self.tok_emb.weight.copy_(torch.randn(K + 1, d, generator=g))
        # clean mode logits (SD path_gain) and the directions along which a change of the
        # condition embedding moves them (norm ~ path_sensitivity)
        self.register_buffer("mode_base", config.path_gain * torch.randn(C, M, generator=g))
        self.register_buffer("mode_dirs", config.path_sensitivity * torch.randn(C, M, d, generator=g) / math.sqrt(d))
        # the code that spells mode m at position i of class c: modes sit `support` codes apart,
        # so their supports {t, ..., t + L - 1} never overlap
        offsets = torch.randint(0, K, (C, 1, N), generator=g)  # drawn in both layouts: the later tables stay the same
        if config.layout == "shared":
            offsets = torch.zeros_like(offsets)
        self.register_buffer("mode_codes", (offsets + config.support * torch.arange(M)[None, :, None]) % K)
        # entangled wiring: the class's preference for sharp (first) over soft execution
        self.register_buffer("sharp_dirs", 4.0 * torch.randn(C, 2, d, generator=g) / math.sqrt(d))
        # iid wiring: the one distribution every token is drawn from (reads no table)
        self.register_buffer("iid_logits", config.iid_gain * torch.randn(K, generator=g))

    def mode_logits(self, cond: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(n, M) logits of the path choice: the class's own logits, moved by how far the
        (possibly perturbed) condition embedding is from the clean one."""
        shift = torch.einsum("nd,nmd->nm", cond - self.cls_emb(classes), self.mode_dirs[classes])
        return self.mode_base[classes] + shift

    def sharpness_logits(self, cond: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(n, 2) logits of sharp vs soft execution; clean, every class prefers sharp by 2 nats."""
        clean = torch.einsum("nd,nkd->nk", self.cls_emb(classes), self.sharp_dirs[classes])
        noisy = torch.einsum("nd,nkd->nk", cond, self.sharp_dirs[classes])
        return noisy - clean + torch.tensor([2.0, 0.0])

    def exec_logits(self, codes: torch.Tensor, mode: torch.Tensor, sharp: torch.Tensor, classes: torch.Tensor,
                    position: int) -> torch.Tensor:
        """(n, K) logits of position `position` given the path (mode, and for the entangled wiring
        the sharpness its prefix set), reading the code table `codes` ((n, K, d) or (K, d));
        -inf outside the target's support."""
        cfg = self.config
        n, K, d = len(classes), cfg.vocab_size, cfg.d_model
        codes = codes.expand(n, K, d)
        target = self.mode_codes[classes, mode, position]
        if cfg.wiring == "entangled":  # the spread is set by the path; the table it reads is the clean one
            codes = self.tok_emb.weight[:K].expand(n, K, d)
            gain = torch.where(sharp, 2.0 * cfg.exec_gain, 0.0)
            target = torch.where(sharp, target, (target + cfg.n_modes * cfg.support) % K)  # soft: its own support
        else:
            gain = torch.full((n,), cfg.exec_gain)
        support = (target[:, None] + torch.arange(cfg.support)) % K  # (n, L), disjoint across modes
        candidates = torch.gather(codes, 1, support[..., None].expand(n, cfg.support, d))
        scores = torch.einsum("nld,nd->nl", candidates, codes[torch.arange(n), target]) / d
        return torch.full((n, K), -math.inf).scatter(1, support, gain[:, None] * scores)

    def misread_probability(self, read: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """How often a continuation loses track of its path, (n,): it reads the path as ``read``
        (n, ...) where the clean reading is ``clean`` (the same shape); the further apart (mean
        squared deviation per element, in units of the code table's own variance), the more often
        it re-draws its mode from the class's prior instead."""
        variance = self.tok_emb.weight[: self.config.vocab_size].pow(2).mean()
        deviation = (read - clean).pow(2).reshape(len(read), -1).mean(1) / variance
        return (2.0 * deviation).clamp(max=1.0)

    def state_prior(self, classes: torch.Tensor) -> torch.Tensor:
        """(n, M, 2) the class's clean prior over entangled paths (mode, sharp), index 1 = sharp: what
        a misread re-draws from (sharp and mode independent, as positions 0 and 1 draw them)."""
        cond = self.cls_emb(classes)
        modes = self.mode_logits(cond, classes).softmax(-1)
        sharp = self.sharpness_logits(cond, classes).softmax(-1).flip(-1)  # column 0 of the logits is sharp
        return modes[:, :, None] * sharp[:, None, :]

    def written_state(self, classes: torch.Tensor, tokens: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The entangled state (mode, sharp) whose execution support at ``position`` holds each token
        (sharp supports first, then the soft ones: disjoint); a token in no support reads as mode -1."""
        cfg = self.config
        offset = (tokens - self.mode_codes[classes, 0, position]) % cfg.vocab_size
        slot = offset // cfg.support  # 0 .. 2M - 1 inside the supports
        inside = slot < 2 * cfg.n_modes
        return torch.where(inside, slot % cfg.n_modes, -1), slot < cfg.n_modes

    def table_read_at(self, reads: CodeReads | None, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """(n, K, d): the code table through which the token at ``position`` is read: the clean
        one for a path token (``CodeReads``: noise after the cut spares the path) or without codebook
        noise, each sample's perturbed table otherwise (a position not yet committed included)."""
        n, K = len(tokens), self.config.vocab_size
        clean = self.tok_emb.weight[:K].expand(n, K, -1)
        if reads is None:
            return clean
        if reads.path is None:
            return reads.table
        on_path = reads.path[:, position] == tokens[:, position]
        return torch.where(on_path[:, None, None], clean, reads.table)


class PatchTokenizer:
    """A fixed, untrained tokenizer for the suite's shapes oracle (``families.oracle.TunableOracle``):
    each of the grid x grid patches becomes one of 64 codes, 4 bits for which of its quadrants are
    inked (mean > 0.25) times 4 levels of its mean ink. The suite needs no training; a trained VQ
    would make the suite wait for the tokenizer and change with it."""

    QUADRANT_INK = 0.25
    LEVELS = (0.04, 0.15, 0.35)  # mean-ink bin edges: 4 levels

    def __init__(self, image_size: int = 16, grid: int = 4):
        if image_size % (2 * grid):
            raise ValueError("image_size must split into grid x grid patches of 2 x 2 quadrants")
        self.cfg = SimpleNamespace(image_size=image_size, grid=grid, codebook_size=64)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(n, H, W) images in [0, 1] -> (n, grid * grid) codes in raster order."""
        n, g = len(images), self.cfg.grid
        q = self.cfg.image_size // (2 * g)  # quadrant side
        quadrants = images.reshape(n, g, 2, q, g, 2, q).mean((3, 6))  # (n, g, 2, g, 2)
        bits = (quadrants > self.QUADRANT_INK).transpose(0, 1, 3, 2, 4).reshape(n, g, g, 4)
        pattern = (bits * (1 << np.arange(4))).sum(-1)
        level = np.digitize(quadrants.mean((2, 4)), self.LEVELS)
        return (pattern * 4 + level).reshape(n, g * g).astype(np.int64)


PRIOR = CalibrationPrior
start = ar.start  # raster order, one token per step: a cut at f commits the first f·N tokens


@torch.no_grad()
def advance(model: CalibrationPrior, state: DecodeState, knobs: dict, gen: torch.Generator,
            perturbation=None, cut_fraction: float | None = None) -> DecodeState:
    """One token per step in raster order (a cut at f commits the first f·N tokens, like AR)."""
    cfg, classes = model.config, state.classes
    cond = model.cls_emb(classes)
    if perturbation is not None and perturbation.cond_noise is not None:
        cond = cond + perturbation.cond_noise
    reads = code_reads(model.tok_emb.weight[: cfg.vocab_size], perturbation)
    while not state.finished and not state.reached(cut_fraction):
        i = state.step
        mode, sharp = _path_of(model, state)
        logits = torch.full((len(classes), cfg.vocab_size), -math.inf)
        if cfg.wiring == "iid":
            logits = model.iid_logits.expand(len(classes), cfg.vocab_size)
        elif i == 0:
            logits.scatter_(1, model.mode_codes[classes, :, 0], model.mode_logits(cond, classes))
        elif i == 1 and cfg.wiring == "entangled":  # the path also decides how sharply it is executed
            logits.scatter_(1, (model.mode_codes[classes, mode, 1][:, None] + torch.tensor([0, 1])) % cfg.vocab_size,
                            model.sharpness_logits(cond, classes))
        elif i < cfg.n_path:  # spelled out by the mode: probability one
            logits.scatter_(1, model.mode_codes[classes, mode, i][:, None], 0.0)
        else:
            if cfg.wiring == "entangled":
                mode, sharp = _follow_written(model, reads, state, mode, sharp, gen)
            elif cfg.mode_read == "embedding":
                mode = _read_mode_from_embedding(model, reads, state, mode, gen)
            logits = model.exec_logits(model.table_read_at(reads, state.tokens, i), mode, sharp, classes, i)
        log_probs = sampling_log_probs(logits, knobs["temperature"])
        state.commit_next(*draw(log_probs, gen))
    return state


def _follow_written(model: CalibrationPrior, reads: CodeReads | None, state: DecodeState, mode: torch.Tensor,
                    sharp: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The entangled state (mode, sharp) an execution step follows: the path's at the first execution
    step, unless it misreads the path through the table it writes with (probability misread_probability
    of that table: perturbed by codebook noise after the cut) and re-draws the state from the class's
    clean prior; at every later step the state its last token spells, so a misread persists. Every step
    consumes the same draws, misread or not (the sampler's RNG contract)."""
    classes, i, K = state.classes, state.step, model.config.vocab_size
    coin = torch.rand(len(classes), generator=gen)
    redrawn = torch.multinomial(model.state_prior(classes).reshape(len(classes), -1), 1, generator=gen)[:, 0]
    if i > model.config.n_path:
        return model.written_state(classes, state.tokens[:, i - 1], i - 1)
    read = model.table_read_at(reads, state.tokens, i)  # only the first execution step reads the table
    misread = coin < model.misread_probability(read, model.tok_emb.weight[:K].expand_as(read))
    return torch.where(misread, redrawn // 2, mode), torch.where(misread, redrawn % 2 == 1, sharp)


def _read_mode_from_embedding(model: CalibrationPrior, reads: CodeReads | None, state: DecodeState,
                              mode: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The mode an execution step of ``mode_read = "embedding"`` follows: at the first execution step
    the mode read from token 0's row through the code table (clean under the fixed I3: token 0 is the
    path), a misread re-drawing it from the class's prior; at every later step the mode its last token
    spells (the decoupled supports are disjoint), so a misread persists, as in the entangled wiring.
    Every step consumes the same draws, misread or not (the sampler's RNG contract)."""
    classes = state.classes
    rows = torch.arange(len(classes))
    read = model.table_read_at(reads, state.tokens, 0)[rows, state.tokens[:, 0]]
    clean = model.tok_emb.weight[state.tokens[:, 0]]
    coin = torch.rand(len(classes), generator=gen)
    redrawn = torch.multinomial(model.mode_logits(model.cls_emb(classes), classes).softmax(-1), 1, generator=gen)[:, 0]
    if state.step > model.config.n_path:
        return model.written_state(classes, state.tokens[:, state.step - 1], state.step - 1)[0]
    return torch.where(coin < model.misread_probability(read, clean), redrawn, mode)


def _path_of(model: CalibrationPrior, state: DecodeState) -> tuple[torch.Tensor, torch.Tensor]:
    """The mode each sample's first token spells, and whether its second token chose sharp
    execution (entangled wiring); mode 0 / sharp before they are drawn."""
    codes = model.mode_codes[state.classes, :, 0]  # (n, M)
    mode = (codes == state.tokens[:, :1]).long().argmax(1)
    sharp = state.tokens[:, 1] == model.mode_codes[state.classes, mode, 1]
    return mode, sharp



# --- the generator's own likelihood of a continuation (the joint path column, ibdiv.measure.joint) ---

def path_keys(model: CalibrationPrior, tokens: np.ndarray) -> np.ndarray:
    """(C, P) key of each sampled path (tokens (C, P, R, N), the prefix shared by a path's
    continuations): mode * 2 + sharp, as advance reads them (_path_of)."""
    C, P = tokens.shape[:2]
    state = SimpleNamespace(classes=torch.arange(C).repeat_interleave(P),
                            tokens=torch.as_tensor(tokens[:, :, 0].reshape(C * P, -1)))
    mode, sharp = _path_of(model, state)
    return (mode * 2 + sharp.long()).reshape(C, P).numpy()


@torch.no_grad()
def continuation_log_likelihood(model: CalibrationPrior, tokens: np.ndarray, temperature: float,
                                code_noise: torch.Tensor | None = None, path_read_clean: bool = True) -> np.ndarray:
    """log q(x | u, c) (natural log), (C, P, R, 2M): the exact probability of each continuation's tokens
    after the cut (positions n_path ..) under every path key u = mode * 2 + sharp, teacher-forced through
    the logits advance samples from (exec_logits at `temperature`), misread coins marginalised.

    code_noise (J, K, d): the cell's after-cut codebook noise, as the probe draws it; the result is then
    the cell's own conditional, the mean (in probability) over the J tables. None: the clean model (the
    unperturbed and I2 cells: I2 acts before the cut only). path_read_clean False reads the path through
    the noisy table too (the old whole-table I3; only the embedding read notices)."""
    clean = model.tok_emb.weight[: model.config.vocab_size]
    tables = clean[None] if code_noise is None else clean + code_noise
    per_table = np.concatenate([_log_likelihood_per_table(model, tokens, temperature, tables[j:j + TABLE_CHUNK],
                                                          path_read_clean)
                                for j in range(0, len(tables), TABLE_CHUNK)])  # (J, C, P, R, U)
    top = np.max(per_table, 0)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return top + np.log(np.exp(per_table - top).mean(0))


# Tables read in one batch by continuation_log_likelihood: bounds its memory (~16 x 2.5 MB a table at
# the suite's design, C 8, P 40, R 10) while keeping the per-table Python loop out of the I3 cell's 64.
TABLE_CHUNK = 16


def _log_likelihood_per_table(model: CalibrationPrior, tokens: np.ndarray, temperature: float,
                              tables: torch.Tensor, path_read_clean: bool) -> np.ndarray:
    """(J, C, P, R, U) log q(x | u, c) under each of the J code tables (J, K, d). Only the first execution
    step can misread; the later steps follow the path (decoupled symbolic read) or the state the previous
    token spells (entangled wiring, embedding read), so they are summed once for every key."""
    cfg = model.config
    C, P, R, N = tokens.shape
    n, M = cfg.n_path, cfg.n_modes
    # the entangled wiring executes through the clean table whatever the noise: one table's logits serve all
    logp = _execution_log_probs(model, tables[:1] if cfg.wiring == "entangled" else tables, temperature)
    x = torch.as_tensor(tokens[..., n:], dtype=torch.long).reshape(1, C, 1, P * R, N - n).transpose(3, 4)
    p = torch.gather(logp.exp(), 4, x.expand(len(logp), C, 2 * M, -1, -1)).transpose(3, 4)
    p = p.reshape(len(logp), C, 2 * M, P, R, N - n).numpy()  # (J or 1, C, U, P, R, L): p(x_i | u)
    prior = model.state_prior(torch.arange(C)).reshape(C, 2 * M).double().numpy()  # (C, U): what a misread re-draws
    if cfg.wiring != "entangled":  # the decoupled wiring re-draws the mode only, at the path's sharpness
        prior = (prior.reshape(C, M, 2).sum(-1)[:, :, None] * np.array([0.0, 1.0])).reshape(C, 2 * M)
    mixed = np.einsum("cu,jcupr->jcpr", prior, p[..., 0])[:, :, None]  # the first step under a re-drawn state
    m = _misread_probabilities(model, tables, path_read_clean)[..., None, None]  # (J, C, U, 1, 1)
    first = (1 - m) * p[..., 0] + m * mixed
    if cfg.wiring == "entangled" or cfg.mode_read == "embedding":  # later steps: the state the previous token spells
        later = _written_step_probabilities(model, tokens, logp)[:, :, None]  # (J or 1, C, 1, P, R, L - 1)
    else:
        later = p[..., 1:]
    with np.errstate(divide="ignore"):
        log_q = np.log(first) + np.log(later).sum(-1)  # (J, C, U, P, R)
    return log_q.transpose(0, 1, 3, 4, 2)


def _execution_log_probs(model: CalibrationPrior, tables: torch.Tensor, temperature: float) -> torch.Tensor:
    """(J, C, U, L, K) float64 log-probabilities of every execution step under every path key u = mode * 2
    + sharp, reading each of the J code tables (J, K, d), as advance samples them (exec_logits at
    `temperature`)."""
    cfg = model.config
    C, M, n, N = cfg.n_classes, cfg.n_modes, cfg.n_path, cfg.seq_len
    J, rows = len(tables), C * 2 * M
    classes = torch.arange(C).repeat_interleave(2 * M).repeat(J)
    mode = torch.arange(M).repeat_interleave(2).repeat(C * J)
    sharp = torch.tensor([False, True]).repeat(C * M * J)
    codes = tables.repeat_interleave(rows, 0)  # (J * rows, K, d)
    logp = torch.stack([sampling_log_probs(model.exec_logits(codes, mode, sharp, classes, i), temperature)
                        for i in range(n, N)], 1)
    return logp.reshape(J, C, 2 * M, N - n, -1).double()


def _misread_probabilities(model: CalibrationPrior, tables: torch.Tensor, path_read_clean: bool) -> np.ndarray:
    """(J, C, U) the probability that the first execution step misreads under each code table, as advance
    reads it: the entangled wiring through the table it writes with; the embedding read through token
    0's row (clean when the path is read clean); 0 otherwise (and at every later step)."""
    cfg = model.config
    C, M, K = cfg.n_classes, cfg.n_modes, cfg.vocab_size
    J, clean = len(tables), model.tok_emb.weight[:K]
    m = np.zeros((J, C, 2 * M))
    if cfg.wiring == "entangled":
        m[:] = model.misread_probability(tables, clean.expand_as(tables)).double().numpy()[:, None, None]
    elif cfg.mode_read == "embedding" and not path_read_clean:
        token0 = model.mode_codes[:, :, 0]  # (C, M)
        dev = model.misread_probability(tables[:, token0].reshape(J * C * M, -1), clean[token0].repeat(J, 1, 1).reshape(J * C * M, -1))
        m[:] = dev.reshape(J, C, M, 1).expand(J, C, M, 2).reshape(J, C, 2 * M).double().numpy()
    return m


def _written_step_probabilities(model: CalibrationPrior, tokens: np.ndarray, logp: torch.Tensor) -> np.ndarray:
    """(J, C, P, R, L - 1) p(x_i | the state x_{i-1} spells) for the steps after the first (logp (J, C, U, L,
    K) of the execution steps under J tables); 0 where x_{i-1} is in no support."""
    cfg = model.config
    C, P, R, N = tokens.shape
    n = cfg.n_path
    t = torch.as_tensor(tokens, dtype=torch.long)
    classes = torch.arange(C)[:, None, None].expand(C, P, R)
    out = np.zeros((len(logp), C, P, R, N - n - 1))
    for i in range(n + 1, N):
        mode, sharp = model.written_state(classes, t[..., i - 1], i - 1)
        u = (mode.clamp(min=0) * 2 + sharp.long())
        p = logp[:, classes, u, i - n, t[..., i]].exp()
        out[..., i - n - 1] = torch.where(mode >= 0, p, 0.0).numpy()
    return out
