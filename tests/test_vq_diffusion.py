"""The VQ-Diffusion backend (ibdiv.backends.vq_diffusion) on a tiny randomly initialised checkpoint.

The checkpoint is built with diffusers' own VQ-Diffusion test sizes, saved with
``VQDiffusionPipeline.save_pretrained`` and read back component by component through the real
loaders, so these tests cover the loading code as well as every sampler hook (DESIGN §12).
"""
import json
import math
import shutil

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from ibdiv.measure import probes  # noqa: E402
from ibdiv.core import registry
from ibdiv.backends import vq_diffusion
from ibdiv.families.sampling import Perturbation, codebook_noise, condition_noise, resume, sample  # noqa: E402

torch.set_num_threads(1)

PROMPTS = ["a red cat", "a blue dog", "green birds"]  # short: the pipeline does not truncate
K, N, T = vq_diffusion.TINY_CODES, vq_diffusion.TINY_GRID ** 2, 100
L, D = vq_diffusion.TINY_TEXT_LENGTH, vq_diffusion.TINY_TEXT_WIDTH


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return vq_diffusion.save_tiny_checkpoint(tmp_path_factory.mktemp("vqd") / "tiny", seed=0)


@pytest.fixture(scope="module")
def model(folder):
    return vq_diffusion.load_checkpoint(folder, prompts=PROMPTS)


def classes(n_per=2):
    return torch.arange(len(PROMPTS)).repeat_interleave(n_per)


def run(model, knobs=None, seed=0, **kw):
    return sample(model, classes(), knobs or {}, torch.Generator().manual_seed(seed), **kw)


def entropy(tokens: torch.Tensor) -> float:
    """Mean per-position entropy (bits) of the empirical token distribution over samples."""
    p = torch.nn.functional.one_hot(tokens, K).float().mean(0)
    return -(p * p.clamp(min=1e-12).log2()).sum(-1).mean().item()


def pipeline(model):
    from diffusers import VQDiffusionPipeline

    pipe = VQDiffusionPipeline(vqvae=model.vqvae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                               transformer=model.transformer, scheduler=model.scheduler,
                               learned_classifier_free_sampling_embeddings=model.learned_embeddings)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- checkpoint folder --------------------------------------------------------------------------

def test_tiny_checkpoint_is_the_pipeline_layout_and_loads(folder, model):
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "VQDiffusionPipeline"
    for sub in vq_diffusion.SUBFOLDERS:
        assert (folder / sub).is_dir()
    assert model.family == "vq_diffusion" and not model.training
    assert (model.vocab_size, model.mask_id, model.config.seq_len, model.config.n_classes) == (K, K, N, 3)
    assert model.config.steps == T <= model.transformer.config.num_embeds_ada_norm
    assert model.tok_emb is model.transformer.latent_image_embedding.emb and model.tok_emb.weight.shape == (K + 1, 32)
    # prompts encoded as the pipeline encodes them: last hidden state, each token L2-normalised
    pipe = pipeline(model)
    theirs = pipe._encode_prompt(PROMPTS, 1, True)
    torch.testing.assert_close(model.prompt_embeds, theirs[3:])
    torch.testing.assert_close(model.prompt_embeds.norm(dim=-1), torch.ones(3, L))
    # the negative is the learned table, [neg, pos] order
    assert model.learned_embeddings.learnable
    assert torch.equal(theirs[:3], model.negative_prompt_embeds.expand(3, -1, -1))
    assert model.condition_width == L * D


def test_the_pipelines_own_loader_is_broken(folder):
    """Why the components are loaded one by one (diffusers 0.42.1). If this fails, diffusers fixed it."""
    from diffusers import VQDiffusionPipeline

    with pytest.raises(ValueError, match="has no class `LearnedClassifierFreeSamplingEmbeddings`"):
        VQDiffusionPipeline.from_pretrained(folder, local_files_only=True)


def test_save_and_reload_gives_identical_samples(model, tmp_path):
    again = tmp_path / "again"
    pipeline(model).save_pretrained(again)
    reloaded = vq_diffusion.load_checkpoint(again, prompts=PROMPTS)
    a, b = run(model, {"cfg_scale": 3.0}), run(reloaded, {"cfg_scale": 3.0})
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)


def test_load_sampler_reads_a_checkpoint_folder(folder):
    assert registry.family("vq_diffusion").model == "checkpoint"
    loaded = probes.load_sampler("vq_diffusion", folder)
    assert isinstance(loaded, vq_diffusion.VQDiffusionGenerator) and loaded.config.n_classes == 0
    loaded.set_prompts(PROMPTS[:2])
    assert loaded.config.n_classes == 2 and loaded.prompts == PROMPTS[:2]


def test_loader_errors_name_the_folder_and_the_problem(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        vq_diffusion.load_checkpoint(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "learned_classifier_free_sampling_embeddings")
    with pytest.raises(FileNotFoundError, match=rf"{broken}.*missing subfolder.*learned_classifier_free"):
        vq_diffusion.load_checkpoint(broken)
    (tmp_path / "llamagen").mkdir()
    (tmp_path / "llamagen" / "llamagen.json").write_text("{}")
    with pytest.raises(ValueError, match=r"llamagen.*LlamaGen checkpoint.*llamagen backend"):
        vq_diffusion.load_checkpoint(tmp_path / "llamagen")
    # an aMUSEd folder (model index), and one without an index whose transformer is another class
    other = tmp_path / "amusedlike"
    shutil.copytree(folder, other)
    (other / "model_index.json").write_text(json.dumps({"_class_name": "AmusedPipeline"}))
    with pytest.raises(ValueError, match=r"amusedlike is a AmusedPipeline checkpoint.*amused backend"):
        vq_diffusion.load_checkpoint(other)
    (other / "model_index.json").unlink()
    config = json.loads((other / "transformer" / "config.json").read_text())
    (other / "transformer" / "config.json").write_text(json.dumps({**config, "_class_name": "UVit2DModel"}))
    with pytest.raises(ValueError, match=r"UVit2DModel, not the Transformer2DModel.*amusedlike is not a VQ-Diffusion"):
        vq_diffusion.load_checkpoint(other)
    nowts = tmp_path / "noweights"
    shutil.copytree(folder, nowts)
    for f in (nowts / "transformer").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ValueError, match=r"noweights/transformer: cannot load the Transformer2DModel"):
        vq_diffusion.load_checkpoint(nowts)


# --- the process ----------------------------------------------------------------------------------

def test_same_seed_same_tokens_and_complete_logprobs(model):
    a, b, c = run(model, seed=0), run(model, seed=0), run(model, seed=1)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    assert a.committed.all() and (a.tokens >= 0).all() and (a.tokens < K).all()
    assert torch.isfinite(a.logprobs).all() and (a.logprobs <= 0).all()
    assert a.state is None and a.committed_fraction == 1.0 and a.process_fraction == 1.0
    assert len(a.trace["committed"]) == T and a.trace["committed"][-1] == N
    # unmasking follows the trained mask ratio: about half the tokens are committed halfway
    assert 0.2 * N < sum(a.trace["committed"][T // 2 - 1: T // 2 + 1]) / 2 < 0.8 * N


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 1 / 2])
def test_cut_and_resume_with_the_same_generator_equals_uninterrupted(model, fraction):
    knobs = {"cfg_scale": 3.0}
    whole = run(model, knobs, seed=3)
    g = torch.Generator().manual_seed(3)
    cut = sample(model, classes(), knobs, g, cut_fraction=fraction)
    done = resume(model, cut.state, knobs, g)
    assert torch.equal(done.tokens, whole.tokens) and torch.equal(done.logprobs, whole.logprobs)
    # the cut is the first step after which every sample has >= f N committed, and says so
    step = round(cut.process_fraction * T)
    per_sample = cut.committed.sum(1)
    assert per_sample.min() >= fraction * N and whole.trace["committed"][step - 1] == per_sample.min()
    assert step == 1 or whole.trace["committed"][step - 2] < fraction * N
    assert cut.committed_fraction == pytest.approx(per_sample.float().mean().item() / N) and cut.committed_fraction >= fraction
    assert whole.trace["committed_max"][step - 1] == per_sample.max()  # the per-sample spread is recorded
    assert torch.isnan(cut.logprobs[~cut.committed]).all() and (cut.tokens[~cut.committed] == -1).all()


def test_committed_tokens_are_frozen(model):
    """Once a position holds a code it keeps it (the scheduler's q_posterior and last step could
    replace it: see the module docstring)."""
    g = torch.Generator().manual_seed(2)
    cut = sample(model, classes(), {"cfg_scale": 3.0}, g, cut_fraction=0.5)
    done = resume(model, cut.state, {"cfg_scale": 3.0}, g)
    assert torch.equal(done.tokens[cut.committed], cut.tokens[cut.committed])
    assert torch.equal(done.logprobs[cut.committed], cut.logprobs[cut.committed])


def test_the_pipeline_would_replace_codes(model):
    """The deviation the freezing makes: the unmodified pipeline replaces known codes (on this
    random network, often); the mask state is absorbing in both."""
    seen = []
    pipeline(model)([PROMPTS[c] for c in classes()], guidance_scale=1.0, generator=torch.Generator().manual_seed(7),
                    output_type="np", callback=lambda i, t, x: seen.append(x.clone()))
    known = [x != model.mask_id for x in seen]
    assert all((a <= b).all() for a, b in zip(known, known[1:]))  # never re-masked
    assert sum(int((a & (x != y)).sum()) for a, x, y in zip(known, seen, seen[1:])) > 0  # but replaced


def test_resume_with_fresh_randomness_keeps_the_path_and_the_state(model):
    g = torch.Generator().manual_seed(5)
    cut = sample(model, classes(), {}, g, cut_fraction=0.25)
    before = cut.state.tokens.clone()
    expanded = probes.expand_state(cut.state, 4)
    more = resume(model, expanded, {}, torch.Generator().manual_seed(9))
    assert torch.equal(cut.state.tokens, before)
    frozen = cut.committed.repeat_interleave(4, 0)
    assert torch.equal(more.tokens[frozen], cut.tokens.repeat_interleave(4, 0)[frozen])
    assert not torch.equal(more.tokens[0], more.tokens[1])
    with pytest.raises(ValueError, match="unknown knob"):
        resume(model, cut.state, {"steps": 50}, g)


def test_cfg_1_is_unguided_and_other_scales_run_negative_then_positive(model):
    batches = []
    hook = model.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["encoder_hidden_states"].clone()), with_kwargs=True)
    try:
        plain, one = run(model), run(model, {"cfg_scale": 1.0})
        assert all(len(b) == 6 for b in batches)  # no negative branch at scale 1 (pipeline: guidance_scale > 1)
        batches.clear()
        guided = run(model, {"cfg_scale": 4.0})
    finally:
        hook.remove()
    assert torch.equal(plain.tokens, one.tokens) and torch.equal(plain.logprobs, one.logprobs)
    assert not torch.equal(plain.tokens, guided.tokens)
    first = batches[0]
    assert torch.equal(first[:6], model.negative_prompt_embeds.expand(6, -1, -1))
    assert torch.equal(first[6:], model.prompt_embeds[classes()])


def test_guidance_is_the_pipelines_formula_in_log_space(model):
    tokens = torch.full((6, N), model.mask_id)
    t = torch.tensor(60)
    branches = vq_diffusion._Branches(model, classes(), 5.0, None)
    pos = model.network(tokens, model.prompt_embeds[classes()], t)
    neg = model.network(tokens, model.negative_prompt_embeds.expand(6, -1, -1), t)
    guided = neg + 5.0 * (pos - neg)
    out = branches.log_p_x_0(model, tokens, t)
    torch.testing.assert_close(out, guided - guided.logsumexp(1, keepdim=True))
    torch.testing.assert_close(out.logsumexp(1), torch.zeros(6, N))


def test_truncate_is_the_pipelines(model):
    log_p = torch.randn(4, K, N).log_softmax(1)
    pipe = pipeline(model)
    for rate in (1.0, 0.86, 0.3):
        assert torch.equal(vq_diffusion.truncate(log_p, rate), pipe.truncate(log_p, rate))


MANY = torch.zeros(120, dtype=torch.long)


def many(model, knobs, seed=11):
    return sample(model, MANY, knobs, torch.Generator().manual_seed(seed)).tokens


def test_knobs_move_entropy_the_expected_way(model):
    base = entropy(many(model, {}))
    assert entropy(many(model, {"cfg_scale": 5.0})) < base
    assert entropy(many(model, {"top_p": 0.5})) < base
    assert entropy(many(model, {"temperature": 0.5})) < base < entropy(many(model, {"temperature": 2.0}))


def test_heldout_bits_are_a_finite_bound(model):
    tokens = run(model).tokens
    bits = vq_diffusion.heldout_bits_per_token(model, tokens, classes(), torch.Generator().manual_seed(0))
    assert 0 < bits < 3 * math.log2(K)
    # the timestep given to the network matches the masked fraction
    steps = model.timestep_for(torch.tensor([0.0, 0.5, 1.0]))
    assert steps[0] == 0 and steps[2] == T - 1 and abs(int(steps[1]) - 50) <= 1


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
    noise = Perturbation(cond_noise=condition_noise(model, 6, 1.0, torch.Generator().manual_seed(0)))
    assert torch.equal(run(model, {"cfg_scale": 0.0}, perturbation=noise).tokens, run(model, {"cfg_scale": 0.0}).tokens)


def test_noise_maps_onto_the_normalised_states_and_code_rows(model):
    noise = condition_noise(model, 6, 0.5, torch.Generator().manual_seed(0))
    assert noise.shape == (6, L * D) == (6, model.condition_width)
    # noise after the per-token normalisation: its scale is the normalised states' RMS, 1/sqrt(D)
    torch.testing.assert_close(model.condition_scale(), torch.full((L * D,), D ** -0.5))
    hidden = model.conditions(classes(), noise)
    torch.testing.assert_close(hidden - model.prompt_embeds[classes()], noise.reshape(6, L, D))
    code = codebook_noise(model, 6, 1.0, torch.Generator().manual_seed(0))
    assert code.shape == (6, K, 32)
    t = torch.tensor(50)
    tokens = torch.full((6, N), model.mask_id)
    tokens[:, : N // 2] = torch.arange(N // 2) % K
    h = model.conditions(classes())
    clean = model.network(tokens, h, t)
    assert torch.equal(clean, model.network(tokens, h, t, model.tok_emb.weight[:K].expand(6, K, 32)))
    assert not torch.equal(clean, model.network(tokens, h, t, model.tok_emb.weight[:K] + code))
    all_masked = torch.full((6, N), model.mask_id)  # the MASK row is never perturbed
    assert torch.equal(model.network(all_masked, h, t), model.network(all_masked, h, t, model.tok_emb.weight[:K] + code))


def test_perturbation_shapes_are_checked(model):
    with pytest.raises(ValueError, match="cond_noise must have shape"):
        run(model, perturbation=Perturbation(cond_noise=torch.zeros(6, 8)))
    with pytest.raises(ValueError, match="code_noise must have shape"):
        run(model, perturbation=Perturbation(code_noise=torch.zeros(6, K + 1, 32)))
    with pytest.raises(ValueError, match="has no prompt"):
        sample(model, torch.tensor([3]), {}, torch.Generator())


# --- decoding and equivalence with the pipeline ---------------------------------------------------

@pytest.mark.parametrize("knobs", [{"cfg_scale": 1.0}, {"cfg_scale": 4.0, "top_p": 0.86}])
def test_same_draws_and_images_as_the_diffusers_pipeline_with_frozen_tokens(model, monkeypatch, knobs):
    """Run VQDiffusionPipeline itself, changed only where this backend deviates (committed tokens
    kept after each scheduler step; its Gumbel uniforms on the CPU are already ours): it yields our
    tokens and our decoded images. So prompt encoding, learned negatives, [neg, pos] log-space
    guidance with logsumexp, truncate, clamp, q_posterior and the last step are the pipeline's."""
    from diffusers.schedulers.scheduling_vq_diffusion import VQDiffusionSchedulerOutput

    pipe = pipeline(model)
    original = pipe.scheduler.step

    def frozen_step(model_output, timestep, sample, generator=None, return_dict=True):
        prev = original(model_output, timestep, sample, generator=generator).prev_sample
        return VQDiffusionSchedulerOutput(prev_sample=torch.where(sample != model.mask_id, sample, prev))

    monkeypatch.setattr(pipe.scheduler, "step", frozen_step)
    seen = []
    images = pipe([PROMPTS[c] for c in classes()], guidance_scale=knobs["cfg_scale"],
                  truncation_rate=knobs.get("top_p", 1.0), generator=torch.Generator().manual_seed(7),
                  output_type="np", callback=lambda i, t, x: seen.append(x.clone())).images
    ours = sample(model, classes(), knobs, torch.Generator().manual_seed(7))
    assert torch.equal(seen[-1], ours.tokens)
    assert [int((x != model.mask_id).sum(1).min()) for x in seen] == ours.trace["committed"]
    torch.testing.assert_close(torch.from_numpy(images).permute(0, 3, 1, 2), model.decode(ours.tokens))


def test_decode_gives_images_of_the_vq_shape_in_unit_range(model):
    images = model.decode(run(model).tokens)
    side = vq_diffusion.TINY_GRID * 2  # two VQ levels: one downsampling
    assert images.shape == (6, 3, side, side)
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()
    assert not torch.equal(images[0], images[1])


def test_probe_designs_run_on_the_backend(model):
    out = probes.sample_nested(model, 3, 2, 3, 0.25, {"cfg_scale": 3.0}, seed=1,
                               before=("condition", 0.5), after=("codebook", 0.5))
    assert out["tokens"].shape == (3, 2, 3, N) and out["committed_fraction"] >= 0.25
    frozen = out["frozen"][:, :, None, :].repeat(3, 2)
    assert (out["tokens"][:, :, :1] == out["tokens"])[frozen].all()
    flat = probes.sample_flat(model, 3, 2, {}, seed=1, noise=("condition", 0.0))
    assert (flat["tokens"] == run(model, seed=1).tokens.numpy()).all()
