"""The DAG's backend interface (load_conditioned, token_grid, vq_image_size, vq_encode,
vq_decode, vq_codebook, build_tiny): the same names and contract in every backend module, checked
on one tiny random checkpoint per backend, built once per module with the backend's own build_tiny."""
import hashlib

import pytest
import torch

from ibdiv.backends import amused, llamagen, vq_diffusion
from ibdiv.families.sampling import sample

torch.set_num_threads(1)

BACKENDS = {"llamagen": llamagen, "amused": amused, "vq_diffusion": vq_diffusion}
DIFFUSERS = ("amused", "vq_diffusion")
TINY_GPT = {"dim": 32, "n_layer": 2, "n_head": 2, "multiple_of": 32}  # as tests/test_llamagen.py
SIZES = {"llamagen": {"grid": 4, "gpt": TINY_GPT,
                      "vq": {"codebook_size": 16, "codebook_embed_dim": 8, "ch": 32, "ch_mult": [1, 2],
                             "num_res_blocks": 1, "z_channels": 32}},
         "amused": {}, "vq_diffusion": {}}
N_CLASSES, SEED = 5, 0
PROMPTS = ["a red ball", "a cat"]


def build(name, folder, seed=SEED):
    return BACKENDS[name].build_tiny(folder, seed, N_CLASSES, SIZES[name])


@pytest.fixture(scope="module", params=list(BACKENDS))
def name(request):
    if request.param in DIFFUSERS:  # as tests/test_amused.py and tests/test_vq_diffusion.py
        pytest.importorskip("diffusers")
        pytest.importorskip("transformers")
    return request.param


@pytest.fixture(scope="module")
def backend(name):
    return BACKENDS[name]


@pytest.fixture(scope="module")
def folder(name, tmp_path_factory):
    return build(name, tmp_path_factory.mktemp(name) / "tiny")


@pytest.fixture(scope="module")
def generator(name, backend, folder):
    return backend.load_checkpoint(folder) if name == "llamagen" else backend.load_checkpoint(folder, prompts=PROMPTS)


@pytest.fixture(scope="module")
def vq(backend, folder):
    return backend.load_tokenizer(folder)


def images(n, side, seed=0):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def codes(n, backend, vq, folder, seed=0):
    K = backend.vq_codebook(vq).shape[0]
    return torch.randint(0, K, (n, backend.token_grid(folder) ** 2), generator=torch.Generator().manual_seed(seed))


def test_grid_and_image_size_from_configs_match_the_loaded_models(backend, folder, generator, vq):
    grid, side = backend.token_grid(folder), backend.vq_image_size(folder)
    assert isinstance(grid, int) and isinstance(side, int)
    assert grid == generator.config.grid and side > grid
    book = backend.vq_codebook(vq)
    assert book.ndim == 2 and not book.requires_grad
    found = backend.vq_encode(vq, images(3, side))
    assert found.shape == (3, grid ** 2) and found.dtype == torch.int64
    assert ((found >= 0) & (found < book.shape[0])).all()


def test_vq_decode_gives_images_in_the_unit_range_as_the_generator_decodes(name, backend, folder, generator, vq):
    tokens = codes(4, backend, vq, folder)
    out = backend.vq_decode(vq, tokens)
    side = backend.vq_image_size(folder)
    assert out.shape == (4, 3, side, side) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0
    if name in DIFFUSERS:  # the generator's decode reads the same function, on its own VQ
        assert torch.equal(generator.decode(tokens), out)


def test_encode_is_deterministic_and_reencodes_decoded_images(backend, folder, vq):
    x = images(3, backend.vq_image_size(folder), seed=1)
    assert torch.equal(backend.vq_encode(vq, x), backend.vq_encode(vq, x))
    tokens = codes(3, backend, vq, folder, seed=2)
    again = backend.vq_encode(vq, backend.vq_decode(vq, tokens))
    assert again.shape == tokens.shape and again.dtype == torch.int64  # random VQs are not idempotent


def test_load_conditioned_selects_the_configured_conditions(name, backend, folder, generator):
    if name == "llamagen":
        selected = backend.load_conditioned(folder, [3, 1])
        assert selected.config.num_classes == 2
        knobs = {"cfg_scale": 2.0}  # guided: the null row must stay the last one
        mine = sample(selected, torch.zeros(6, dtype=torch.long), knobs, torch.Generator().manual_seed(4))
        full = sample(generator, torch.full((6,), 3), knobs, torch.Generator().manual_seed(4))
        assert torch.equal(mine.tokens, full.tokens) and torch.equal(mine.logprobs, full.logprobs)
        for bad in ([3, N_CLASSES], [-1]):
            with pytest.raises(ValueError, match=str(folder)):
                backend.load_conditioned(folder, bad)
    else:
        selected = backend.load_conditioned(folder, PROMPTS)
        alone = backend.load_checkpoint(folder, prompts=[PROMPTS[1]])
        assert selected.config.n_classes == 2
        mine, theirs = selected.conditions(torch.tensor([1])), alone.conditions(torch.tensor([0]))
        mine, theirs = (x if isinstance(x, tuple) else (x,) for x in (mine, theirs))
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
        for bad in (["a cat", ""], ["a cat", 3]):
            with pytest.raises(ValueError, match=str(folder)):
                backend.load_conditioned(folder, bad)
    with pytest.raises(ValueError, match=str(folder)):
        backend.load_conditioned(folder, [])


def weight_hashes(folder):
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".pt"))
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_build_tiny_is_reproducible_and_rejects_sizes_it_cannot_set(name, backend, folder, tmp_path):
    again = build(name, tmp_path / "again")
    assert weight_hashes(again) and weight_hashes(again) == weight_hashes(folder)  # same seed, same bytes
    if name in DIFFUSERS:
        with pytest.raises(ValueError, match="grid"):
            backend.build_tiny(tmp_path / "sized", SEED, N_CLASSES, {"grid": 4})
