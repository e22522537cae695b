"""The backend contract every pretrained backend module keeps (ibdiv.backends.protocol.Backend):
the DAG's interface (load_conditioned, token_grid, vq_image_size, vq_encode, vq_decode, vq_codebook,
build_tiny), the loader errors, the sampler hooks (determinism, cut + resume, guidance, sigma = 0
bit-identical) and the probe designs, checked on one tiny random checkpoint per backend, built once
per module with the backend's own build_tiny. What is specific to one backend stays in its own
test file (tests/test_llamagen.py, tests/test_amused.py, tests/test_vq_diffusion.py)."""
import hashlib
import json
import shutil

import pytest
import torch

from ibdiv.backends import amused, llamagen, vq_diffusion
from ibdiv.families.sampling import Perturbation, codebook_noise, condition_noise, resume, sample
from ibdiv.measure import probes
from prefix_reads import assert_prefix_read_clean

pytestmark = [pytest.mark.pretrained, pytest.mark.slow]

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
def prior(name, backend, folder):
    return backend.load_checkpoint(folder) if name == "llamagen" else backend.load_checkpoint(folder, prompts=PROMPTS)


@pytest.fixture(scope="module")
def vq(backend, folder):
    return backend.load_vq(folder)


def images(n, side, seed=0):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def codes(n, backend, vq, folder, seed=0):
    K = backend.vq_codebook(vq).shape[0]
    return torch.randint(0, K, (n, backend.token_grid(folder) ** 2), generator=torch.Generator().manual_seed(seed))


def test_grid_and_image_size_from_configs_match_the_loaded_models(backend, folder, prior, vq):
    grid, side = backend.token_grid(folder), backend.vq_image_size(folder)
    assert isinstance(grid, int) and isinstance(side, int)
    assert grid == prior.config.grid and side > grid
    book = backend.vq_codebook(vq)
    assert book.ndim == 2 and not book.requires_grad
    found = backend.vq_encode(vq, images(3, side))
    assert found.shape == (3, grid ** 2) and found.dtype == torch.int64
    assert ((found >= 0) & (found < book.shape[0])).all()


def test_vq_decode_gives_images_in_the_unit_range_as_the_generator_decodes(name, backend, folder, prior, vq):
    tokens = codes(4, backend, vq, folder)
    out = backend.vq_decode(vq, tokens)
    side = backend.vq_image_size(folder)
    assert out.shape == (4, 3, side, side) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0
    if name in DIFFUSERS:  # the generator's decode reads the same function, on its own VQ
        assert torch.equal(prior.decode(tokens), out)


def test_encode_is_deterministic_and_reencodes_decoded_images(backend, folder, vq):
    x = images(3, backend.vq_image_size(folder), seed=1)
    assert torch.equal(backend.vq_encode(vq, x), backend.vq_encode(vq, x))
    tokens = codes(3, backend, vq, folder, seed=2)
    again = backend.vq_encode(vq, backend.vq_decode(vq, tokens))
    assert again.shape == tokens.shape and again.dtype == torch.int64  # random VQs are not idempotent


def test_load_conditioned_selects_the_configured_conditions(name, backend, folder, prior):
    if name == "llamagen":
        selected = backend.load_conditioned(folder, [3, 1])
        assert selected.config.num_classes == 2
        knobs = {"cfg_scale": 2.0}  # guided: the null row must stay the last one
        mine = sample(selected, torch.zeros(6, dtype=torch.long), knobs, torch.Generator().manual_seed(4))
        full = sample(prior, torch.full((6,), 3), knobs, torch.Generator().manual_seed(4))
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


# --- the module interface -------------------------------------------------------------------------

def test_every_checkpoint_family_module_satisfies_the_backend_protocol():
    from ibdiv.backends import protocol
    from ibdiv.core import registry

    members = protocol.members()
    assert {"load_checkpoint", "load_conditioned", "load_vq", "start", "advance", "FOLDER_MARKER"} <= set(members)
    checkpoint_families = [f for f in registry.BUILT_IN.values() if f.model == "checkpoint"]
    assert {f.name for f in checkpoint_families} == set(BACKENDS)
    for family in checkpoint_families:
        module = registry.implementation(family.name)
        missing = sorted(m for m in members if not hasattr(module, m))
        assert not missing, f"{family.name} lacks {missing} of ibdiv.backends.protocol.Backend"
        not_callable = sorted(m for m, call in members.items() if call and not callable(getattr(module, m)))
        assert not not_callable, f"{family.name}: {not_callable} are not callable"
        assert module.FAMILY == family.name and set(module.KNOBS) == set(family.knobs)
        assert isinstance(module.FOLDER_MARKER, str) and isinstance(module.FOLDER_CLASSES, tuple)


# --- loader errors (every backend) ----------------------------------------------------------------

# what to take away from a good folder, and the error that names it
MISSING = {"llamagen": ("llamagen.json", r"llamagen\.json is missing"),
           "amused": ("text_encoder", r"{folder}.*missing subfolder.*text_encoder"),
           "vq_diffusion": ("learned_classifier_free_sampling_embeddings",
                            r"{folder}.*missing subfolder.*learned_classifier_free")}


def remove(path):
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_loader_errors_name_the_folder_and_the_problem(name, backend, folder, tmp_path):
    from ibdiv.core import registry

    with pytest.raises(FileNotFoundError, match="checkpoint folder .*nowhere does not exist"):
        backend.load_checkpoint(tmp_path / "nowhere")
    broken = shutil.copytree(folder, tmp_path / "broken")
    part, message = MISSING[name]
    remove(broken / part)
    with pytest.raises(FileNotFoundError, match=message.format(folder=broken)):
        backend.load_checkpoint(broken)
    # the folder of another backend (its marker instead of this backend's) names the backend to use
    assert registry.backend_owning(folder) == name
    for other in BACKENDS:
        if other == name:
            continue
        module = BACKENDS[other]
        foreign = shutil.copytree(folder, tmp_path / f"like_{other}")
        (foreign / backend.FOLDER_MARKER).unlink()
        (foreign / module.FOLDER_MARKER).write_text(json.dumps({"_class_name": module.FOLDER_CLASSES[0]})
                                                    if module.FOLDER_CLASSES else "{}")
        assert registry.backend_owning(foreign) == other
        what = module.FOLDER_CLASSES[0] if module.FOLDER_CLASSES else module.DESCRIBED.split(" ", 1)[1]
        for load in (backend.load_checkpoint, backend.check_folder, backend.load_vq, backend.token_grid):
            with pytest.raises(ValueError, match=rf"like_{other} is a {what} checkpoint.*use the {other} backend"):
                load(foreign)
    (tmp_path / "nobody").mkdir()
    assert registry.backend_owning(tmp_path / "nobody") is None
    if name in DIFFUSERS:
        diffusers_component_errors(name, backend, folder, tmp_path)


def diffusers_component_errors(name, backend, folder, tmp_path):
    """A pipeline of no backend; a folder without an index whose transformer is the other diffusers
    backend's class; a component without weights: the library's error, prefixed with the subfolder."""
    other = BACKENDS[next(d for d in DIFFUSERS if d != name)]
    ours, theirs = backend.CONFIG_FILES["transformer"][1], other.CONFIG_FILES["transformer"][1]
    described = backend.DESCRIBED
    unknown = shutil.copytree(folder, tmp_path / "unknown")
    (unknown / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match=rf"unknown is a StableDiffusionPipeline checkpoint.*not {described} one "
                                         rf"\({backend.PIPELINES[0]}\)"):
        backend.load_checkpoint(unknown)
    (unknown / "model_index.json").unlink()
    config = json.loads((unknown / "transformer" / "config.json").read_text())
    (unknown / "transformer" / "config.json").write_text(json.dumps({**config, "_class_name": theirs}))
    with pytest.raises(ValueError, match=rf"{theirs}, not the {ours}.*unknown is not {described}"):
        backend.load_checkpoint(unknown)
    for sub, cls in (("vqvae", "VQModel"), ("transformer", ours)):
        nowts = shutil.copytree(folder, tmp_path / f"noweights_{sub}")
        for f in (nowts / sub).glob("*.safetensors"):
            f.unlink()
        with pytest.raises(ValueError, match=rf"noweights_{sub}/{sub}: cannot load the {cls}"):
            backend.load_checkpoint(nowts)


# --- the sampler hooks (every backend) ------------------------------------------------------------

def n_conditions(name, prior):
    return prior.config.num_classes if name == "llamagen" else prior.config.n_classes


@pytest.fixture(scope="module")
def classes(name, prior):
    return torch.arange(n_conditions(name, prior)).repeat_interleave(2)


def run(prior, classes, knobs=None, seed=0, **kw):
    return sample(prior, classes, knobs or {}, torch.Generator().manual_seed(seed), **kw)


def test_same_seed_same_tokens_and_complete_logprobs(prior, classes):
    a, b, c = run(prior, classes, seed=0), run(prior, classes, seed=0), run(prior, classes, seed=1)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.tokens, c.tokens)
    assert a.committed.all() and (a.tokens >= 0).all() and (a.tokens < prior.vocab_size).all()
    assert torch.isfinite(a.logprobs).all() and (a.logprobs <= 0).all()
    assert a.state is None and a.committed_fraction == 1.0 and a.process_fraction == 1.0


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 0.3, 1 / 2])
def test_cut_and_resume_with_the_same_generator_equals_uninterrupted(name, prior, classes, fraction):
    knobs = {"cfg_scale": 3.0}
    whole = run(prior, classes, knobs, seed=3)
    g = torch.Generator().manual_seed(3)
    cut = sample(prior, classes, knobs, g, cut_fraction=fraction)
    assert cut.committed_fraction >= fraction and cut.process_fraction < 1
    assert torch.isnan(cut.logprobs[~cut.committed]).all() and (cut.tokens[~cut.committed] == -1).all()
    done = resume(prior, cut.state, knobs, g)
    assert torch.equal(done.tokens, whole.tokens)
    if name in DIFFUSERS:
        assert torch.equal(done.logprobs, whole.logprobs)
    else:  # the KV cache is rebuilt from the committed prefix on resume
        torch.testing.assert_close(done.logprobs, whole.logprobs)


def test_resume_with_fresh_randomness_keeps_the_path_and_leaves_the_state(name, prior, classes):
    """As the nested designs resume: with the committed codes frozen (vq_diffusion's published
    sampler could otherwise replace them: tests/test_vq_diffusion.py; the others never do)."""
    g = torch.Generator().manual_seed(5)
    cut = sample(prior, classes, {}, g, cut_fraction=0.25)
    before = cut.state.tokens.clone()
    expanded = probes.expand_state(cut.state, 4)
    more = resume(prior, expanded, {}, torch.Generator().manual_seed(9), freeze_committed=True)
    assert torch.equal(cut.state.tokens, before)  # resume leaves the state alone
    frozen = cut.committed.repeat_interleave(4, 0)
    assert torch.equal(more.tokens[frozen], cut.tokens.repeat_interleave(4, 0)[frozen])
    assert not torch.equal(more.tokens[0], more.tokens[1])  # continuations differ
    first, second = (resume(prior, cut.state, {}, torch.Generator().manual_seed(s), freeze_committed=True) for s in (1, 2))
    again = resume(prior, cut.state, {}, torch.Generator().manual_seed(1), freeze_committed=True)
    prefix = cut.committed
    assert torch.equal(first.tokens[prefix], cut.tokens[prefix]) and torch.equal(second.tokens[prefix], cut.tokens[prefix])
    assert not torch.equal(first.tokens, second.tokens) and torch.equal(first.tokens, again.tokens)
    knobs, message = STEP_GRID_CHANGE[name]  # a resume runs on the step grid of its cut
    with pytest.raises(ValueError, match=message):
        resume(prior, cut.state, knobs, g)


# a resume that would change the step grid: amused has a steps knob, the others have none
STEP_GRID_CHANGE = {"llamagen": ({"steps": 8}, "unknown knob"), "amused": ({"steps": 8}, "step grid"),
                    "vq_diffusion": ({"steps": 50}, "unknown knob")}


# the transformer keyword that carries each diffusers backend's prompt condition
CONDITION_INPUT = {"amused": ("pooled_text_emb", "prompt_embeds"), "vq_diffusion": ("encoder_hidden_states", "prompt_embeds")}


def test_cfg_1_is_unguided_and_other_scales_run_negative_then_positive(name, prior, classes):
    batches = []
    if name in DIFFUSERS:
        key, _ = CONDITION_INPUT[name]
        hook = prior.transformer.register_forward_pre_hook(
            lambda module, args, kwargs: batches.append(kwargs[key].clone()), with_kwargs=True)
    try:
        plain, one = run(prior, classes), run(prior, classes, {"cfg_scale": 1.0})
        assert all(len(b) == len(classes) for b in batches)  # no negative branch at scale 1
        batches.clear()
        guided = run(prior, classes, {"cfg_scale": 4.0})
    finally:
        if name in DIFFUSERS:
            hook.remove()
    assert torch.equal(plain.tokens, one.tokens) and torch.equal(plain.logprobs, one.logprobs)
    assert not torch.equal(plain.tokens, guided.tokens)
    if name in DIFFUSERS:  # [negative x n, positive x n], as the pipelines
        n, first = len(classes), batches[0]
        negative = getattr(prior, "negative_" + CONDITION_INPUT[name][1])
        assert torch.equal(first[:n], negative.expand(n, *negative.shape[1:]))
        assert torch.equal(first[n:], prior.prompt_embeds[classes])


# --- interventions (every backend) ----------------------------------------------------------------

@pytest.mark.parametrize("cfg", [1.0, 2.0, 3.0])
def test_zero_sigma_perturbations_are_bit_identical(prior, classes, cfg):
    n, g = len(classes), torch.Generator().manual_seed(0)
    base = run(prior, classes, {"cfg_scale": cfg})
    cond, code = condition_noise(prior, n, 0.0, g), codebook_noise(prior, n, 0.0, g)
    for perturbation in (Perturbation(cond_noise=cond), Perturbation(code_noise=code), Perturbation(cond, code)):
        other = run(prior, classes, {"cfg_scale": cfg}, perturbation=perturbation)
        assert torch.equal(other.tokens, base.tokens) and torch.equal(other.logprobs, base.logprobs)


@pytest.mark.parametrize("kind", ["cond", "code"])
def test_positive_sigma_changes_tokens(name, prior, classes, kind):
    n, g = len(classes), torch.Generator().manual_seed(0)
    noise = (Perturbation(cond_noise=condition_noise(prior, n, 1.0, g)) if kind == "cond"
             else Perturbation(code_noise=codebook_noise(prior, n, 1.0, g)))
    knobs = {} if name == "llamagen" else {"cfg_scale": 3.0}  # the tiny diffusers networks hardly read an unguided prompt
    assert not torch.equal(run(prior, classes, knobs, perturbation=noise).tokens, run(prior, classes, knobs).tokens)


def test_condition_noise_leaves_the_negative_branch_alone(prior, classes):
    """At scale 0 the guided logits are the negative branch's only: condition noise has no effect."""
    noise = Perturbation(cond_noise=condition_noise(prior, len(classes), 1.0, torch.Generator().manual_seed(0)))
    knobs = {"cfg_scale": 0.0}
    assert torch.equal(run(prior, classes, knobs, perturbation=noise).tokens, run(prior, classes, knobs).tokens)


def test_perturbation_shapes_are_checked(name, prior, classes):
    n, K, d = len(classes), prior.vocab_size, prior.tok_emb.weight.shape[1]
    with pytest.raises(ValueError, match="cond_noise must have shape"):
        run(prior, classes, perturbation=Perturbation(cond_noise=torch.zeros(n, 7)))
    with pytest.raises(ValueError, match="code_noise must have shape"):
        run(prior, classes, perturbation=Perturbation(code_noise=torch.zeros(n, K + 1, d)))
    if name in DIFFUSERS:
        with pytest.raises(ValueError, match="has no prompt"):
            sample(prior, torch.tensor([len(PROMPTS)]), {}, torch.Generator())


def test_probe_designs_run_on_the_backend(name, prior, classes):
    """The nested design (prefix noise on the condition, continuation noise on the codebook) and the flat one."""
    C, N = n_conditions(name, prior), prior.config.grid ** 2
    out = probes.sample_nested(prior, C, 2, 3, 0.25, {"cfg_scale": 3.0}, seed=1,
                               before=("condition", 0.5), after=("codebook", 0.5))
    assert out["tokens"].shape == (C, 2, 3, N) and out["committed_fraction"] >= 0.25
    frozen = out["frozen"][:, :, None, :].repeat(3, 2)
    assert (out["tokens"][:, :, :1] == out["tokens"])[frozen].all()  # continuations keep the prefix
    assert len({tuple(t) for t in out["tokens"][0, 0]}) > 1  # and differ
    flat = probes.sample_flat(prior, C, 2, {}, seed=1, noise=("condition", 0.0))
    assert (flat["tokens"] == run(prior, classes, seed=1).tokens.numpy()).all()


def test_load_sampler_reads_a_checkpoint_folder(name, backend, folder):
    from ibdiv.core import registry

    assert registry.family(name).model == "checkpoint"
    loaded = probes.load_sampler(name, folder)  # how a DAG job loads a checkpoint family
    assert isinstance(loaded, backend.PRIOR) and loaded.family == name and not loaded.training
    if name in DIFFUSERS:
        assert loaded.config.n_classes == 0
        loaded.set_prompts(PROMPTS[:1])
        assert loaded.config.n_classes == 1 and loaded.prompts == PROMPTS[:1]


class BatchSensitive(torch.nn.Module):
    """A text encoder whose outputs move with the batch size, as a batched CPU matmul's last bit
    can on some CPUs: a prompt encoded in a batch then differs from the prompt encoded alone."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ids, *args, **kwargs):
        out = self.inner(ids, *args, **kwargs)
        shift = 1e-3 * (ids.shape[0] - 1)

        def bump(x):
            if isinstance(x, tuple):
                return tuple(bump(y) for y in x)
            return x + shift if torch.is_tensor(x) and x.is_floating_point() else x

        for key in list(out.keys()):
            out[key] = bump(out[key])
        return out


@pytest.mark.parametrize("name", sorted(DIFFUSERS))
def test_a_prompt_encoded_alone_equals_its_row_in_any_batch(name, tmp_path_factory):
    """Bit for bit, whatever the CPU: each prompt goes through the text encoder by itself, so a
    condition's encoding cannot depend on which other conditions are configured (checked with
    an encoder that is batch-sensitive on purpose)."""
    backend = BACKENDS[name]
    folder = build(name, tmp_path_factory.mktemp(name) / "tiny")
    prompts = ["a red square", "a cat", "a very long prompt about a small blue circle on a grey field"]

    def encoded(chosen):
        prior = backend.load_checkpoint(folder, prompts=chosen)
        prior.text_encoder = BatchSensitive(prior.text_encoder)
        prior.set_prompts(chosen)
        out = prior.conditions(torch.arange(len(chosen)))
        return out if isinstance(out, tuple) else (out,)

    batch = encoded(prompts)
    for i, prompt in enumerate(prompts):
        alone = encoded([prompt])
        assert all(torch.equal(a[i:i + 1], b) for a, b in zip(batch, alone, strict=True)), (name, prompt)


class LoudStart(torch.nn.Module):
    """A text encoder whose start-of-text state (position 0 of every hidden-state tensor) is 100 x
    larger, as CLIP's start-of-text activations often are; every other position is unchanged."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ids, *args, **kwargs):
        out = self.inner(ids, *args, **kwargs)

        def loud(x):
            if isinstance(x, tuple):
                return tuple(loud(y) for y in x)
            if torch.is_tensor(x) and x.is_floating_point() and x.ndim == 3:
                x = x.clone()
                x[:, 0] *= 100
            return x

        for key in list(out.keys()):
            out[key] = loud(out[key])
        return out


@pytest.mark.parametrize("name", sorted(DIFFUSERS))
def test_condition_noise_scale_is_read_on_the_prompts_own_tokens(name, tmp_path_factory):
    """A start-of-text state 100 x larger leaves the condition noise scale s as it is (it is the
    RMS over the prompts' own tokens: not start/end of text, not padding), and sigma = 0 stays
    bit-identical on the encoder with the loud start."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    backend = BACKENDS[name]
    folder = build(name, tmp_path_factory.mktemp(name) / "tiny")
    plain = backend.load_checkpoint(folder, prompts=PROMPTS)
    loud = backend.load_checkpoint(folder, prompts=PROMPTS)
    loud.text_encoder = LoudStart(loud.text_encoder)
    loud.set_prompts(PROMPTS)
    hidden = {"amused": "encoder_hidden_states", "vq_diffusion": "prompt_embeds"}[name]
    states, plain_states = getattr(loud, hidden), getattr(plain, hidden)
    # the prompts' own tokens: one per character (the tiny tokenizer has no merges), from position 1
    assert loud.prompt_content.sum(1).tolist() == [len(p.replace(" ", "")) for p in PROMPTS]
    assert not loud.prompt_content[:, 0].any()
    torch.testing.assert_close(states[:, 1:], plain_states[:, 1:], rtol=0, atol=0)
    if name == "amused":  # aMUSEd reads the raw states: the start is loud (VQ-Diffusion normalises each state)
        assert states[:, 0].norm() > 50 * plain_states[:, 0].norm()
    torch.testing.assert_close(loud.condition_scale(), plain.condition_scale(), rtol=1e-6, atol=0)
    classes = torch.arange(len(PROMPTS)).repeat_interleave(2)
    zero = Perturbation(cond_noise=condition_noise(loud, len(classes), 0.0, torch.Generator().manual_seed(0)))
    for cfg in (1.0, 3.0):
        base = run(loud, classes, {"cfg_scale": cfg})
        other = run(loud, classes, {"cfg_scale": cfg}, perturbation=zero)
        assert torch.equal(other.tokens, base.tokens) and torch.equal(other.logprobs, base.logprobs)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_codebook_noise_after_the_cut_leaves_the_prefix_reads_alone(prior, classes, cfg):
    """DESIGN §4: the committed prefix is read through the clean code table after the cut
    (the KV-cached prefix of llamagen, the committed positions of the masked backends)."""
    assert_prefix_read_clean(prior, classes, {"cfg_scale": cfg}, 0.3)
