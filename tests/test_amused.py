"""The aMUSEd backend (ibdiv.backends.amused) on a tiny randomly initialised checkpoint.

The checkpoint is built with diffusers' own aMUSEd test sizes, saved with
``AmusedPipeline.save_pretrained`` and read back through the real loaders, so these tests cover
the loading code as well as every sampler hook (DESIGN §12).
"""
import json
import math

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from ibdiv.backends import amused  # noqa: E402
from ibdiv.families.backbone import CodeReads  # noqa: E402
from ibdiv.families.sampling import codebook_noise, condition_noise, sample  # noqa: E402

pytestmark = [pytest.mark.pretrained, pytest.mark.slow]

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


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 1 / 2])
def test_the_cut_is_the_first_step_with_the_fraction_committed(model, fraction):
    """(Cut + resume = uninterrupted: tests/test_backend_interface.py.) The cut is the first step
    with >= f N committed, and says so."""
    cut = sample(model, classes(), {"cfg_scale": 3.0}, torch.Generator().manual_seed(3), cut_fraction=fraction)
    counts = amused.committed_after_step(N, 12)
    step = next(i for i, c in enumerate(counts) if c >= fraction * N)
    assert cut.committed_fraction == counts[step] / N >= fraction
    assert step == 0 or counts[step - 1] / N < fraction
    assert cut.process_fraction == (step + 1) / 12


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

def test_noise_maps_onto_the_text_tensors_and_code_rows(model):
    noise = condition_noise(model, 6, 0.5, torch.Generator().manual_seed(0))
    dp, width = model.prompt_embeds.shape[1], model.encoder_hidden_states[0].numel()
    assert noise.shape == (6, dp + width) == (6, model.condition_width)
    # each part has its own tensor's per-element RMS (over the prompts; the hidden states' over the
    # prompts' own tokens: one per character here, from position 1, not start/end of text nor padding;
    # a prompt truncated to the L positions keeps its end of text)
    content = torch.zeros(model.encoder_hidden_states.shape[:2], dtype=torch.bool)
    for i, prompt in enumerate(PROMPTS):
        content[i, 1:min(1 + len(prompt.replace(" ", "")), content.shape[1] - 1)] = True
    assert torch.equal(model.prompt_content, content)
    rms = [x.pow(2).mean().sqrt().item() for x in (model.prompt_embeds, model.encoder_hidden_states[content])]
    assert not math.isclose(rms[1], model.encoder_hidden_states.pow(2).mean().sqrt().item(), rel_tol=1e-3)
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
    same = model.network(tokens, p, h, CodeReads(model.tok_emb.weight[:K].expand(6, K, 8)))
    assert torch.equal(clean, same)
    all_masked = torch.full((6, N), model.mask_id)
    assert torch.equal(model.network(all_masked, p, h), model.network(all_masked, p, h, CodeReads(model.tok_emb.weight[:K] + code)))


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

