"""Small convolutional VQ-VAE that turns images into token grids.

Choices that matter on a CPU budget (reference/models.md §1.8, feasibility notes):
- SiLU activations: a ReLU VQ-VAE collapsed to one code in the digits study.
- EMA codebook (no codebook gradient) with Laplace smoothing.
- Commitment loss on the *encoder* term only (beta * ||z_e - sg(z_q)||^2).
- Codes initialised from encoder outputs of the first batch, and dead codes (EMA
  count below a threshold) restarted from random encoder outputs of the current batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ibdiv.core.io import load_checkpoint, save_checkpoint


@dataclass
class TokenizerConfig:
    image_size: int = 16
    grid: int = 4  # tokens per side; image_size / grid must be a power of two
    codebook_size: int = 64
    code_dim: int = 16
    channels: int = 48
    beta: float = 0.25
    ema_decay: float = 0.99
    dead_threshold: float = 1.0

    @property
    def n_down(self) -> int:
        factor = self.image_size // self.grid
        if self.image_size % self.grid or factor & (factor - 1):
            raise ValueError(f"image_size/grid = {self.image_size}/{self.grid} must be a power of two")
        return int(math.log2(factor))


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def _widths(cfg: TokenizerConfig) -> list[int]:
    """Channels per resolution level, full resolution first: halved per level above the
    latent grid, because full-resolution convolutions dominate the cost on a CPU."""
    return [max(8, cfg.channels >> (cfg.n_down - i)) for i in range(cfg.n_down + 1)]


def _encoder(cfg: TokenizerConfig) -> nn.Sequential:
    w = _widths(cfg)
    layers = [nn.Conv2d(1, w[0], 3, padding=1)]
    for i in range(cfg.n_down):
        layers += [nn.SiLU(), nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1)]
    layers += [ResBlock(w[-1]), ResBlock(w[-1]), nn.SiLU(), nn.Conv2d(w[-1], cfg.code_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(cfg: TokenizerConfig) -> nn.Sequential:
    w = _widths(cfg)[::-1]
    layers = [nn.Conv2d(cfg.code_dim, w[0], 3, padding=1), ResBlock(w[0]), ResBlock(w[0])]
    for i in range(cfg.n_down):
        layers += [nn.SiLU(), nn.ConvTranspose2d(w[i], w[i + 1], 4, stride=2, padding=1)]
    layers += [nn.SiLU(), nn.Conv2d(w[-1], 1, 3, padding=1)]
    return nn.Sequential(*layers)


class EMAQuantizer(nn.Module):
    """Nearest-code quantiser whose codebook follows an EMA of assigned encoder outputs."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.decay, self.dead_threshold = cfg.ema_decay, cfg.dead_threshold
        self.register_buffer("codebook", torch.zeros(cfg.codebook_size, cfg.code_dim))
        self.register_buffer("ema_count", torch.ones(cfg.codebook_size))
        self.register_buffer("ema_sum", torch.zeros(cfg.codebook_size, cfg.code_dim))
        self.register_buffer("initialised", torch.tensor(False))

    def codes(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of `flat` (n, D)."""
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1))
        return dist.argmin(1)

    def forward(self, z: torch.Tensor, gen: torch.Generator | None = None):
        """z: (B, D, h, w) -> (straight-through quantised z, codes (B, h, w))."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training:
            self._maybe_init(flat.detach(), gen)
        idx = self.codes(flat)
        if self.training:
            self._ema_update(flat.detach(), idx, gen)
        zq = self.codebook[idx].view(b, h, w, d).permute(0, 3, 1, 2)
        return z + (zq - z).detach(), zq, idx.view(b, h, w)

    def _maybe_init(self, flat, gen):
        if self.initialised:
            return
        pick = torch.randint(0, len(flat), (len(self.codebook),), generator=gen)
        self.codebook.copy_(flat[pick])
        self.ema_sum.copy_(flat[pick])
        self.initialised.fill_(True)

    def _ema_update(self, flat, idx, gen):
        onehot = F.one_hot(idx, len(self.codebook)).type_as(flat)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        count = (self.ema_count + 1e-5) / (n + len(self.codebook) * 1e-5) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.dead_threshold
        if dead.any():  # restart dead codes on random current encoder outputs
            pick = torch.randint(0, len(flat), (int(dead.sum()),), generator=gen)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0 + self.dead_threshold


class VQVAE(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.quantizer, self.decoder = _encoder(cfg), EMAQuantizer(cfg), _decoder(cfg)

    def forward(self, images: torch.Tensor, gen=None):
        """images (B, H, W) in [0,1] -> (reconstruction, commitment loss, codes)."""
        z = self.encoder(images[:, None] * 2 - 1)
        zq_st, zq, codes = self.quantizer(z, gen)
        commitment = F.mse_loss(z, zq.detach())
        return self.decode_latent(zq_st), commitment, codes

    def decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        return ((self.decoder(zq)[:, 0] + 1) / 2)

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """float images (n, H, W) -> int codes (n, grid*grid) in raster order."""
        self.eval()
        out = []
        for i in range(0, len(images), batch_size):
            z = self.encoder(torch.from_numpy(images[i:i + batch_size])[:, None] * 2 - 1)
            flat = z.permute(0, 2, 3, 1).reshape(-1, self.cfg.code_dim)
            out.append(self.quantizer.codes(flat).view(len(z), -1))
        return torch.cat(out).numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """int codes (n, grid*grid) -> images (n, H, W) clipped to [0, 1]."""
        self.eval()
        g, out = self.cfg.grid, []
        for i in range(0, len(codes), batch_size):
            c = torch.as_tensor(codes[i:i + batch_size], dtype=torch.long)
            zq = self.quantizer.codebook[c].view(len(c), g, g, -1).permute(0, 3, 1, 2)
            out.append(self.decode_latent(zq).clamp(0, 1))
        return torch.cat(out).numpy()


def train_tokenizer(images: np.ndarray, heldout: np.ndarray, cfg: TokenizerConfig, *, steps: int,
                    batch_size: int, lr: float, seed: int, eval_every: int = 250, progress: bool = True):
    """Train a VQ-VAE on `images`; returns (model, curve rows as dicts)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = VQVAE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.from_numpy(images)
    curve = []
    bar = tqdm(range(1, steps + 1), desc="tokenizer", disable=not progress, mininterval=2)
    for step in bar:
        model.train()
        batch = data[torch.randint(0, len(data), (batch_size,), generator=gen)]
        recon, commitment, _ = model(batch, gen)
        recon_loss = F.mse_loss(recon, batch)
        loss = recon_loss + cfg.beta * commitment
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            row = {"step": step, "train_mse": recon_loss.item(), **evaluate(model, heldout)}
            curve.append(row)
            bar.set_postfix(mse=f"{row['heldout_mse']:.4f}", used=f"{row['codes_used']:.2f}")
    return model, curve


@torch.no_grad()
def evaluate(model: VQVAE, images: np.ndarray) -> dict:
    """Held-out reconstruction MSE, fraction of codes used and codebook perplexity."""
    codes = model.encode(images)
    return reconstruction_metrics(images, codes, model.decode(codes), model.cfg.codebook_size)


def reconstruction_metrics(images: np.ndarray, codes: np.ndarray, recon: np.ndarray, codebook_size: int) -> dict:
    """The numbers of `evaluate` from an encode/decode round trip already done."""
    counts = np.bincount(codes.ravel(), minlength=codebook_size)
    p = counts[counts > 0] / counts.sum()
    entropy_bits = float(-(p * np.log2(p)).sum())
    return {
        "heldout_mse": float(np.mean((recon - images) ** 2)),
        "codes_used": float((counts > 0).mean()),
        "perplexity": float(2 ** entropy_bits),
        "code_entropy_bits": entropy_bits,
    }


def save_tokenizer(path, model: VQVAE) -> None:
    save_checkpoint(path, model)


def load_tokenizer(path) -> VQVAE:
    """The dataset's tokenizer; for a `source: pretrained` dataset the file is a pointer to the
    backend's VQ, loaded behind this interface (ibdiv.data.backend_tokenizer)."""
    from ibdiv.data import backend_tokenizer

    if backend_tokenizer.is_pointer(path):
        return backend_tokenizer.load_pointer(path)
    return load_checkpoint(path, VQVAE, TokenizerConfig)
