"""VQ tokenizer: quantiser properties, dead-code restart, determinism of token caches."""
import numpy as np
import torch
import torch.nn.functional as F

from ibdiv.data import shapes, tokenizer, tokens
from ibdiv.core.io import save_npz

torch.set_num_threads(1)
CFG = tokenizer.TokenizerConfig(image_size=16, grid=4, codebook_size=16, code_dim=8, channels=16)


def _images(n=256, seed=0):
    return shapes.generate(n, 16, seed)[0]


def test_shapes_of_latents_codes_and_reconstructions():
    model = tokenizer.VQVAE(CFG)
    model.train()
    recon, commitment, codes = model(torch.from_numpy(_images(8)))
    assert recon.shape == (8, 16, 16) and codes.shape == (8, 4, 4) and commitment.ndim == 0
    assert model.encode(_images(5)).shape == (5, 16)
    assert model.decode(np.zeros((3, 16), dtype=int)).shape == (3, 16, 16)


def test_straight_through_gradient_reaches_the_encoder():
    model = tokenizer.VQVAE(CFG)
    x = torch.from_numpy(_images(16))
    recon, _, _ = model(x)
    F.mse_loss(recon, x).backward()  # reconstruction loss only: no commitment term
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # EMA codebook: no gradient


def test_dead_codes_are_restarted_from_encoder_outputs():
    q = tokenizer.EMAQuantizer(tokenizer.TokenizerConfig(codebook_size=16, code_dim=4, dead_threshold=1.0))
    q.train()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(32, 4, 4, 4, generator=gen)
    q(z, gen)  # data-initialised
    q.codebook[:] = q.codebook[0]  # collapse: every code identical, 15 of them unused
    q.ema_count[1:] = 0.0
    for _ in range(3):
        _, _, idx = q(torch.randn(32, 4, 4, 4, generator=gen), gen)
    assert len(torch.unique(idx)) > 8


def test_no_restart_means_collapsed_codebook_stays_collapsed():
    q = tokenizer.EMAQuantizer(tokenizer.TokenizerConfig(codebook_size=16, code_dim=4, dead_threshold=0.0))
    q.train()
    gen = torch.Generator().manual_seed(0)
    q(torch.randn(32, 4, 4, 4, generator=gen), gen)
    q.codebook[:] = q.codebook[0]
    _, _, idx = q(torch.randn(32, 4, 4, 4, generator=gen), gen)
    assert len(torch.unique(idx)) == 1  # the restart test above would fail without restarts


def test_training_lowers_error_and_uses_codes():
    images = _images(512)
    _, curve = tokenizer.train_tokenizer(images, images[:128], CFG, steps=60, batch_size=64, lr=3e-3, seed=0, eval_every=20, progress=False)
    assert curve[-1]["heldout_mse"] < curve[0]["heldout_mse"]
    assert curve[-1]["codes_used"] >= 0.5


def test_same_seed_gives_identical_token_cache_bytes(tmp_path):
    images = _images(256)
    blobs = []
    for run in range(2):
        model, _ = tokenizer.train_tokenizer(images, images[:64], CFG, steps=15, batch_size=32, lr=3e-3, seed=7, progress=False)
        codes = model.encode(images).astype(tokens.compact_dtype(CFG.codebook_size))
        save_npz(tmp_path / f"cache{run}.npz", tokens=codes, labels=np.arange(len(codes)))
        blobs.append((tmp_path / f"cache{run}.npz").read_bytes())
    assert blobs[0] == blobs[1]


def test_save_load_roundtrip(tmp_path):
    model = tokenizer.VQVAE(CFG)
    model.train()
    model(torch.from_numpy(_images(16)))  # initialise the codebook
    tokenizer.save_tokenizer(tmp_path / "vq.pt", model)
    loaded = tokenizer.load_tokenizer(tmp_path / "vq.pt")
    assert (loaded.encode(_images(8)) == model.encode(_images(8))).all()
