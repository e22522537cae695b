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


def test_published_sampler_replaces_codes_and_nested_continuations_keep_them(model):
    """The baseline runs the published sampler: on this random network it replaces visible codes
    (counted per step). A continuation resumed with freeze_committed keeps every code committed at
    the cut and counts the replacements it suppressed; resumed without, it replaces some."""
    g = torch.Generator().manual_seed(2)
    whole = run(model, {"cfg_scale": 3.0}, seed=2)
    assert sum(whole.trace["replaced"]) > 0 and sum(whole.trace["suppressed"]) == 0
    cut = sample(model, classes(), {"cfg_scale": 3.0}, g, cut_fraction=0.5)
    frozen = resume(model, cut.state, {"cfg_scale": 3.0}, torch.Generator().manual_seed(9), freeze_committed=True)
    assert torch.equal(frozen.tokens[cut.committed], cut.tokens[cut.committed])
    assert torch.equal(frozen.logprobs[cut.committed], cut.logprobs[cut.committed])
    steps_done = len(cut.trace["replaced"])
    assert sum(frozen.trace["replaced"][steps_done:]) == 0 and sum(frozen.trace["suppressed"]) > 0
    free = resume(model, cut.state, {"cfg_scale": 3.0}, torch.Generator().manual_seed(9))
    assert not torch.equal(free.tokens[cut.committed], cut.tokens[cut.committed])
    assert sum(free.trace["replaced"][steps_done:]) > 0


def test_nested_continuations_in_chunks_keep_the_prefix(model):
    """Continuations drawn a few at a time (the memory budget's nested_batch), codebook noise drawn
    per chunk: the same prefix frozen in every continuation, reproducible; a chunk that holds them
    all is the one-call draw."""
    from ibdiv.measure.probes import sample_nested

    kw = dict(paths=2, continuations=3, cut_fraction=0.25, knobs={}, seed=0, after=("codebook", 1.0))
    whole = sample_nested(model, 2, **kw)
    assert all((sample_nested(model, 2, batch_size=12, **kw)[k] == whole[k]).all() for k in whole)
    chunked, again = (sample_nested(model, 2, batch_size=5, **kw) for _ in range(2))
    assert (chunked["tokens"] == again["tokens"]).all() and (chunked["frozen"] == whole["frozen"]).all()
    frozen = chunked["frozen"][:, :, None, :].repeat(3, axis=2)
    assert (chunked["tokens"] == chunked["tokens"][:, :, :1])[frozen].all()
    assert not (chunked["tokens"] == whole["tokens"]).all()  # other draws after the cut


def test_nested_design_records_the_suppressed_replacements(model):
    from ibdiv.measure.probes import sample_nested

    out = sample_nested(model, 2, paths=2, continuations=2, cut_fraction=0.25, knobs={}, seed=0)
    assert out["suppressed_replacements"] > 0
    assert (out["tokens"][:, :, :, :] == out["tokens"][:, :, :1, :])[out["frozen"][:, :, None, :]
                                                                     .repeat(2, axis=2)].all()


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


def test_heldout_score_is_a_monte_carlo_elbo_that_chunking_does_not_change(model):
    """The backend scores with SCORE_LEVELS stratified mask sizes per sequence (the exact sum over
    all N sizes does not fit memory at the released sizes): on the tiny checkpoint it agrees with
    the exact form within 4 standard errors of the per-sequence difference, and the network-call
    chunk (what the memory budget sets) leaves it unchanged."""
    from ibdiv.backends.diffusers_common import SCORE_LEVELS
    from ibdiv.families.masking import nelbo_per_sequence

    g = torch.Generator().manual_seed(5)
    tokens, labels = torch.randint(0, K, (48, N), generator=g), torch.arange(48) % len(PROMPTS)
    exact = nelbo_per_sequence(model, tokens, labels, torch.Generator().manual_seed(1), rows_per_call=256)
    mc = nelbo_per_sequence(model, tokens, labels, torch.Generator().manual_seed(2),
                            levels=SCORE_LEVELS, rows_per_call=256)
    diff = mc - exact
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))
    bits = [vq_diffusion.heldout_bits_per_token(model, tokens, labels, torch.Generator().manual_seed(3),
                                                rows_per_call=rows) for rows in (5, 64)]
    assert bits[0] == pytest.approx(bits[1], rel=1e-6)


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
def test_same_draws_and_images_as_the_diffusers_pipeline(model, knobs):
    """VQDiffusionPipeline itself (its Gumbel uniforms on the CPU are already ours) yields our tokens,
    replacements included, and our decoded images: prompt encoding, learned negatives, [neg, pos]
    log-space guidance with logsumexp, truncate, clamp, q_posterior and the last step are the pipeline's."""
    seen = []
    images = pipeline(model)([PROMPTS[c] for c in classes()], guidance_scale=knobs["cfg_scale"],
                             truncation_rate=knobs.get("top_p", 1.0), generator=torch.Generator().manual_seed(7),
                             output_type="np", callback=lambda i, t, x: seen.append(x.clone())).images
    ours = sample(model, classes(), knobs, torch.Generator().manual_seed(7))
    assert torch.equal(seen[-1], ours.tokens)
    assert [int((x != model.mask_id).sum(1).min()) for x in seen] == ours.trace["committed"]
    assert [int(((a != model.mask_id) & (a != b)).sum()) for a, b in zip([torch.full_like(seen[0], model.mask_id)]
                                                                        + seen, seen)] == ours.trace["replaced"]
    torch.testing.assert_close(torch.from_numpy(images).permute(0, 3, 1, 2), model.decode(ours.tokens))


def test_frozen_process_is_the_pipeline_with_committed_codes_kept(model, monkeypatch):
    """Freezing changes only that: the pipeline whose scheduler step keeps the known codes gives the
    frozen process's tokens."""
    from diffusers.schedulers.scheduling_vq_diffusion import VQDiffusionSchedulerOutput

    pipe = pipeline(model)
    original = pipe.scheduler.step

    def frozen_step(model_output, timestep, sample, generator=None, return_dict=True):
        prev = original(model_output, timestep, sample, generator=generator).prev_sample
        return VQDiffusionSchedulerOutput(prev_sample=torch.where(sample != model.mask_id, sample, prev))

    monkeypatch.setattr(pipe.scheduler, "step", frozen_step)
    seen = []
    pipe([PROMPTS[c] for c in classes()], guidance_scale=4.0, generator=torch.Generator().manual_seed(7),
         output_type="np", callback=lambda i, t, x: seen.append(x.clone()))
    state = vq_diffusion.start(model, classes(), {})
    state.freeze_committed = True
    knobs = {**vq_diffusion.KNOBS, "cfg_scale": 4.0}
    ours = vq_diffusion.advance(model, state, knobs, torch.Generator().manual_seed(7))
    assert torch.equal(seen[-1], ours.tokens) and sum(ours.trace["suppressed"]) > 0


def test_decode_gives_images_of_the_vq_shape_in_unit_range(model):
    images = model.decode(run(model).tokens)
    side = vq_diffusion.TINY_GRID * 2  # two VQ levels: one downsampling
    assert images.shape == (6, 3, side, side)
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()
    assert not torch.equal(images[0], images[1])

