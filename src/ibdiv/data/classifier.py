"""Small CNN classifier trained in the pipeline on the real training split.

It replaces Inception (no downloaded weights here): its penultimate features feed the
Fréchet distance, KID, precision/recall/density/coverage and Vendi; its predictions give
conditioning accuracy. For `shapes` a second head reads the layout (the path variable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ibdiv.core.io import load_checkpoint, save_checkpoint


@dataclass
class ClassifierConfig:
    n_classes: int
    n_layouts: int = 0  # 0 = no layout head
    channels: int = 32
    feature_dim: int = 128


class CNN(nn.Module):
    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * c * 16, cfg.feature_dim), nn.SiLU(),
        )
        self.class_head = nn.Linear(cfg.feature_dim, cfg.n_classes)
        self.layout_head = nn.Linear(cfg.feature_dim, cfg.n_layouts) if cfg.n_layouts else None

    def forward(self, images: torch.Tensor):
        """images (B, H, W) in [0,1] -> (features, class logits, layout logits or None)."""
        feats = self.body(images[:, None] * 2 - 1)
        layout = self.layout_head(feats) if self.layout_head is not None else None
        return feats, self.class_head(feats), layout


@torch.no_grad()
def predict(model: CNN, images: np.ndarray, batch_size: int = 2048) -> dict[str, np.ndarray]:
    """Features, class probabilities and (if present) layout predictions for images."""
    model.eval()
    feats, probs, layouts = [], [], []
    for i in range(0, len(images), batch_size):
        f, logits, lay = model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])))
        feats.append(f)
        probs.append(logits.softmax(-1))
        if lay is not None:
            layouts.append(lay.argmax(-1))
    out = {"features": torch.cat(feats).numpy(), "probs": torch.cat(probs).numpy()}
    out["pred"] = out["probs"].argmax(-1)
    if layouts:
        out["layout_pred"] = torch.cat(layouts).numpy()
    return out


def train_classifier(images, labels, layouts, cfg: ClassifierConfig, *, steps: int, batch_size: int,
                     lr: float, seed: int, progress: bool = True) -> CNN:
    """Cross-entropy on classes (+ layouts when `cfg.n_layouts`), one-cycle learning rate."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = CNN(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    lay = torch.from_numpy(layouts) if cfg.n_layouts else None
    for _ in tqdm(range(steps), desc="classifier", disable=not progress, mininterval=2):
        model.train()
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        feats, logits, lay_logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        if lay is not None:
            loss = loss + F.cross_entropy(lay_logits, lay[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def save_classifier(path, model: CNN) -> None:
    save_checkpoint(path, model)


def load_classifier(path) -> CNN:
    return load_checkpoint(path, CNN, ClassifierConfig)
