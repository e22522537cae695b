"""A pretrained backend's VQ behind the in-house tokenizer's interface (DESIGN §12).

A `source: pretrained` dataset's `results/<d>/tokenizer/model.pt` is not weights but a small JSON
pointer (`write_pointer`); `ibdiv.data.tokenizer.load_tokenizer` recognises it and returns a
`BackendTokenizer`, so every measuring script works unchanged: `cfg.codebook_size`, `cfg.grid`,
`cfg.image_size` (the classifier's grey size), `quantizer.codebook` (K, d) for the coarse
K -> K' map, `encode` and `decode`.

The backend's module is imported by the name the pointer holds (importlib), not by an import
statement: `ibdiv.pipeline.codegraph` follows statements, and every in-house job loads its tokenizer
through `load_tokenizer`, so a statement here would make the whole in-house DAG depend on the
backends' code. The jobs that do load a backend depend on its code through backend.json (rule
record_checkpoint declares it).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

POINTER_KIND = "ibdiv.data.backend_tokenizer"


def write_pointer(path, backend: dict) -> None:
    """The tokenizer file of a pretrained dataset, from its backend.json contents."""
    from ibdiv.core.io import save_text

    keys = ("family", "implementation", "folder", "sha256", "image_size", "grid")
    save_text(path, json.dumps({"kind": POINTER_KIND, **{k: backend[k] for k in keys}}, indent=2) + "\n")


def is_pointer(path) -> bool:
    """A JSON pointer, not a torch checkpoint (a zip archive: its first byte is "P")."""
    with open(path, "rb") as f:
        return f.read(1) == b"{"


def load_pointer(path, device="cpu") -> "BackendTokenizer":
    pointer = json.loads(Path(path).read_text())
    if pointer.get("kind") != POINTER_KIND:
        raise ValueError(f"{path}: not a backend tokenizer pointer (kind {pointer.get('kind')!r})")
    return BackendTokenizer(importlib.import_module(pointer["implementation"]), pointer["folder"],
                            pointer["image_size"], pointer["grid"], device)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) -> (n, H, W), ITU-R 601 weights (what PIL's convert("L") uses)."""
    return 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(n, c, H, W) -> (n, c, size, size), antialiased bilinear, kept in [0, 1]."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


class BackendTokenizer:
    """A backend's VQ read as the in-house `VQVAE` is by the measuring code."""

    def __init__(self, module, folder, image_size: int, grid: int, device="cpu"):
        self.module, self.device = module, device
        self.vq = module.load_vq(folder, device=device)
        self.vq_image_size = int(module.vq_image_size(folder))
        codebook = module.vq_codebook(self.vq).float().cpu()
        self.quantizer = SimpleNamespace(codebook=codebook)
        self.cfg = SimpleNamespace(codebook_size=int(codebook.shape[0]), grid=int(grid), image_size=int(image_size))

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Grey (n, H, W) or RGB (n, 3, H, W) images, float in [0, 1] or uint8 -> codes (n, N)."""
        x = torch.as_tensor(np.asarray(images))
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.dim() == 3:  # grey: the same value in all three channels
            x = x[:, None].expand(-1, 3, -1, -1)
        out = [self.module.vq_encode(self.vq, resize(x[i:i + batch_size], self.vq_image_size).to(self.device)).cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.grid ** 2), np.int64)

    @torch.no_grad()
    def decode(self, codes: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Codes (n, N) -> grey images (n, image_size, image_size) in [0, 1] (the classifier's input)."""
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        out = [resize(luminance(self.module.vq_decode(self.vq, codes[i:i + batch_size].to(self.device)).float().cpu())
                      [:, None], self.cfg.image_size)[:, 0]
               for i in range(0, len(codes), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.cfg.image_size, self.cfg.image_size), np.float32)
