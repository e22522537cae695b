"""One small transformer shared by every learned family (DESIGN §3: the fair-comparison control).

The sequence the network reads is ``[condition, z_0, ..., z_{N-1}]``: a class-embedding prefix
(LlamaGen c2i style) followed by code embeddings in raster order.

* causal (AR): the input is ``[condition, z_0, ..., z_{N-2}]``; output ``i`` predicts ``z_i``.
* bidirectional (MIM, diffusion): the input is ``[condition, z_0, ..., z_{N-1}]`` where unknown
  positions hold the MASK row; output ``i`` (read at sequence position ``i + 1``) predicts ``z_i``.

Both variants allocate exactly the same tables (AR never reads the MASK row nor the last
position row), so AR and MIM/diffusion have identical parameter counts.

This module also holds what every generative process needs to turn logits into tokens
(guidance and perturbed inputs, temperature / top-k / top-p, Gumbel-max draws) and the
resumable ``DecodeState`` (kept here so the family modules need not import sampling.py, which
imports them).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BackboneConfig:
    vocab_size: int  # K codes; the token table has one more row, MASK = K
    seq_len: int  # N tokens per image
    n_classes: int  # C classes; the class table has one more row, NULL = C (for CFG)
    d_model: int = 96
    n_layers: int = 3
    n_heads: int = 4
    dropout: float = 0.0
    causal: bool = False


@dataclass
class CodeReads:
    """The code rows a network reads under codebook noise (DESIGN §4, I3).

    ``table`` (n, K, d): each sample's perturbed code rows. ``path`` (n, N) long or None: the tokens
    committed at the cut (-1 elsewhere). A position that still holds its path token is read through
    the clean table, so noise applied after the cut acts only on the reads of tokens committed after
    it (a network reads its path through the code table: perturbing that read would make every model
    "entangled" by construction). A token revised after the cut (mask-and-replace) is the
    continuation's own and reads the perturbed row. ``path`` None: every code row is perturbed
    (noise on the whole generation, or before the cut).
    """

    table: torch.Tensor
    path: torch.Tensor | None = None

    def embed(self, ids: torch.Tensor, clean: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Embeddings of ``ids`` (n, ...) given ``clean`` (n, ..., d), their rows in the real table.

        Codes (ids < K) off the path take this sample's perturbed row; the path, MASK and any other
        special row stay ``clean``. ``offset``: the token position of ``ids[:, 0]`` (a KV-cached step
        feeds a slice of the sequence); ids of any trailing shape cover positions in raster order."""
        n, K = ids.shape[0], self.table.shape[1]
        rows = torch.arange(n, device=ids.device).view(n, *([1] * (ids.ndim - 1)))
        noisy = self.table[rows, ids.clamp(max=K - 1)]
        perturbed = ids < K
        if self.path is not None:
            width = ids[0].numel()
            on_path = self.path[:, offset:offset + width].reshape(ids.shape) == ids
            perturbed = perturbed & ~on_path
        return torch.where(perturbed[..., None], noisy, clean)

    def twice(self) -> "CodeReads":
        """The same reads for a guided batch (conditional and unconditional branch stacked)."""
        path = None if self.path is None else torch.cat([self.path, self.path])
        return CodeReads(torch.cat([self.table, self.table]), path)

    def __getitem__(self, rows) -> "CodeReads":
        """The reads of some samples of the batch (``rows``: a boolean mask or indices)."""
        return CodeReads(self.table[rows], None if self.path is None else self.path[rows])


def code_reads(clean_rows: torch.Tensor, perturbation) -> CodeReads | None:
    """What the network reads under ``perturbation`` (duck-typed: ``code_noise`` (n, K, d) and
    ``path`` (n, N), each may be None): None without codebook noise."""
    if perturbation is None or perturbation.code_noise is None:
        return None
    return CodeReads(clean_rows + perturbation.code_noise, getattr(perturbation, "path", None))


@dataclass
class KVCache:
    """Keys and values of every layer for the sequence positions already processed."""

    keys: list = field(default_factory=list)
    values: list = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.keys else self.keys[0].shape[2]


# torch's CPU attention kernel rounds a pass of fewer query rows than this differently (measured on
# torch 2.13: 1-3 rows differ from the full pass in the last float32 bit, 4+ are identical)
MIN_QUERY_ROWS = 4


class SelfAttention(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """``rows`` (n, r) sequence positions: only their outputs are computed (every position is still
        a key and value; bidirectional, no cache); None: every position's."""
        n, m, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(n, m, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if rows is not None:
            assert cache is None and not self.causal, "query rows are for a full bidirectional pass"
            q, m = q.gather(2, rows[:, None, :, None].expand(-1, self.n_heads, -1, q.shape[-1])), rows.shape[1]
        past = 0
        if cache is not None:
            past = cache.keys[layer].shape[2] if layer < len(cache.keys) else 0
            if past:
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
                cache.keys[layer], cache.values[layer] = k, v
            else:
                cache.keys.append(k)
                cache.values.append(v)
        # a single new query may see every cached key; a chunk needs the causal mask
        mask = causal_mask(m, past, x.device) if self.causal and m > 1 else None
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj(y.transpose(1, 2).reshape(n, m, d))


def causal_mask(m: int, past: int, device) -> torch.Tensor:
    """Boolean (m, past + m) mask: new query j (absolute position past + j) sees keys <= it."""
    query_pos = past + torch.arange(m, device=device)[:, None]
    key_pos = torch.arange(past + m, device=device)[None, :]
    return key_pos <= query_pos


class Block(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, rows: torch.Tensor | None = None):
        """``rows`` (n, r): the outputs of these positions only (see SelfAttention)."""
        h = self.attn(self.ln1(x), cache, layer, rows)
        x = (x if rows is None else take_rows(x, rows)) + h
        return x + self.mlp(self.ln2(x))


# a pass over fewer token rows (samples x positions) than this may take another matmul kernel and round
# differently (measured, torch 2.13 / MKL: the first AR step of 8 samples, one per class, did)
MIN_PASS_ROWS = 256


def repeated_rows(x: torch.Tensor, most: float = 0.5) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Runs of bit-identical consecutive samples of a network input ``x`` (n, L, d): (the first sample of
    each run, the runs' lengths), when there are at most ``most`` n runs and they make a pass of at
    least MIN_PASS_ROWS token rows; else None.

    Samples that read the same input get the same outputs (a row's result does not depend on the
    others in its batch: tests/test_families.py checks it), so a pass over one sample of each run,
    repeated, is the pass over all of them: the R continuations of a nested design's path at their
    first step after the cut (their inputs are the path's), or every sample of a class at a flat
    design's first step (all MASK) where the classes make a large enough pass. Compared bit for bit
    (-0.0 is not 0.0)."""
    n = len(x)
    if n < 2:
        return None
    bits = x.reshape(n, -1).view(torch.int32)
    starts = torch.ones(n, dtype=torch.bool, device=x.device)
    starts[1:] = (bits[1:] != bits[:-1]).any(1)
    first = starts.nonzero().squeeze(1)
    if len(first) > most * n or len(first) * x.shape[1] < MIN_PASS_ROWS:
        return None
    ends = torch.cat([first[1:], torch.tensor([n], device=x.device)])
    return first, ends - first


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(n, r, d) the positions ``rows`` (n, r) of ``x`` (n, L, d)."""
    return x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))


class TokenPrior(nn.Module):
    """The ids every class-conditional prior over K codes shares (what the sampler reads): codes
    0..K-1, MASK = K right after them, classes 0..C-1 and the NULL class C (CFG's unconditional
    branch) right after them; and the KV-cached step of a causal one (the AR process). Its
    ``config`` has ``vocab_size`` and ``n_classes``."""

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def mask_id(self) -> int:
        return self.config.vocab_size

    @property
    def null_class(self) -> int:
        return self.config.n_classes

    def forward_step(self, new_tokens, classes, cache: KVCache, *, cond_override=None,
                     code_table: CodeReads | None = None) -> torch.Tensor:
        """Feed ``new_tokens`` (n, m) after what ``cache`` holds; logits (n, K) of the next token.

        On an empty cache the class prefix is fed first, so ``new_tokens`` may have m = 0. The
        subclass provides ``embed_tokens``, ``condition`` and ``_run`` (its blocks from a position).
        """
        assert getattr(self.config, "causal", True), "the KV cache only makes sense for a causal prior"
        start = cache.length
        # the cache holds [condition, z_0 .. z_{start-2}]: the new tokens start at position start - 1
        x = self.embed_tokens(new_tokens, code_table, offset=max(start - 1, 0))
        if start == 0:
            x = torch.cat([self.condition(classes, cond_override)[:, None], x], dim=1)
        return self._run(x, start, cache)[:, -1]


class Backbone(TokenPrior):
    """Class-conditional transformer over code tokens; subclasses name the family."""

    family = "backbone"
    causal = False  # attention pattern the family needs; the config must agree

    def __init__(self, config: BackboneConfig):
        super().__init__()
        if config.causal != self.causal:
            raise ValueError(f"{type(self).__name__} needs causal={self.causal}")
        self.config = config
        K, N, C, d = config.vocab_size, config.seq_len, config.n_classes, config.d_model
        self.tok_emb = nn.Embedding(K + 1, d)  # row K = MASK
        self.cls_emb = nn.Embedding(C + 1, d)  # row C = NULL (label dropout, CFG)
        self.pos_emb = nn.Parameter(torch.zeros(1, N + 1, d))  # class prefix + N tokens
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, K)
        self.apply(_init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)


    @classmethod
    def build(cls, vocab_size: int, seq_len: int, n_classes: int, cfg: dict):
        """From a training config (see train_prior.DEFAULT_CFG for the keys read here)."""
        arch = {key: cfg[key] for key in ("d_model", "n_layers", "n_heads", "dropout")}
        return cls(BackboneConfig(vocab_size, seq_len, n_classes, causal=cls.causal, **arch))

    def spec(self) -> dict:
        """Constructor arguments, JSON-able (see train_prior.save_model)."""
        return {"config": asdict(self.config)}

    @classmethod
    def from_spec(cls, spec: dict):
        return cls(BackboneConfig(**spec["config"]))

    # --- inputs -----------------------------------------------------------------------------
    def condition(self, classes: torch.Tensor, cond_override: torch.Tensor | None) -> torch.Tensor:
        return self.cls_emb(classes) if cond_override is None else cond_override

    def embed_tokens(self, tokens: torch.Tensor, code_table: CodeReads | None, offset: int = 0) -> torch.Tensor:
        """Code rows read through ``code_table`` when given (its path and MASK from the real table);
        ``offset``: the position of ``tokens[:, 0]``."""
        if code_table is None:
            return self.tok_emb(tokens)
        return code_table.embed(tokens, self.tok_emb(tokens), offset)

    def _run(self, x: torch.Tensor, start: int, cache: KVCache | None = None,
             rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every sequence position, or of the positions ``rows`` (n, r) only: the last block
        then computes just their outputs (the earlier ones feed its keys and values: all positions)."""
        x = self.drop(x + self.pos_emb[:, start : start + x.shape[1]])
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, rows if layer == last else None)
        return self.head(self.ln_f(x))

    # --- full-sequence pass (training, likelihood, MIM/diffusion decoding) ----------------
    def forward(self, tokens, classes, *, cond_override=None, code_table=None, positions=None) -> torch.Tensor:
        """Logits (n, L, K) for every token position of ``tokens`` (n, L).

        Causal: position i conditions on tokens[:, :i] only (teacher forcing; the last input
        token is never read). Bidirectional: position i sees the whole (partially masked) grid;
        ``positions`` (n, r) long: logits (n, r, K) of these token positions only (what a sampler reads:
        the last block skips the other positions' outputs; bit-identical to the full pass's logits).
        """
        cond = self.condition(classes, cond_override)[:, None]
        if self.config.causal:
            assert positions is None, "a causal pass computes every position"
            x = torch.cat([cond, self.embed_tokens(tokens[:, :-1], code_table)], dim=1)
            return self._run(x, start=0)
        x = torch.cat([cond, self.embed_tokens(tokens, code_table)], dim=1)
        runs = repeated_rows(x)
        if runs is not None:  # e.g. a nested design's R continuations of a path at their first step
            first, counts = runs
            logits = self._run(x[first], start=0)[:, 1:].repeat_interleave(counts, dim=0)
            return logits if positions is None else logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))
        if positions is not None:
            r = positions.shape[1]
            # fewer than MIN_QUERY_ROWS queries take another attention kernel, which rounds differently
            # from the full pass: repeat the last position up to it and drop the copies
            padded = torch.cat([positions, positions[:, -1:].expand(-1, max(0, MIN_QUERY_ROWS - r))], dim=1)
            return self._run(x, start=0, rows=padded + 1)[:, :r]
        return self._run(x, start=0)[:, 1:]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------
# From logits to tokens (shared by every family)
# ----------------------------------------------------------------------------------------

class Guidance:
    """The network inputs of one batch: conditional, plus unconditional when cfg_scale != 1.

    ``perturbation`` (duck-typed: ``cond_noise`` (n, d) and ``code_noise`` (n, K, d), each may be
    None) is added to the class embedding and to the code rows the network reads (except the rows
    of its ``path``: ``CodeReads``). The unconditional branch keeps the clean NULL embedding (prompt
    noise perturbs the prompt, and "no prompt" has none) but reads the same perturbed code table. With cfg_scale == 1 the
    unconditional pass is not even run, so guidance 1 is bit-identical to no guidance.
    """

    def __init__(self, model: Backbone, classes: torch.Tensor, cfg_scale: float, perturbation):
        self.scale = cfg_scale
        self.guided = cfg_scale != 1.0
        cond_override = None
        if perturbation is not None and perturbation.cond_noise is not None:
            cond_override = model.cls_emb(classes) + perturbation.cond_noise
        code_table = code_reads(model.tok_emb.weight[: model.config.vocab_size], perturbation)
        if self.guided:
            null = torch.full_like(classes, model.null_class)
            if cond_override is not None:
                cond_override = torch.cat([cond_override, model.cls_emb(null)])
            if code_table is not None:
                code_table = code_table.twice()
            classes = torch.cat([classes, null])
        self.classes = classes
        self.kwargs = {"cond_override": cond_override, "code_table": code_table}

    def batch(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens, tokens]) if self.guided else tokens

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        """CFG on logits as in LlamaGen: uncond + s (cond - uncond)."""
        if not self.guided:
            return raw
        cond, uncond = raw.chunk(2)
        return uncond + self.scale * (cond - uncond)


def sampling_log_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the distribution actually sampled from (-inf outside the support).

    Order as in LlamaGen: temperature, then top-k, then nucleus (top-p) on the tempered softmax.
    top_k = 0 and top_p = 1 mean no truncation.
    """
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        mass_before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)
        drop_sorted = mass_before >= top_p  # keep the smallest prefix whose mass reaches top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.log_softmax(-1)


def uniform(shape, gen: torch.Generator, device) -> torch.Tensor:
    """Uniforms on [0, 1) drawn by the CPU RNG and moved to ``device`` (DESIGN §10): a cache
    depends on the seed and the batch layout, not on the device's own RNG. On the
    CPU the move is a no-op, so CPU caches are what they were before devices existed."""
    return torch.rand(shape, generator=gen).to(device)


def gaussian(shape, gen: torch.Generator, device) -> torch.Tensor:
    """Standard normal draws by the CPU RNG, moved to ``device`` (see uniform)."""
    return torch.randn(shape, generator=gen).to(device)


def device_of(model) -> torch.device:
    """Where a model's tensors live (the CPU for a model without any)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def gumbel(shape, gen: torch.Generator, device="cpu") -> torch.Tensor:
    u = uniform(shape, gen, device).clamp_(min=torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(u))


def draw(log_probs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-max draw from categorical log-probs (..., K); returns (tokens, their log-probs).

    Gumbel-max needs exactly K uniforms per draw, so randomness is consumed in a fixed order
    whatever the distribution: the property stop/resume reproducibility relies on.
    """
    tokens = (log_probs + gumbel(log_probs.shape, gen, log_probs.device)).argmax(-1)
    return tokens, log_probs.gather(-1, tokens[..., None]).squeeze(-1)


def draw_at(log_probs: torch.Tensor, positions: torch.Tensor, seq_len: int,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw`` at some positions of each sample only: ``log_probs`` (n, r, K) of the positions
    ``positions`` (n, r) of a (n, seq_len) grid. Consumes the uniforms of a draw at every position
    (n, seq_len, K), in the same order, and gives each drawn position its own, so the tokens and
    log-probs there are ``draw``'s over the whole grid; elsewhere tokens are -1 and log-probs NaN."""
    n, r, K = log_probs.shape
    u = uniform((n, seq_len, K), gen, log_probs.device)
    u = u.gather(1, positions[..., None].expand(-1, -1, K)).clamp_(min=torch.finfo(torch.float32).tiny)
    tokens = (log_probs + -torch.log(-torch.log(u))).argmax(-1)  # gumbel()'s arithmetic
    lp = log_probs.gather(-1, tokens[..., None]).squeeze(-1)
    full_tokens = torch.full((n, seq_len), -1, dtype=tokens.dtype, device=tokens.device)
    full_lp = torch.full((n, seq_len), math.nan, dtype=lp.dtype, device=lp.device)
    return full_tokens.scatter(1, positions, tokens), full_lp.scatter(1, positions, lp)


def row_positions(where: torch.Tensor) -> torch.Tensor | None:
    """(n, r) the column indices of the True entries of ``where`` (n, N), ascending, when every row has
    the same number r of them with 0 < r < N; else None (then read the whole grid)."""
    counts = where.sum(1)
    r = int(counts[0]) if len(counts) else 0
    if not 0 < r < where.shape[1] or not bool((counts == r).all()):
        return None
    return where.nonzero()[:, 1].view(-1, r)


# ----------------------------------------------------------------------------------------
# Resumable decoding state (shared by every family)
# ----------------------------------------------------------------------------------------

@dataclass
class DecodeState:
    """Where a generative process stands: enough to continue it with any RNG.

    ``tokens`` holds MASK (= K) at uncommitted positions; ``logprobs`` is NaN there.
    ``schedule`` holds the knobs that fix the process's step grid; resuming must not change them.
    ``freeze_committed``: committed codes must stay as they are (the nested designs' continuations,
    set by ``sampling.resume``); only a process that can revise a visible code reads it (vq_diffusion).
    """

    classes: torch.Tensor
    tokens: torch.Tensor
    committed: torch.Tensor
    logprobs: torch.Tensor
    step: int
    total_steps: int
    schedule: dict
    trace: dict
    freeze_committed: bool = False

    @classmethod
    def fresh(cls, classes: torch.Tensor, seq_len: int, mask_id: int, total_steps: int,
              schedule: dict, trace_keys: tuple[str, ...] = ("committed",)) -> "DecodeState":
        n, device = classes.shape[0], classes.device
        return cls(
            classes=classes,
            tokens=torch.full((n, seq_len), mask_id, dtype=torch.long, device=device),
            committed=torch.zeros(n, seq_len, dtype=torch.bool, device=device),
            logprobs=torch.full((n, seq_len), math.nan, device=device),
            step=0,
            total_steps=total_steps,
            schedule=dict(schedule),
            trace={key: [] for key in trace_keys},
        )

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def commit_next(self, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        """Commit position `step` in every sample (the raster-order families: one token a step)."""
        i = self.step
        self.tokens[:, i], self.logprobs[:, i] = tokens, logprobs
        self.committed[:, i] = True
        self.step += 1
        self.trace["committed"].append(self.step)

    def reached(self, cut_fraction: float | None) -> bool:
        """True when a fraction >= cut_fraction of the tokens is committed in every sample."""
        if cut_fraction is None:
            return False
        per_sample = self.committed.sum(1).min().item()
        return per_sample >= cut_fraction * self.tokens.shape[1] - 1e-9

    def check_schedule(self, schedule: dict) -> None:
        if schedule != self.schedule:
            raise ValueError(f"resume must keep the step grid {self.schedule}, got {schedule}")
