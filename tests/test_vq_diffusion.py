"""The VQ-Diffusion backend (ibdiv.backends.vq_diffusion) on a tiny randomly initialised checkpoint.

The checkpoint is built with diffusers' own VQ-Diffusion test sizes, saved with
``VQDiffusionPipeline.save_pretrained`` and read back component by component through the real
loaders, so these tests cover the loading code as well as every sampler hook (DESIGN §12).
"""
import json
import math

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from ibdiv.backends import vq_diffusion
from ibdiv.measure import entropy as estimators
from ibdiv.families.backbone import CodeReads  # noqa: E402
from ibdiv.families.sampling import codebook_noise, condition_noise, resume, sample  # noqa: E402

pytestmark = [pytest.mark.pretrained, pytest.mark.slow]

torch.set_num_threads(1)

PROMPTS = ["a red cat", "a blue dog", "green birds"]  # short: the pipeline does not truncate
K, N, T = vq_diffusion.TINY_CODES, vq_diffusion.TINY_GRID ** 2, 100
L, D = vq_diffusion.TINY_TEXT_LENGTH, vq_diffusion.TINY_TEXT_WIDTH


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return vq_diffusion.save_tiny_checkpoint(tmp_path_factory.mktemp("vqd") / "tiny", seed=0)


def pipeline(model):
    from diffusers import VQDiffusionPipeline

    pipe = VQDiffusionPipeline(vqvae=model.vqvae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                               transformer=model.transformer, scheduler=model.scheduler,
                               learned_classifier_free_sampling_embeddings=model.learned_embeddings)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def model(folder):
    """The tiny generator, class c conditioned on PROMPTS[c]."""
    return vq_diffusion.load_checkpoint(folder, prompts=PROMPTS)


def classes(n_per=2):
    return torch.arange(len(PROMPTS)).repeat_interleave(n_per)


def entropy(tokens: torch.Tensor) -> float:
    """Mean over positions of the plug-in entropy (bits) of the codes across samples."""
    return float(estimators.entropy_from_counts(estimators.counts_per_position(tokens.numpy(), K), "plugin").mean())


def run(model, knobs=None, seed=0, **kw):
    """Two samples of every prompt, class-major."""
    return sample(model, classes(), knobs or {}, torch.Generator().manual_seed(seed), **kw)


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


# --- the process ----------------------------------------------------------------------------------

def test_every_timestep_runs_and_unmasking_follows_the_trained_ratio(model):
    """(Same seed, same tokens: tests/test_backend_interface.py.)"""
    a = run(model, seed=0)
    assert len(a.trace["committed"]) == T and a.trace["committed"][-1] == N
    # unmasking follows the trained mask ratio: about half the tokens are committed halfway
    assert 0.2 * N < sum(a.trace["committed"][T // 2 - 1: T // 2 + 1]) / 2 < 0.8 * N


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 1 / 2])
def test_the_cut_is_the_first_step_with_the_fraction_committed_in_every_sample(model, fraction):
    """(Cut + resume = uninterrupted: tests/test_backend_interface.py.) The cut is the first step
    after which every sample has >= f N committed, and says so."""
    knobs = {"cfg_scale": 3.0}
    whole = run(model, knobs, seed=3)
    cut = sample(model, classes(), knobs, torch.Generator().manual_seed(3), cut_fraction=fraction)
    step = round(cut.process_fraction * T)
    per_sample = cut.committed.sum(1)
    assert per_sample.min() >= fraction * N and whole.trace["committed"][step - 1] == per_sample.min()
    assert step == 1 or whole.trace["committed"][step - 2] < fraction * N
    assert cut.committed_fraction == pytest.approx(per_sample.float().mean().item() / N) and cut.committed_fraction >= fraction
    assert whole.trace["committed_max"][step - 1] == per_sample.max()  # the per-sample spread is recorded


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
    assert torch.equal(clean, model.network(tokens, h, t, CodeReads(model.tok_emb.weight[:K].expand(6, K, 32))))
    assert not torch.equal(clean, model.network(tokens, h, t, CodeReads(model.tok_emb.weight[:K] + code)))
    all_masked = torch.full((6, N), model.mask_id)  # the MASK row is never perturbed
    assert torch.equal(model.network(all_masked, h, t), model.network(all_masked, h, t, CodeReads(model.tok_emb.weight[:K] + code)))


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

