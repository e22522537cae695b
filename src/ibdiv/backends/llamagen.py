"""The ``llamagen`` backend: LlamaGen's class-to-image GPT behind the one sampler interface.

Implemented here (own code, written from the published architecture; DESIGN §12):
* ``GPT``: the c2i Transformer of FoundationVision/LlamaGen (autoregressive/models/gpt.py): a class
  token from ``cls_embedding.embedding_table`` (num_classes + 1 rows, the last the null class used
  for CFG), code tokens from ``tok_embeddings``, Llama blocks (RMSNorm, attention with a fused
  ``wqkv`` and ``wo``, SwiGLU ``feed_forward.w1/w2/w3``), 2-D RoPE over the token grid, ``norm``,
  ``output``. Inference only: no dropout, drop-path or label dropout.
* The VQ ds16 tokenizer (encoder and decoder) in ``ibdiv.backends.llamagen_vq``.
* A checkpoint folder (``save_checkpoint`` / ``load_checkpoint`` / ``load_vq``): the release's
  torch pickles ``{"model": state_dict}`` plus ``llamagen.json`` naming the files and their sizes.
* The family contract of ``ibdiv.families.sampling``: raster-order sampling with a KV cache, cut / resume,
  CFG, temperature / top-k / top-p, per-token log-probs, condition and codebook noise. The
  process is the in-house AR family's (``ibdiv.families.ar``) run on this network: the model exposes the
  same hooks (``forward_step``, ``cls_emb``, ``tok_emb``, ``null_class``), so the guidance,
  truncation, Gumbel-max draws and resumable state are literally the same code.

Verified (tests/test_llamagen.py): on tiny random models, every hook as for the in-house families
(sigma = 0 bit-identical, cut + resume = uninterrupted, CFG 1 = unguided, knob directions, KV cache
= full recomputation, save / reload, loader errors); at the published sizes (GPT-B ... XXL, VQ-16,
built on the ``meta`` device), key names, shapes and parameter counts against the reference source.
Against the reference code itself (scripts/check_llamagen_reference.py, LlamaGen commit ce98ec4,
tiny random models loaded into its classes with strict key matching): identical teacher-forced
logits, identical greedy CFG generations (scales 1, 2, 4), sampled-token log-probs under its
temperature / top-k / top-p filtering within 5e-6, VQ decoding within 5e-6 and identical encoding.
NOT verified: released weights (none were loaded here), and anything on a GPU.

Known differences from the reference sampler (autoregressive/models/generate.py):
* randomness comes from the given CPU RNG through Gumbel-max, not ``torch.multinomial`` on
  the global RNG (DESIGN §10), so the same seed gives other images than the reference;
* the reference runs the unconditional branch only when cfg_scale > 1; here whenever
  cfg_scale != 1 (the same formula, also for scales below 1); scale 1 is unguided in both;
* top-p keeps the smallest prefix whose mass reaches p (the reference drops at "> p": differs only
  on exact ties); ``cfg_interval`` is not offered (the reference's default, -1, is "always").
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
from dataclasses import asdict, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ibdiv.backends.checkpoints import refuse_other_backends
from ibdiv.backends.llamagen_sizes import GPT_PRESETS, GPTConfig, gpt_config, overlay_sizes  # noqa: F401  (re-exported)
from ibdiv.backends.llamagen_vq import VQ_PRESETS, VQConfig, VQModel
from ibdiv.families import ar
from ibdiv.families.backbone import CodeReads, KVCache, TokenPrior, causal_mask

FAMILY = "llamagen"


# ----------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------

# GPTConfig, the published GPT_PRESETS and gpt_config live in the torch-free llamagen_sizes (read at
# Snakemake start by ibdiv.pipeline.sizing); imported here under the names the rest of ibdiv uses.


def vq_config(entry: dict) -> VQConfig:
    return VQConfig(**overlay_sizes(entry, VQ_PRESETS, VQConfig))


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()  # normalise in float32 whatever the weights' dtype, as the reference
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_2d(grid: int, head_dim: int, base: float) -> torch.Tensor:
    """(1 + grid^2, head_dim / 2, 2) cos / sin of every sequence position (gpt.py precompute_freqs_cis_2d).

    Channels are rotated in adjacent pairs; the first half of the pairs turns with the token's
    row, the second half with its column, each half with head_dim / 4 frequencies. The class
    token (position 0) gets cos = sin = 0: the reference zeroes its query and key, and the
    released weights were trained that way, so it is kept.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}")
    half = head_dim // 2
    freqs = 1.0 / base ** (torch.arange(0, half, 2)[: half // 2].float() / half)
    angles = torch.arange(grid).float()[:, None] * freqs  # (grid, head_dim / 4)
    rows = angles[:, None, :].expand(grid, grid, -1)
    cols = angles[None, :, :].expand(grid, grid, -1)
    theta = torch.cat([rows, cols], dim=-1).flatten(0, 1)  # (grid^2, head_dim / 2), raster order
    table = torch.stack([theta.cos(), theta.sin()], dim=-1)
    return torch.cat([torch.zeros(1, half, 2), table])


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """x (n, m, heads, head_dim) rotated by table (m, head_dim / 2, 2), in float32."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = table[None, :, None, :, 0], table[None, :, None, :, 1]
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.dim % cfg.n_head:
            raise ValueError(f"dim {cfg.dim} is not a multiple of n_head {cfg.n_head}")
        self.n_head = cfg.n_head
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)  # q, k, v stacked (no grouped KV heads)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, rope: torch.Tensor, cache: KVCache | None, layer: int):
        n, m, d = x.shape
        q, k, v = (t.view(n, m, self.n_head, d // self.n_head) for t in self.wqkv(x).split(d, dim=-1))
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        past = 0
        if cache is not None:  # the same list-of-layers cache as ibdiv.families.backbone
            if layer < len(cache.keys):
                past = cache.keys[layer].shape[2]
                k = cache.keys[layer] = torch.cat([cache.keys[layer], k], dim=2)
                v = cache.values[layer] = torch.cat([cache.values[layer], v], dim=2)
            else:
                cache.keys.append(k)
                cache.values.append(v)
        mask = causal_mask(m, past, x.device) if m > 1 else None  # one new query sees every key
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(y.transpose(1, 2).reshape(n, m, d))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, rope, cache, layer):
        h = x + self.attention(self.attention_norm(x), rope, cache, layer)
        return h + self.feed_forward(self.ffn_norm(h))


class LabelEmbedder(nn.Module):
    """Holds ``embedding_table`` so the key is ``cls_embedding.embedding_table.weight``."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, dim)  # last row: the null class


class GPT(TokenPrior):  # MASK = K: a placeholder for uncommitted positions, never fed to the network
    """LlamaGen c2i GPT. The sequence is ``[class, z_0, ..., z_{N-1}]``; output i predicts z_i."""

    family = FAMILY

    def __init__(self, config: GPTConfig):
        super().__init__()
        if math.isqrt(config.block_size) ** 2 != config.block_size:
            raise ValueError(f"block_size {config.block_size} is not a square grid")
        self.config = config
        self.cls_embedding = LabelEmbedder(config.num_classes, config.dim)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        # derived from the sizes, not learned: kept out of the state dict (some releases carry a
        # ``freqs_cis`` entry; the loader accepts and ignores it)
        self.register_buffer("rope", rope_2d(config.grid, config.dim // config.n_head, config.rope_base),
                             persistent=False)

    # --- what ibdiv's sampler, probes and perturbations read ------------------------------------
    @property
    def cls_emb(self) -> nn.Embedding:
        """The condition table I2 perturbs (classes + the null row, which stays clean)."""
        return self.cls_embedding.embedding_table

    @property
    def tok_emb(self) -> nn.Embedding:
        """The generator's input code table I3 perturbs (all K rows are codes: no MASK row)."""
        return self.tok_embeddings

    # --- construction (the PRIOR part of the family contract) ----------------------------------
    @classmethod
    def build(cls, vocab_size: int, seq_len: int, n_classes: int, cfg: dict) -> "GPT":
        """A randomly initialised model (tiny ones for tests), sizes from ``cfg`` (GPTConfig fields)."""
        sizes = {k: v for k, v in cfg.items() if k in {f.name for f in fields(GPTConfig)}}
        model = cls(GPTConfig(vocab_size=vocab_size, num_classes=n_classes, block_size=seq_len, **sizes))
        model.apply(_init_weights)
        return model

    def spec(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_spec(cls, spec: dict) -> "GPT":
        return cls(GPTConfig(**spec))

    # --- network passes -------------------------------------------------------------------------
    def condition(self, classes, cond_override=None) -> torch.Tensor:
        return self.cls_emb(classes) if cond_override is None else cond_override

    def embed_tokens(self, tokens, code_table: CodeReads | None = None, offset: int = 0) -> torch.Tensor:
        """Rows read through ``code_table`` when given (its path from tok_embeddings: ``CodeReads``),
        else of tok_embeddings; ``offset``: the position of ``tokens[:, 0]``."""
        if code_table is None:
            return self.tok_embeddings(tokens)
        return code_table.embed(tokens, self.tok_embeddings(tokens), offset)

    def _run(self, x: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        rope = self.rope[start : start + x.shape[1]]
        for layer, block in enumerate(self.layers):
            x = block(x, rope, cache, layer)
        return self.output(self.norm(x)).float()

    def forward(self, tokens, classes, *, cond_override=None, code_table=None) -> torch.Tensor:
        """Teacher-forced logits (n, N, K): position i reads the class and tokens[:, :i]."""
        cond = self.condition(classes, cond_override)[:, None]
        x = torch.cat([cond, self.embed_tokens(tokens[:, :-1], code_table)], dim=1)
        return self._run(x, 0, None)

    # forward_step (the KV-cached AR step) is TokenPrior's: the same embed_tokens / condition / _run


def _init_weights(module: nn.Module) -> None:
    """Normal(0, 0.02) for linear and embedding weights (the reference's initializer_range). The
    reference zeroes ``output``; a random tiny model keeps it random so its logits are not uniform."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)


# ----------------------------------------------------------------------------------------------
# Family contract (ibdiv.families.sampling): the in-house AR process on this network
# ----------------------------------------------------------------------------------------------

KNOBS = dict(ar.KNOBS)  # temperature 1, top_k 0, top_p 1, cfg_scale 1, kv_cache: the neutral point
SCHEDULE_KNOBS: tuple[str, ...] = ()  # one token per step in raster order
PRIOR = GPT


def start(model: GPT, classes: torch.Tensor, knobs: dict):
    """A fresh DecodeState (ibdiv.families.backbone): one step per token, nothing committed."""
    return ar.start(model, classes, knobs)


def advance(model: GPT, state, knobs: dict, gen: torch.Generator, perturbation=None,
            cut_fraction: float | None = None):
    """Raster-order sampling up to the end or the cut (see ar.advance: KV cache rebuilt from the
    committed prefix on entry, CFG batch [cond, uncond], one Gumbel-max draw per token)."""
    return ar.advance(model, state, knobs, gen, perturbation, cut_fraction)


def heldout_bits_per_token(model: GPT, tokens, labels, gen=None, *, rows_per_call: int | None = None) -> float:
    """Exact NLL of token grids (e.g. the reference images encoded by the backend's VQ);
    ``rows_per_call`` sequences a forward where the memory budget sizes it (each holds N x K
    logits: ibdiv.pipeline.sizing), else all in one, as the in-house AR family."""
    if rows_per_call is None or rows_per_call >= len(tokens):
        return ar.heldout_bits_per_token(model, tokens, labels, gen)
    bits = sum(ar.heldout_bits_per_token(model, tokens[i:i + rows_per_call], labels[i:i + rows_per_call], gen)
               * tokens[i:i + rows_per_call].numel() for i in range(0, len(tokens), rows_per_call))
    return bits / tokens.numel()


# ----------------------------------------------------------------------------------------------
# Checkpoint folder
# ----------------------------------------------------------------------------------------------

SIZES_FILE = "llamagen.json"
# The checkpoint folder (ibdiv.backends.protocol.Backend): what identifies it, what to fill in.
DESCRIBED = "a LlamaGen"
FOLDER_MARKER, FOLDER_CLASSES = SIZES_FILE, ()  # the sizes file: its presence is enough
FOLDER_HINT = "a LlamaGen folder: llamagen.json naming the GPT file (e.g. c2i_B_256.pt) and the VQ file (vq_ds16_c2i.pt)"
GPT_FILE, VQ_FILE = "gpt.pt", "vq.pt"  # names save_checkpoint writes; the json may name others
# Entries a release may carry that are not parameters here (derived from sizes or training-only).
ALLOWED_UNEXPECTED = {"gpt": {"freqs_cis"}, "vq": {"quantize.codebook_used"}}


def save_checkpoint(folder, gpt: GPT, vq: VQModel | None = None) -> Path:
    """Write a checkpoint folder in the release format: ``{"model": state_dict}`` per network and
    ``llamagen.json`` with their files and sizes (for a release, write the json by hand, e.g.
    ``{"gpt": {"file": "c2i_B_256.pt", "preset": "GPT-B"}, "vq": {"file": "vq_ds16_c2i.pt",
    "preset": "VQ-16"}}``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"gpt": {"file": GPT_FILE, **gpt.spec()}}
    torch.save({"model": {k: v.cpu() for k, v in gpt.state_dict().items()}}, folder / GPT_FILE)
    if vq is not None:
        sizes["vq"] = {"file": VQ_FILE, **vq.spec()}
        torch.save({"model": {k: v.cpu() for k, v in vq.state_dict().items()}}, folder / VQ_FILE)
    (folder / SIZES_FILE).write_text(json.dumps(sizes, indent=2) + "\n")
    return folder


def load_checkpoint(folder, device="cpu") -> GPT:
    """The generator of a checkpoint folder, in eval mode on ``device``."""
    entry, path = _entry(folder, "gpt")
    model = GPT(_configured(gpt_config, entry, folder))
    _load_state(model, path, ALLOWED_UNEXPECTED["gpt"])
    return model.to(device).eval()


def load_vq(folder, device="cpu") -> VQModel:
    """The image VQ of a checkpoint folder (decodes samples, encodes the real reference)."""
    entry, path = _entry(folder, "vq")
    model = VQModel(_configured(vq_config, entry, folder))
    _load_state(model, path, ALLOWED_UNEXPECTED["vq"])
    return model.to(device).eval()


def check_folder(folder) -> Path:
    """Raise an error naming the folder and the problem unless it is a LlamaGen checkpoint folder
    (not another backend's) whose json names existing files for both networks (weights are checked
    when they load)."""
    for part in ("gpt", "vq"):
        _entry(folder, part)
    return Path(folder)


def _entry(folder, part: str) -> tuple[dict, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"llamagen checkpoint folder {folder} does not exist")
    sizes_path = folder / SIZES_FILE
    if not sizes_path.is_file():
        refuse_other_backends(folder, FAMILY, DESCRIBED)
        raise FileNotFoundError(f"{sizes_path} is missing: it names the checkpoint files and their sizes, "
                                f'e.g. {{"gpt": {{"file": "c2i_B_256.pt", "preset": "GPT-B"}}, '
                                f'"vq": {{"file": "vq_ds16_c2i.pt", "preset": "VQ-16"}}}}')
    sizes = json.loads(sizes_path.read_text())
    if part not in sizes or "file" not in sizes[part]:
        raise ValueError(f"{sizes_path} has no {part!r} entry with a 'file'")
    path = folder / sizes[part]["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} (named by {sizes_path} for {part!r}) does not exist")
    return sizes[part], path


def _configured(make, entry: dict, folder):
    try:
        return make(entry)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{Path(folder) / SIZES_FILE}: {error}") from error


def _read(path: Path):
    """The pickle, read with weights_only=True. LlamaGen's training script saves {"model",
    "optimizer", "steps", "args"} with ``args`` an argparse.Namespace (a plain container of its
    command line): that one class is allowed, nothing else that executes code."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as error:
            raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True): {error}") from error


def _load_state(model: nn.Module, path: Path, allowed_unexpected: set[str]) -> None:
    """Strict load: every parameter present with its shape; extra entries only from the allow-list.
    The state dict is the payload's "model" entry (DDP releases) or the payload itself (FSDP ones)."""
    payload = _read(path)
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        top = sorted(payload)[:10] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: expected {{'model': state_dict}} or a state dict, found {top}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - allowed_unexpected)
    if missing or unexpected:
        raise ValueError(f"{path}: state dict does not match the {type(model).__name__} its sizes describe: "
                         f"missing keys {missing}, unexpected keys {unexpected}")
    wrong = [f"{k}: expected {tuple(v.shape)}, found {tuple(state[k].shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: shape mismatch: " + "; ".join(wrong))
    model.load_state_dict({k: state[k] for k in expected})


# ----------------------------------------------------------------------------------------------
# The DAG's backend interface (ibdiv.backends.pretrained reads the same names from every backend module)
# ----------------------------------------------------------------------------------------------

def load_conditioned(folder, conditions: list[int], device="cpu") -> GPT:
    """The generator whose class i samples the checkpoint's class ``conditions[i]``, the null row
    kept last: the DAG's labels 0..C-1 are the configured conditions, and condition noise (I2)
    scales to the rows of the configured classes only."""
    model = load_checkpoint(folder)  # on the CPU: the device then holds only the selected copy
    n = model.config.num_classes
    if not conditions or min(conditions) < 0 or max(conditions) >= n:
        raise ValueError(f"{folder}: class ids {list(conditions)} are not all among the checkpoint's {n} classes")
    table = model.cls_embedding.embedding_table.weight.detach()
    state = model.state_dict()
    state["cls_embedding.embedding_table.weight"] = table[torch.as_tensor([*conditions, n], device=table.device)]
    selected = GPT(GPTConfig(**{**model.spec(), "num_classes": len(conditions)}))
    selected.load_state_dict(state)
    return selected.to(device).eval()


def token_grid(folder) -> int:
    """The side of the generator's token grid, from the sizes file (no weights read)."""
    entry, _ = _entry(folder, "gpt")
    return _configured(gpt_config, entry, folder).grid


def vq_image_size(folder) -> int:
    """The side of the images the VQ encodes to ``token_grid`` codes a side."""
    entry, _ = _entry(folder, "vq")
    return token_grid(folder) * _configured(vq_config, entry, folder).downsample


def vq_encode(vq: VQModel, images: torch.Tensor) -> torch.Tensor:
    """RGB (n, 3, S, S) in [0, 1] -> codes (n, N) in raster order."""
    return vq.encode(images)


def vq_decode(vq: VQModel, codes: torch.Tensor) -> torch.Tensor:
    """Codes (n, N) -> RGB (n, 3, S, S) in [0, 1]."""
    return vq.decode(codes)


def vq_codebook(vq: VQModel) -> torch.Tensor:
    """(K, d): the vectors the quantiser compares (l2-normalised), for the coarse K -> K' map."""
    return vq.quantize.codebook().detach()


def build_tiny(folder, seed: int, n_classes: int, sizes: dict) -> Path:
    """A random checkpoint of this architecture at ``sizes`` ({"grid", "vq": VQConfig fields,
    "gpt": GPT sizes, optional "output_std"}), written by ``save_checkpoint``. The head and class
    table are drawn wider than the 0.02 init so a random model's logits are not near-uniform."""
    unknown = sorted(set(sizes) - {"grid", "vq", "gpt", "output_std"})
    if unknown:
        raise ValueError(f"tiny llamagen sizes: unknown keys {unknown} (known: grid, vq, gpt, output_std)")
    torch.manual_seed(seed)
    vq_cfg = VQConfig(**sizes["vq"])
    gpt = GPT.build(vq_cfg.codebook_size, sizes["grid"] ** 2, n_classes, sizes["gpt"])
    nn.init.normal_(gpt.output.weight, std=sizes.get("output_std", 0.4))
    nn.init.normal_(gpt.cls_embedding.embedding_table.weight, std=1.0)
    return save_checkpoint(folder, gpt.eval(), VQModel(vq_cfg).eval())
