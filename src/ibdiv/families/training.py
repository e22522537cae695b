"""Train one prior family on token grids; held-out bits/token on one scale; save / load.

Every learned family gets the same backbone, optimiser (AdamW, betas (0.9, 0.95), weight decay
0.01 on matrices and embeddings, nanoGPT-style), learning-rate schedule (linear warmup, cosine
decay to 10 %), label dropout to the NULL class (enables CFG), step budget and evaluation
cadence, and keeps its best held-out checkpoint (DESIGN §3: the fair-comparison control).
The independent family is counted, not trained.
"""

from __future__ import annotations

import copy
import math

import torch
from tqdm.auto import tqdm

from ibdiv.core import registry
from ibdiv.families.backbone import device_of, uniform
from ibdiv.core.io import save_torch

# Every training setting, at the default config's values (config.yaml `prior`; a test checks
# that these keys, the schema's and config.yaml's are the same and the values equal): a config
# that leaves a key out gets what the default run uses.
DEFAULT_CFG = {
    "steps": 2000,
    "batch_size": 128,
    "lr": 1e-3,
    "min_lr_ratio": 0.1,
    "warmup": 100,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "eval_every": 250,
    # checkpoint selection scores the first `eval_sequences` held-out sequences (the ELBO
    # bound of MIM / diffusion costs N forward passes per sequence); the reported number is
    # the best checkpoint's score on the whole held-out split
    "eval_sequences": 500,
    "label_dropout": 0.1,
    # backbone (learned families)
    "d_model": 96,
    "n_layers": 3,
    "n_heads": 4,
    "dropout": 0.0,
    # family-specific; one config serves every family, so each reads only its own keys
    "replace_fraction": 0.0,  # diffusion: mask-and-replace share of corruptions
    "alpha": 0.5,  # independent: add-alpha smoothing of the count tables
}


def resolve_cfg(cfg: dict) -> dict:
    unknown = sorted(set(cfg) - set(DEFAULT_CFG))
    if unknown:
        raise ValueError(f"unknown training config key(s) {unknown}; known: {sorted(DEFAULT_CFG)}")
    return {**DEFAULT_CFG, **cfg}


@torch.no_grad()
def heldout_bits_per_token(model, tokens, labels, gen: torch.Generator | None) -> float:
    """AR and independent: exact NLL; MIM and diffusion: the absorbing-diffusion ELBO bound."""
    was_training = model.training
    model.eval()
    try:
        return registry.implementation(model.family).heldout_bits_per_token(model, tokens, labels, gen)
    finally:
        model.train(was_training)


def has_exact_likelihood(family: str) -> bool:
    """Whether the family's held-out bits/token are an exact NLL (else an ELBO bound)."""
    return registry.family(family).exact_likelihood


def train_prior(family: str, train_tokens, train_labels, val_tokens, val_labels, *, K: int,
                C: int, cfg: dict, seed: int, progress: bool = True, device="cpu"):
    """Returns (model at its best held-out evaluation, on `device`; curve of dicts
    step/train_loss/heldout_bits; its bits/token on the whole held-out split).

    Weights are initialised on the CPU and every draw (batches, masks, noise levels) comes from
    CPU RNGs (torch.Generator) moved to the device, so only the arithmetic depends on the device. Dropout
    (0 in the default config) draws from the device's own generator, seeded from `seed`.
    """
    cfg = resolve_cfg(cfg)
    module = registry.implementation(family)
    N = train_tokens.shape[1]
    train_tokens, train_labels, val_tokens, val_labels = (
        t.to(device) for t in (train_tokens, train_labels, val_tokens, val_labels))
    with torch.random.fork_rng():  # weights and dropout from `seed`; the caller's RNG untouched
        torch.manual_seed(seed)
        model = module.PRIOR.build(K, N, C, cfg).to(device)
        model.family = family  # the registry's name, which a config's own family chooses
        if not registry.family(family).learned:  # counted, not trained
            model.fit(train_tokens, train_labels)
            bits = heldout_bits_per_token(model, val_tokens, val_labels, None)
            return model, [{"step": 0, "train_loss": None, "heldout_bits": bits}], bits
        # a fixed random subset: the held-out split may be ordered by class
        pick = torch.randperm(len(val_tokens), generator=torch.Generator().manual_seed(seed + 2))
        pick = pick[:cfg["eval_sequences"]].sort().values.to(device)
        model, curve = _optimise(model, module.training_loss, train_tokens, train_labels,
                                 val_tokens[pick], val_labels[pick], cfg, seed, progress)
        bits = heldout_bits_per_token(model, val_tokens, val_labels, torch.Generator().manual_seed(seed + 1))
        return model, curve, bits


def _optimise(model, training_loss, train_tokens, train_labels, val_tokens, val_labels, cfg,
              seed, progress):
    optimiser = _adamw(model, cfg)
    batches = torch.Generator().manual_seed(seed)
    best_bits, best_state, curve, running = math.inf, None, [], []
    bar = tqdm(range(1, cfg["steps"] + 1), desc=f"train {model.family}", disable=not progress)
    model.train()
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, cfg)
        idx = torch.randint(0, len(train_tokens), (cfg["batch_size"],), generator=batches).to(train_tokens.device)
        labels = _drop_labels(train_labels[idx], cfg["label_dropout"], model.null_class, batches)
        loss = training_loss(model, train_tokens[idx], labels, batches)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimiser.step()
        running.append(loss.item())
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            # the same masks at every evaluation, so checkpoints are compared like for like
            bits = heldout_bits_per_token(model, val_tokens, val_labels,
                                          torch.Generator().manual_seed(seed + 1))
            curve.append({"step": step, "train_loss": sum(running) / len(running), "heldout_bits": bits})
            running = []
            bar.set_postfix(heldout_bits=f"{bits:.3f}")
            if bits < best_bits:
                best_bits, best_state = bits, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model, curve


def learning_rate(step: int, cfg: dict) -> float:
    """Linear warmup to lr, then cosine decay to min_lr_ratio * lr at the last step."""
    if step <= cfg["warmup"]:
        return cfg["lr"] * step / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    floor = cfg["min_lr_ratio"]
    return cfg["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _adamw(model, cfg) -> torch.optim.AdamW:
    """Decay matrices and embeddings, not biases nor LayerNorm gains (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=(0.9, 0.95))


def _drop_labels(labels, p: float, null_class: int, gen) -> torch.Tensor:
    drop = uniform(labels.shape, gen, labels.device) < p
    return labels.masked_fill(drop, null_class)


def save_model(path, model) -> None:
    """Family, constructor spec and state dict (on the CPU, whatever the model trained on);
    written atomically."""
    if device_of(model).type != "cpu":
        model = copy.deepcopy(model).cpu()  # a CPU model is saved as is: the same bytes as before devices
    save_torch(path, {"family": model.family, "spec": model.spec(), "state_dict": model.state_dict()})


def load_model(path):
    """On the CPU; move it with `.to(device)`."""
    payload = torch.load(path, weights_only=True, map_location="cpu")
    model = registry.implementation(payload["family"]).PRIOR.from_spec(payload["spec"])
    model.family = payload["family"]
    model.load_state_dict(payload["state_dict"])
    return model.eval()
