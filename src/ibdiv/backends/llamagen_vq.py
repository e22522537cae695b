"""LlamaGen's VQ image tokenizer (ds16, "VQ-16"): this project's own implementation.

The architecture is the taming-transformers style VQGAN that LlamaGen publishes
(tokenizer/tokenizer_image/vq_model.py in FoundationVision/LlamaGen), written here so that its
released state dict (``vq_ds16_c2i.pt``: ``{"model": state_dict}``) loads under the same key names:
``encoder.*``, ``quant_conv``, ``quantize.embedding.weight``, ``post_quant_conv``, ``decoder.*``.
What the backend needs from it: ``decode`` (token grids -> images, to look at samples and to
measure them in image space) and ``encode`` (real images -> token grids, the reference the
generator is compared with, DESIGN §12).

Facts taken from the reference source (key names, shapes and the ~72M parameter count checked by
tests/test_llamagen.py on the ``meta`` device; outputs compared with the reference classes by
scripts/check_llamagen_reference.py):
channels ch = 128 with multipliers (1, 1, 2, 2, 4) (four 2x down/up-samplings: 256 px -> 16x16
tokens), 2 residual blocks per level in the encoder and 3 in the decoder, self-attention only at
the lowest resolution and in the middle, GroupNorm(32 groups, eps 1e-6), swish, z_channels 256,
K = 16384 codes of dimension 8, codebook and encoder outputs l2-normalised before the
nearest-code search. Its training-only usage counter ``quantize.codebook_used`` is not a
parameter here: the loader accepts and ignores it.

Images are (n, 3, H, W) float tensors in [0, 1]; the network itself works on [-1, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

NORM_GROUPS = 32  # GroupNorm(32, C): every channel count must be a multiple of 32


@dataclass
class VQConfig:
    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    z_channels: int = 256

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


# Published sizes (reference: vq_model.py, ModelArgs defaults and VQ_16).
VQ_PRESETS = {"VQ-16": {}}


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        # a 1x1 projection only where the width changes (the reference's ``nin_shortcut``)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map (1x1 convs q, k, v, proj_out)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = _norm(c)
        self.q, self.k, self.v = (nn.Conv2d(c, c, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))  # (n, hw, c)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # scale 1/sqrt(c)
        return x + self.proj_out(out.transpose(1, 2).reshape(n, c, h, w))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric padding, as the reference


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(blocks: list[nn.Module], attn: list[nn.Module]) -> nn.Module:
    """One resolution level: ``res.{j}`` and ``attn.{j}`` (the reference's module names)."""
    level = nn.Module()
    level.res = nn.ModuleList(blocks)
    level.attn = nn.ModuleList(attn)
    return level


def _middle(c: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)])


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        mult, last = cfg.ch_mult, len(cfg.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        c = cfg.ch
        for i, m in enumerate(mult):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(c, cfg.ch * m))
                c = cfg.ch * m
            level = _level(blocks, [AttnBlock(c) for _ in blocks] if i == last else [])
            if i != last:
                level.downsample = Downsample(c)
            self.conv_blocks.append(level)
        self.mid = _middle(c)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, cfg.z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Mirror of the encoder; ``conv_blocks[0]`` is the lowest resolution (the one with attention)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        mult, last = cfg.ch_mult, len(cfg.ch_mult) - 1
        c = cfg.ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c, 3, padding=1)
        self.mid = _middle(c)
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(mult))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(c, cfg.ch * mult[i]))
                c = cfg.ch * mult[i]
            level = _level(blocks, [AttnBlock(c) for _ in blocks] if i == last else [])
            if i != 0:
                level.upsample = Upsample(c)
            self.conv_blocks.append(level)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for j, block in enumerate(level.res):
        h = block(h)
        if len(level.attn):
            h = level.attn[j](h)
    return h


class Quantizer(nn.Module):
    """The codebook (``quantize.embedding``); codes and queries are compared after l2 normalisation."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=-1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Code index of each row of z (m, e): the closest normalised code to the normalised row."""
        z, e = F.normalize(z, dim=-1), self.codebook()
        distance = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.T
        return distance.argmin(1)


class VQModel(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        for c in {config.ch * m for m in config.ch_mult} | {config.z_channels}:
            if c % NORM_GROUPS:
                raise ValueError(f"VQ channel counts must be multiples of {NORM_GROUPS}, got {c}")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = Quantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_embed_dim, config.z_channels, 1)

    def spec(self) -> dict:
        return asdict(self.config)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (n, 3, H, W) in [0, 1] -> codes (n, H/16 * W/16) in raster order."""
        z = self.quant_conv(self.encoder(images * 2 - 1))  # (n, e, h, w)
        n, e, h, w = z.shape
        return self.quantize.nearest(z.permute(0, 2, 3, 1).reshape(-1, e)).view(n, h * w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, grid: int | None = None) -> torch.Tensor:
        """Codes (n, g*g) in raster order -> images (n, 3, H, W) in [0, 1].

        The decoder's output lives in about [-1, 1]; the reference displays it with
        ``save_image(..., normalize=True, value_range=(-1, 1))``, i.e. clamped to that range,
        which is what the clamp here does too.
        """
        n, L = codes.shape
        g = grid or int(round(L ** 0.5))
        if g * g != L:
            raise ValueError(f"{L} codes per image do not form a square grid")
        z = self.quantize.codebook()[codes].view(n, g, g, -1).permute(0, 3, 1, 2)
        x = self.decoder(self.post_quant_conv(z))
        return (x.clamp(-1, 1) + 1) / 2
