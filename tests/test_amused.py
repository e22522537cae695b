"""The aMUSEd backend (ibdiv.backends.amused) on a tiny randomly initialised checkpoint.

The checkpoint is built with diffusers' own aMUSEd test sizes, saved with
``AmusedPipeline.save_pretrained`` and read back through the real loaders, so these tests cover
the loading code as well as every sampler hook (DESIGN §12).
"""
import json
import math
import shutil

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from ibdiv.backends import amused  # noqa: E402
from ibdiv.measure import probes
from ibdiv.core import registry
from ibdiv.families.sampling import Perturbation, codebook_noise, condition_noise, resume, sample  # noqa: E402

torch.set_num_threads(1)

PROMPTS = ["a red cat", "a blue dog", "three green birds"]
K, N = 8, amused.TINY_GRID ** 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return amused.save_tiny_checkpoint(tmp_path_factory.mktemp("amused") / "tiny", seed=0)


@pytest.fixture(scope="module")
def model(folder):
    return amused.load_checkpoint(folder, prompts=PROMPTS)


def classes(n_per=2):
    return torch.arange(len(PROMPTS)).repeat_interleave(n_per)


def run(model, knobs=None, seed=0, **kw):
    return sample(model, classes(), knobs or {}, torch.Generator().manual_seed(seed), **kw)


def entropy(tokens: torch.Tensor) -> float:
    """Mean per-position entropy (bits) of the empirical token distribution over samples."""
    p = torch.nn.functional.one_hot(tokens, K).float().mean(0)
    return -(p * p.clamp(min=1e-12).log2()).sum(-1).mean().item()


# --- checkpoint folder --------------------------------------------------------------------------

def test_tiny_checkpoint_is_the_pipeline_layout_and_loads(folder, model):
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "AmusedPipeline"
    for sub in amused.SUBFOLDERS:
        assert (folder / sub).is_dir()
    assert model.family == "amused" and not model.training
    assert (model.vocab_size, model.mask_id, model.config.seq_len, model.config.n_classes) == (K, 31, N, 3)
    assert model.tok_emb is model.transformer.embed.embeddings and model.tok_emb.weight.shape == (32, 8)
    # the tiny tokenizer maps real prompts to real ids, not to unk (= end of text)
    ids = model.tokenizer(["a red cat"]).input_ids[0]
    assert ids[0] == 0 and ids[-1] == 1 and 1 not in ids[1:-1]
    # condition c is the c-th prompt, encoded as the pipeline encodes it; negative = ""
    pooled, hidden = model.encode(["a blue dog"])
    # (batched with the other prompts, so equal up to float rounding)
    torch.testing.assert_close(model.prompt_embeds[1], pooled[0])
    torch.testing.assert_close(model.encoder_hidden_states[1], hidden[0])
    assert hidden.shape == (1, amused.TINY_TEXT_LENGTH, 8)
    assert torch.equal(model.negative_prompt_embeds, model.encode([""])[0])


def test_save_and_reload_gives_identical_samples(folder, model, tmp_path):
    from diffusers import AmusedPipeline

    again = tmp_path / "again"
    AmusedPipeline(vqvae=model.vqvae, tokenizer=model.tokenizer, text_encoder=model.text_encoder,
                   transformer=model.transformer, scheduler=model.scheduler).save_pretrained(again)
    reloaded = amused.load_checkpoint(again, prompts=PROMPTS)
    a, b = run(model, {"cfg_scale": 3.0}), run(reloaded, {"cfg_scale": 3.0})
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)


def test_load_sampler_reads_a_checkpoint_folder(folder):
    assert registry.family("amused").model == "checkpoint"
    loaded = probes.load_sampler("amused", folder)
    assert isinstance(loaded, amused.AmusedGenerator) and loaded.config.n_classes == 0
    loaded.set_prompts(PROMPTS[:2])
    assert loaded.config.n_classes == 2 and loaded.prompts == PROMPTS[:2]


def test_loader_errors_name_the_folder_and_the_problem(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        amused.load_checkpoint(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(FileNotFoundError, match=rf"{broken}.*missing subfolder.*text_encoder"):
        amused.load_checkpoint(broken)
    # a LlamaGen folder
    (tmp_path / "llamagen").mkdir()
    (tmp_path / "llamagen" / "llamagen.json").write_text("{}")
    with pytest.raises(ValueError, match=r"llamagen.*LlamaGen checkpoint.*llamagen backend"):
        amused.load_checkpoint(tmp_path / "llamagen")
    # a VQ-Diffusion folder (model index) and one without an index whose transformer is another class
    vqd = tmp_path / "vqd"
    shutil.copytree(folder, vqd)
    (vqd / "model_index.json").write_text(json.dumps({"_class_name": "VQDiffusionPipeline"}))
    with pytest.raises(ValueError, match=r"vqd is a VQDiffusionPipeline checkpoint.*vq_diffusion backend"):
        amused.load_checkpoint(vqd)
    (vqd / "model_index.json").unlink()
    config = json.loads((vqd / "transformer" / "config.json").read_text())
    (vqd / "transformer" / "config.json").write_text(json.dumps({**config, "_class_name": "Transformer2DModel"}))
    with pytest.raises(ValueError, match=r"Transformer2DModel, not the UVit2DModel.*vqd is not an aMUSEd"):
        amused.load_checkpoint(vqd)
    # a subfolder whose weights are gone: the library's error, prefixed with the subfolder
    nowts = tmp_path / "noweights"
    shutil.copytree(folder, nowts)
    for f in (nowts / "vqvae").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ValueError, match=r"noweights/vqvae: cannot load the VQModel"):
        amused.load_checkpoint(nowts)


# --- the process ----------------------------------------------------------------------------------

def test_committed_counts_are_the_schedulers(model):
    """Our float32 mask_len arithmetic gives the counts AmusedScheduler.step commits."""
    from diffusers import AmusedScheduler

    for n_tokens, steps, schedule in [(256, 12, "cosine"), (N, 12, "cosine"), (N, 5, "linear"), (1024, 16, "cosine")]:
        sched = AmusedScheduler(mask_token_id=99, masking_schedule=schedule)
        sched.set_timesteps(steps)
        g, x, counts = torch.Generator().manual_seed(0), torch.full((2, n_tokens), 99), []
        for t in sched.timesteps:
            x = sched.step(torch.randn(2, n_tokens, 10, generator=g), t, x, generator=g).prev_sample
            counts.append((x != 99).sum(1)[0].item())
        assert counts == amused.committed_after_step(n_tokens, steps, schedule)
    # 256 tokens, 12 steps: step 8 commits 129 (float32 cos(pi/3) < 0.5), not 128
    assert amused.committed_after_step(256, 12)[7] == 129
    result = run(model)
    assert result.trace["committed"] == amused.committed_after_step(N, 12)


def test_same_seed_same_tokens_and_complete_logprobs(model):
    a, b, c = run(model, seed=0), run(model, seed=0), run(model, seed=1)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    assert a.committed.all() and (a.tokens >= 0).all() and (a.tokens < K).all()
    assert torch.isfinite(a.logprobs).all() and (a.logprobs <= 0).all()
    assert a.state is None and a.committed_fraction == 1.0 and a.process_fraction == 1.0


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 1 / 2])
def test_cut_and_resume_with_the_same_generator_equals_uninterrupted(model, fraction):
    knobs = {"cfg_scale": 3.0}
    whole = run(model, knobs, seed=3)
    g = torch.Generator().manual_seed(3)
    cut = sample(model, classes(), knobs, g, cut_fraction=fraction)
    done = resume(model, cut.state, knobs, g)
    assert torch.equal(done.tokens, whole.tokens) and torch.equal(done.logprobs, whole.logprobs)
    # the cut is the first step with >= f N committed, and says so
    counts = amused.committed_after_step(N, 12)
    step = next(i for i, c in enumerate(counts) if c >= fraction * N)
    assert cut.committed_fraction == counts[step] / N >= fraction
    assert step == 0 or counts[step - 1] / N < fraction
    assert cut.process_fraction == (step + 1) / 12
    assert torch.isnan(cut.logprobs[~cut.committed]).all() and (cut.tokens[~cut.committed] == -1).all()


def test_resume_with_fresh_randomness_keeps_the_path_and_the_state(model):
    g = torch.Generator().manual_seed(5)
    cut = sample(model, classes(), {}, g, cut_fraction=0.25)
    before = cut.state.tokens.clone()
    expanded = probes.expand_state(cut.state, 4)
    more = resume(model, expanded, {}, torch.Generator().manual_seed(9))
    assert torch.equal(cut.state.tokens, before)  # resume leaves the state alone
    frozen = cut.committed.repeat_interleave(4, 0)
    assert torch.equal(more.tokens[frozen], cut.tokens.repeat_interleave(4, 0)[frozen])
    assert not torch.equal(more.tokens[0], more.tokens[1])  # continuations differ
    with pytest.raises(ValueError, match="step grid"):
        resume(model, cut.state, {"steps": 8}, g)


def test_cfg_1_is_unguided_and_other_scales_run_negative_then_positive(model):
    batches = []
    hook = model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["pooled_text_emb"].clone()), with_kwargs=True)
    try:
        plain, one = run(model), run(model, {"cfg_scale": 1.0})
        assert all(len(b) == 6 for b in batches)  # no negative branch at scale 1
        batches.clear()
        guided = run(model, {"cfg_scale": 4.0})
    finally:
        hook.remove()
    assert torch.equal(plain.tokens, one.tokens) and torch.equal(plain.logprobs, one.logprobs)
    assert not torch.equal(plain.tokens, guided.tokens)
    first = batches[0]  # [negative x n, positive x n], as the pipeline
    assert torch.equal(first[:6], model.negative_prompt_embeds.expand(6, -1))
    assert torch.equal(first[6:], model.prompt_embeds[classes()])


def test_guidance_is_the_pipelines_formula_on_logits(model):
    tokens = torch.full((6, N), model.mask_id)
    branches = amused._Branches(model, classes(), 10.0, None)
    pos = model.network(tokens, model.prompt_embeds[classes()], model.encoder_hidden_states[classes()])
    neg = model.network(tokens, model.negative_prompt_embeds.expand(6, -1),
                        model.negative_encoder_hidden_states.expand(6, -1, -1))
    torch.testing.assert_close(branches.logits(model, tokens), neg + 10.0 * (pos - neg))


MANY = torch.zeros(240, dtype=torch.long)  # one prompt, many samples: per-position entropy


def many(model, knobs, seed=11):
    return sample(model, MANY, {"steps": 6, **knobs}, torch.Generator().manual_seed(seed)).tokens


def test_temperature_moves_entropy_the_expected_way(model):
    cold, base, hot = (entropy(many(model, {"temperature": t})) for t in (0.5, 1.0, 2.0))
    assert cold < base < hot
    # near-zero temperatures and no choice noise: a deterministic process with log-probs ~ 0
    a = sample(model, classes(), {"temperature": 1e-3, "choice_temperature": 0.0}, torch.Generator().manual_seed(1))
    b = sample(model, classes(), {"temperature": 1e-3, "choice_temperature": 0.0}, torch.Generator().manual_seed(2))
    assert torch.equal(a.tokens, b.tokens) and a.logprobs.min() > -1e-3


def test_guidance_lowers_entropy_and_choice_temperature_matters(model):
    assert entropy(many(model, {"cfg_scale": 10.0})) < entropy(many(model, {}))
    hot = run(model, {"choice_temperature": 2.0})
    assert not torch.equal(hot.tokens, run(model, {"choice_temperature": 0.0}).tokens)


def test_steps_set_the_step_grid(model):
    result = run(model, {"steps": 4})
    assert result.trace["committed"] == amused.committed_after_step(N, 4)


def test_heldout_bits_are_a_finite_bound(model):
    tokens = run(model).tokens
    bits = amused.heldout_bits_per_token(model, tokens, classes(), torch.Generator().manual_seed(0))
    assert 0 < bits < 3 * math.log2(K)


# --- interventions -------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_zero_sigma_perturbations_are_bit_identical(model, cfg):
    n, g = len(classes()), torch.Generator().manual_seed(0)
    base = run(model, {"cfg_scale": cfg})
    for perturbation in (Perturbation(cond_noise=condition_noise(model, n, 0.0, g)),
                         Perturbation(code_noise=codebook_noise(model, n, 0.0, g))):
        other = run(model, {"cfg_scale": cfg}, perturbation=perturbation)
        assert torch.equal(other.tokens, base.tokens) and torch.equal(other.logprobs, base.logprobs)


@pytest.mark.parametrize("kind", ["cond", "code"])
def test_positive_sigma_changes_tokens(model, kind):
    n, g = len(classes()), torch.Generator().manual_seed(0)
    noise = (Perturbation(cond_noise=condition_noise(model, n, 1.0, g)) if kind == "cond"
             else Perturbation(code_noise=codebook_noise(model, n, 1.0, g)))
    assert not torch.equal(run(model, {"cfg_scale": 3.0}, perturbation=noise).tokens, run(model, {"cfg_scale": 3.0}).tokens)


def test_condition_noise_leaves_the_negative_branch_alone(model):
    """At scale 0 the guided logits are the negative branch's only: condition noise has no effect."""
    noise = Perturbation(cond_noise=condition_noise(model, 6, 1.0, torch.Generator().manual_seed(0)))
    assert torch.equal(run(model, {"cfg_scale": 0.0}, perturbation=noise).tokens, run(model, {"cfg_scale": 0.0}).tokens)


def test_noise_maps_onto_the_text_tensors_and_code_rows(model):
    noise = condition_noise(model, 6, 0.5, torch.Generator().manual_seed(0))
    dp, width = model.prompt_embeds.shape[1], model.encoder_hidden_states[0].numel()
    assert noise.shape == (6, dp + width) == (6, model.condition_width)
    # each part has its own tensor's per-element RMS (over the prompts)
    rms = [x.pow(2).mean().sqrt().item() for x in (model.prompt_embeds, model.encoder_hidden_states)]
    scale = model.condition_scale()
    assert torch.allclose(scale[:dp], torch.tensor(rms[0])) and torch.allclose(scale[dp:], torch.tensor(rms[1]))
    pooled, hidden = model.conditions(classes(), noise)
    torch.testing.assert_close(pooled - model.prompt_embeds[classes()], noise[:, :dp])
    torch.testing.assert_close(hidden - model.encoder_hidden_states[classes()], noise[:, dp:].reshape(6, -1, 8))
    code = codebook_noise(model, 6, 1.0, torch.Generator().manual_seed(0))
    assert code.shape == (6, K, 8)
    torch.testing.assert_close(code.pow(2).mean().sqrt(), model.tok_emb.weight[:K].pow(2).mean().sqrt(), rtol=0.1, atol=0)
    # the network reads rows 0..K-1 from the perturbed table; the MASK row stays the real one
    tokens = torch.full((6, N), model.mask_id)
    tokens[:, : N // 2] = torch.arange(N // 2) % K
    p, h = model.conditions(classes())
    clean = model.network(tokens, p, h)
    same = model.network(tokens, p, h, model.tok_emb.weight[:K].expand(6, K, 8))
    assert torch.equal(clean, same)
    all_masked = torch.full((6, N), model.mask_id)
    assert torch.equal(model.network(all_masked, p, h), model.network(all_masked, p, h, model.tok_emb.weight[:K] + code))


def test_perturbation_shapes_are_checked(model):
    with pytest.raises(ValueError, match="cond_noise must have shape"):
        run(model, perturbation=Perturbation(cond_noise=torch.zeros(6, 8)))
    with pytest.raises(ValueError, match="code_noise must have shape"):
        run(model, perturbation=Perturbation(code_noise=torch.zeros(6, K + 1, 8)))
    with pytest.raises(ValueError, match="has no prompt"):
        sample(model, torch.tensor([3]), {}, torch.Generator())


# --- decoding -------------------------------------------------------------------------------------

def test_decode_gives_images_of_the_vq_shape_in_unit_range(model):
    tokens = run(model).tokens
    images = model.decode(tokens)
    side = amused.TINY_GRID * model.vae_scale_factor
    assert images.shape == (6, 3, side, side) and model.vae_scale_factor == 2
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()
    assert not torch.equal(images[0], images[1])
    # the VQ decodes the code rows it is given: as the pipeline, force_not_quantize with a codebook lookup
    direct = model.vqvae.decode(tokens.view(6, 8, 8), force_not_quantize=True, shape=(6, 8, 8, 8)).sample.clip(0, 1)
    assert torch.equal(images, direct)


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_same_draws_as_the_diffusers_pipeline_when_it_samples_like_us(model, monkeypatch, cfg):
    """Run AmusedPipeline itself with torch.multinomial replaced by a Gumbel-max draw on the same
    generator's uniforms (the one change DESIGN §10 makes): it yields our tokens. So the rest of
    the process (prompt encoding, [neg, pos] guidance, micro-conditioning, mask_len, choice
    temperature annealing, confidence ranking, the last step) is the pipeline's."""
    from diffusers import AmusedPipeline

    def gumbel_max(probs, num_samples, generator=None):
        u = torch.rand(probs.shape, generator=generator).clamp_(min=torch.finfo(torch.float32).tiny)
        return (probs.log() - torch.log(-torch.log(u))).argmax(-1, keepdim=True)

    pipe = AmusedPipeline(vqvae=model.vqvae, tokenizer=model.tokenizer, text_encoder=model.text_encoder,
                          transformer=model.transformer, scheduler=model.scheduler)
    pipe.set_progress_bar_config(disable=True)
    monkeypatch.setattr(torch, "multinomial", gumbel_max)
    prompts = [PROMPTS[c] for c in classes()]
    theirs = pipe(prompts, guidance_scale=cfg, generator=torch.Generator().manual_seed(7),
                  output_type="latent").images
    ours = sample(model, classes(), {"cfg_scale": cfg}, torch.Generator().manual_seed(7))
    assert torch.equal(theirs.reshape(6, N), ours.tokens)


def test_probe_designs_run_on_the_backend(model):
    """The nested design (prefix noise on the prompt, continuation noise on the codebook) and the flat one."""
    out = probes.sample_nested(model, 3, 2, 3, 0.25, {"cfg_scale": 3.0}, seed=1,
                               before=("condition", 0.5), after=("codebook", 0.5))
    assert out["tokens"].shape == (3, 2, 3, N) and out["committed_fraction"] >= 0.25
    frozen = out["frozen"][:, :, None, :].repeat(3, 2)
    assert (out["tokens"][:, :, :1] == out["tokens"])[frozen].all()  # continuations keep the prefix
    flat = probes.sample_flat(model, 3, 2, {}, seed=1, noise=("condition", 0.0))
    assert (flat["tokens"] == run(model, seed=1).tokens.numpy()).all()
