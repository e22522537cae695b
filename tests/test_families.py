"""Every family and every sampling knob, proven on tiny models (d=32, 1 layer).

Each knob test compares against the same call without the knob (same generator seed), so an
ignored knob makes it fail.
"""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ibdiv.families import diffusion, mim
from ibdiv.measure import entropy
from ibdiv.core import registry
from ibdiv.core.config import load_config
from ibdiv.families.backbone import KVCache, TokenPrior, sampling_log_probs
from ibdiv.families.sampling import (
    Perturbation,
    after_cut,
    codebook_noise,
    condition_noise,
    resume,
    sample,
)
from prefix_reads import assert_prefix_read_clean
from ibdiv.families.training import (
    DEFAULT_CFG,
    heldout_bits_per_token,
    load_model,
    save_model,
    train_prior,
)

torch.set_num_threads(1)

K, N, C = 16, 16, 4
TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "batch_size": 64,
        "warmup": 10, "lr": 3e-3}
ALL = registry.CONFIGURABLE  # every family a config can train
LEARNED = tuple(f for f in ALL if registry.family(f).learned)


def synthetic_tokens(n: int, seed: int):
    """Class-dependent first half, second half a copy of the first: structure AR can learn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (n,), generator=g)
    base = (labels[:, None] * 4 + torch.arange(N // 2)) % K
    noisy = torch.where(torch.rand(n, N // 2, generator=g) < 0.5, base,
                        torch.randint(0, K, (n, N // 2), generator=g))
    return torch.cat([noisy, noisy], dim=1), labels


TRAIN = synthetic_tokens(1024, 0)
VAL = synthetic_tokens(256, 1)


def train(family, steps=60, seed=0, **extra):
    cfg = {**TINY, "steps": steps, "eval_every": steps, **extra}
    return train_prior(family, *TRAIN, *VAL, K=K, C=C, cfg=cfg, seed=seed, progress=False)


@pytest.fixture(scope="module")
def models():
    return {family: train(family)[0] for family in ALL}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def one_class(n=200, c=1):
    return torch.full((n,), c, dtype=torch.long)


def position_entropy(tokens: torch.Tensor) -> float:
    """Mean over positions of the plug-in entropy (bits) across samples."""
    return float(entropy.entropy_from_counts(entropy.counts_per_position(tokens.cpu().numpy(), K), "plugin").mean())


def support_size(tokens: torch.Tensor) -> float:
    return sum(len(column.unique()) for column in tokens.T) / tokens.shape[1]


# --- backbone ------------------------------------------------------------------------------

def test_parameter_counts_match_across_families_and_default_is_about_350k():
    counts = {f: sum(p.numel() for p in registry.implementation(f).PRIOR.build(64, 16, 8, DEFAULT_CFG).parameters())
              for f in LEARNED}
    assert max(counts.values()) <= 1.05 * min(counts.values())
    assert 300_000 < counts["ar"] < 400_000


def test_kv_cache_logits_equal_full_recomputation(models):
    model, x, y = models["ar"], VAL[0][:5], VAL[1][:5]
    full = model(x, y)
    cache = KVCache()
    stepwise = [model.forward_step(x[:, :0], y, cache)]
    stepwise += [model.forward_step(x[:, i : i + 1], y, cache) for i in range(N - 1)]
    torch.testing.assert_close(torch.stack(stepwise, 1), full, atol=1e-5, rtol=1e-5)
    prefilled = model.forward_step(x[:, :9], y, KVCache())
    torch.testing.assert_close(prefilled, full[:, 9], atol=1e-5, rtol=1e-5)


def test_causal_backbone_does_not_see_the_future(models):
    x, y = VAL[0][:4].clone(), VAL[1][:4]
    before = models["ar"](x, y)
    x[:, 10:] = (x[:, 10:] + 1) % K
    after = models["ar"](x, y)
    torch.testing.assert_close(before[:, :11], after[:, :11])
    assert not torch.allclose(before[:, 11:], after[:, 11:])


# --- knob validation and operating points ----------------------------------------------------

@pytest.mark.parametrize("family", ALL)
def test_unknown_knob_raises_naming_it(models, family):
    with pytest.raises(ValueError, match="bogus_knob"):
        sample(models[family], one_class(2), {"bogus_knob": 1}, gen())


def test_knob_valid_for_another_family_is_rejected(models):
    with pytest.raises(ValueError, match="choice_temperature"):
        sample(models["ar"], one_class(2), {"choice_temperature": 1.0}, gen())
    with pytest.raises(ValueError, match="top_k"):
        sample(models["diffusion"], one_class(2), {"top_k": 3}, gen())


@pytest.mark.parametrize("knobs", [{"temperature": 0}, {"top_p": 0}, {"top_k": K + 1},
                                   {"top_k": 2.5}, {"kv_cache": 1}])
def test_out_of_range_knob_raises(models, knobs):
    with pytest.raises(ValueError, match=next(iter(knobs))):
        sample(models["ar"], one_class(2), knobs, gen())


CONFIGS = [Path(__file__).resolve().parents[1] / "config.yaml",
           *sorted((Path(__file__).resolve().parents[1] / "config").glob("*.yaml"))]


@pytest.fixture(scope="module")
def backend_models(tmp_path_factory):
    """A tiny random model of each pretrained backend, conditioned on two conditions."""
    pytest.importorskip("diffusers")
    from ibdiv.backends import pretrained

    sizes = {"llamagen": {"grid": 4, "gpt": {"dim": 32, "n_layer": 1, "n_head": 2, "multiple_of": 32},
                          "vq": {"codebook_size": K, "codebook_embed_dim": 8, "ch": 32, "ch_mult": [1, 2],
                                 "num_res_blocks": 1, "z_channels": 32}}}
    out = {}
    for backend in registry.BACKENDS:
        module, folder = pretrained.backend_module(backend), tmp_path_factory.mktemp(backend)
        module.build_tiny(folder, 0, 4, sizes.get(backend, {}))
        conditions = [0, 3] if registry.family(backend).condition == "class_id" else ["a disc", "a square"]
        out[backend] = module.load_conditioned(folder, conditions)
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configured_operating_points_are_valid_knobs(models, backend_models, path):
    """Every operating point of every shipped config samples (unknown / bad knobs raise),
    the pretrained backends' on tiny random models of their architectures."""
    families = load_config(path)["families"]
    for family, points in families.items():
        model = backend_models[family] if family in backend_models else models[family]
        for name, knobs in points.items():
            knobs = {k: (min(v, K) if k == "top_k" else v) for k, v in knobs.items()}  # tiny K
            result = sample(model, one_class(4), knobs, gen())
            assert result.state is None and (result.tokens >= 0).all(), (path.name, family, name)


# --- determinism, stop and resume -----------------------------------------------------------

@pytest.mark.parametrize("family", ALL)
def test_same_seed_same_tokens_other_seed_other_tokens(models, family):
    classes = torch.arange(64) % C
    first = sample(models[family], classes, {}, gen(3))
    again = sample(models[family], classes, {}, gen(3))
    other = sample(models[family], classes, {}, gen(4))
    assert torch.equal(first.tokens, again.tokens)
    assert torch.equal(first.logprobs, again.logprobs)
    assert not torch.equal(first.tokens, other.tokens)


@pytest.mark.parametrize("family", ALL)
@pytest.mark.parametrize("fraction", [1 / 8, 1 / 4, 1 / 2])
def test_stop_and_resume_with_same_generator_equals_uninterrupted(models, family, fraction):
    classes = torch.arange(32) % C
    knobs = {"cfg_scale": 2.0} if "cfg_scale" in registry.family(family).knobs else {}
    whole = sample(models[family], classes, knobs, gen(7))
    g = gen(7)
    cut = sample(models[family], classes, knobs, g, cut_fraction=fraction)
    assert cut.state is not None
    assert cut.committed_fraction >= fraction
    assert 0 < cut.process_fraction < 1
    assert (cut.tokens[cut.committed] >= 0).all() and (cut.tokens[~cut.committed] == -1).all()
    rest = resume(models[family], cut.state, knobs, g)
    assert torch.equal(rest.tokens, whole.tokens)
    torch.testing.assert_close(rest.logprobs, whole.logprobs)
    assert rest.state is None and rest.committed_fraction == 1.0


@pytest.mark.parametrize("family", ALL)
def test_resume_with_fresh_randomness_keeps_the_path(models, family):
    cut = sample(models[family], one_class(64), {}, gen(0), cut_fraction=0.25)
    first = resume(models[family], cut.state, {}, gen(1))
    second = resume(models[family], cut.state, {}, gen(2))
    same = resume(models[family], cut.state, {}, gen(1))
    prefix = cut.committed
    assert torch.equal(first.tokens[prefix], cut.tokens[prefix])
    assert torch.equal(second.tokens[prefix], cut.tokens[prefix])
    assert not torch.equal(first.tokens, second.tokens)
    assert torch.equal(first.tokens, same.tokens)  # resume left the state untouched


def test_cut_fractions_follow_each_family_schedule(models):
    ar_cut = sample(models["ar"], one_class(4), {}, gen(), cut_fraction=0.3)
    assert ar_cut.committed_fraction == 5 / 16  # ceil(0.3 * 16) tokens
    mim_cut = sample(models["mim"], one_class(4), {"steps": 12}, gen(), cut_fraction=0.25)
    assert mim_cut.committed_fraction == 0.25 and mim_cut.process_fraction == 4 / 12
    mim8 = sample(models["mim"], one_class(4), {"steps": 8}, gen(), cut_fraction=0.25)
    assert mim8.committed_fraction > 0.25  # T = 8 cannot hit 4 of 16 exactly
    diff_cut = sample(models["diffusion"], one_class(4), {"steps": 32}, gen(), cut_fraction=0.25)
    assert diff_cut.committed_fraction == 0.25 and diff_cut.process_fraction == 7 / 32  # round half up


def test_resume_must_keep_the_step_grid(models):
    cut = sample(models["mim"], one_class(4), {"steps": 12}, gen(), cut_fraction=0.5)
    with pytest.raises(ValueError, match="steps"):
        resume(models["mim"], cut.state, {"steps": 16}, gen())


# --- AR knobs -------------------------------------------------------------------------------

def test_ar_top_k_1_is_deterministic_with_zero_logprobs(models):
    result = sample(models["ar"], one_class(100), {"top_k": 1}, gen())
    assert position_entropy(result.tokens) == 0.0
    assert torch.all(result.logprobs == 0)
    assert position_entropy(sample(models["ar"], one_class(100), {}, gen()).tokens) > 0.5


@pytest.mark.parametrize("family", ["ar", "independent"])
def test_near_zero_temperature_is_deterministic(models, family):
    result = sample(models[family], one_class(100), {"temperature": 1e-4}, gen())
    assert position_entropy(result.tokens) == 0.0


@pytest.mark.parametrize("family", ALL)
def test_higher_temperature_raises_entropy(models, family):
    cold = sample(models[family], one_class(300), {"temperature": 0.5}, gen())
    hot = sample(models[family], one_class(300), {"temperature": 2.0}, gen())
    assert position_entropy(hot.tokens) > position_entropy(cold.tokens) + 0.2


@pytest.mark.parametrize("family", [f for f in ALL if "top_p" in registry.family(f).knobs])
def test_small_top_p_shrinks_support(models, family):
    full = sample(models[family], one_class(300), {}, gen())
    nucleus = sample(models[family], one_class(300), {"top_p": 0.3}, gen())
    assert support_size(nucleus.tokens) < support_size(full.tokens) - 2


def test_independent_top_k_limits_support(models):
    result = sample(models["independent"], one_class(300), {"top_k": 3}, gen())
    assert max(len(column.unique()) for column in result.tokens.T) <= 3


def test_ar_top_k_draws_only_among_the_k_most_likely(models):
    model, classes = models["ar"], one_class(300)
    result = sample(model, classes, {"top_k": 3}, gen())
    with torch.no_grad():
        top3 = model(result.tokens, classes).topk(3, dim=-1).indices
    assert (top3 == result.tokens[..., None]).any(-1).all()
    unrestricted = sample(model, classes, {}, gen()).tokens
    with torch.no_grad():
        top3 = model(unrestricted, classes).topk(3, dim=-1).indices
    assert not (top3 == unrestricted[..., None]).any(-1).all()


@pytest.mark.parametrize("family", [f for f in ALL if "cfg_scale" in registry.family(f).knobs])
def test_cfg_1_is_bit_identical_and_other_scales_change_tokens(models, family):
    classes = torch.arange(64) % C
    plain = sample(models[family], classes, {}, gen())
    unit = sample(models[family], classes, {"cfg_scale": 1.0}, gen())
    guided = sample(models[family], classes, {"cfg_scale": 3.0}, gen())
    assert torch.equal(plain.tokens, unit.tokens) and torch.equal(plain.logprobs, unit.logprobs)
    assert not torch.equal(plain.tokens, guided.tokens)


def test_ar_kv_cache_gives_the_same_tokens(models):
    classes = torch.arange(64) % C
    knobs = {"cfg_scale": 1.5, "top_p": 0.9}
    cached = sample(models["ar"], classes, {**knobs, "kv_cache": True}, gen())
    recomputed = sample(models["ar"], classes, {**knobs, "kv_cache": False}, gen())
    assert torch.equal(cached.tokens, recomputed.tokens)
    torch.testing.assert_close(cached.logprobs, recomputed.logprobs)


def test_ar_logprobs_are_the_post_filter_sampling_distribution(models):
    model, classes = models["ar"], torch.arange(32) % C
    knobs = {"temperature": 0.7, "top_k": 6, "top_p": 0.8, "cfg_scale": 2.0}
    result = sample(model, classes, knobs, gen())
    with torch.no_grad():
        cond = model(result.tokens, classes)
        uncond = model(result.tokens, torch.full_like(classes, C))
    log_probs = sampling_log_probs(uncond + 2.0 * (cond - uncond), 0.7, 6, 0.8)
    expected = log_probs.gather(-1, result.tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(result.logprobs, expected, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(result.logprobs).all()


# --- MIM knobs ------------------------------------------------------------------------------

def test_mim_choice_temperature_changes_results(models):
    classes = torch.arange(64) % C
    default = sample(models["mim"], classes, {}, gen())
    greedy_order = sample(models["mim"], classes, {"choice_temperature": 0.0}, gen())
    assert not torch.equal(default.tokens, greedy_order.tokens)


def test_mim_zero_choice_temperature_and_cold_tokens_is_deterministic(models):
    result = sample(models["mim"], one_class(100), {"choice_temperature": 0.0, "temperature": 1e-4}, gen())
    assert position_entropy(result.tokens) == 0.0


def test_mim_steps_and_schedule_set_the_committed_schedule(models):
    trace = lambda knobs: sample(models["mim"], one_class(4), knobs, gen()).trace["committed"]
    assert trace({"steps": 12}) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16]
    assert trace({"steps": 8}) == mim.committed_after_step(N, 8, "cosine")
    assert len(trace({"steps": 8})) == 8
    assert trace({"steps": 8, "schedule": "linear"}) != trace({"steps": 8})


def test_mim_never_remasks_committed_tokens(models):
    # the same seed replays the same process, so cuts at growing fractions are snapshots of it
    cuts = [sample(models["mim"], one_class(32), {}, gen(5), cut_fraction=f) for f in (1 / 8, 1 / 4, 1 / 2)]
    final = sample(models["mim"], one_class(32), {}, gen(5))
    for earlier, later in zip(cuts, cuts[1:]):
        assert (later.committed | ~earlier.committed).all()
    for cut in cuts:
        assert torch.equal(final.tokens[cut.committed], cut.tokens[cut.committed])


# --- diffusion knobs ------------------------------------------------------------------------

def test_diffusion_unmasking_order_is_random(models):
    result = sample(models["diffusion"], one_class(200), {"steps": 16}, gen(), cut_fraction=1 / 16)
    first_positions = result.committed.float().argmax(1)
    assert len(first_positions.unique()) >= 12  # uniform over 16 positions


def test_diffusion_steps_set_the_committed_schedule(models):
    trace = lambda steps: sample(models["diffusion"], one_class(4), {"steps": steps}, gen()).trace["committed"]
    assert trace(4) == [4, 8, 12, 16]
    assert trace(16) == list(range(1, 17))


def test_diffusion_mask_and_replace_variant_revises_tokens():
    model = train("diffusion", steps=40, replace_fraction=0.3)[0]
    classes = torch.arange(64) % C
    plain = sample(model, classes, {}, gen())
    replacing = sample(model, classes, {"mask_and_replace": True}, gen())
    assert sum(replacing.trace["revised"]) > 0 and sum(plain.trace["revised"]) == 0
    assert not torch.equal(plain.tokens, replacing.tokens)


def test_mask_and_replace_needs_a_model_trained_for_it(models):
    with pytest.raises(ValueError, match="replace_fraction"):
        sample(models["diffusion"], one_class(2), {"mask_and_replace": True}, gen())


@pytest.fixture(scope="module")
def replacing_model():
    return train("diffusion", steps=40, replace_fraction=0.3)[0]


def test_mask_and_replace_continuations_keep_the_prefix_when_frozen(replacing_model):
    """A nested design's continuation (resume with freeze_committed) revises no code committed at
    the cut and counts the revisions it kept out; the free continuation (the published process)
    revises some prefix codes."""
    knobs, classes = {"mask_and_replace": True, "steps": 16}, torch.arange(64) % C
    cut = sample(replacing_model, classes, knobs, gen(2), cut_fraction=0.5)
    frozen = resume(replacing_model, cut.state, knobs, gen(9), freeze_committed=True)
    free = resume(replacing_model, cut.state, knobs, gen(9))
    prefix, done = cut.committed, len(cut.trace["revised"])
    assert torch.equal(frozen.tokens[prefix], cut.tokens[prefix])
    assert torch.equal(frozen.logprobs[prefix], cut.logprobs[prefix])
    assert sum(frozen.trace["revised"][done:]) == 0 and sum(frozen.trace["suppressed"][done:]) > 0
    assert not torch.equal(free.tokens[prefix], cut.tokens[prefix]) and sum(free.trace["revised"][done:]) > 0
    assert sum(free.trace["suppressed"]) == 0 and sum(cut.trace["suppressed"]) == 0


def test_absorbing_continuations_are_unchanged_by_freezing(models):
    """Without mask_and_replace nothing revises a code: freezing is a no-op, bit for bit, and the
    trace has no suppressed count (a nested cache then records none)."""
    classes = torch.arange(16) % C
    cut = sample(models["diffusion"], classes, {}, gen(2), cut_fraction=0.5)
    frozen = resume(models["diffusion"], cut.state, {}, gen(9), freeze_committed=True)
    free = resume(models["diffusion"], cut.state, {}, gen(9))
    assert torch.equal(frozen.tokens, free.tokens) and torch.equal(frozen.logprobs, free.logprobs)
    assert "suppressed" not in frozen.trace


def test_nested_mask_and_replace_records_the_suppressed_replacements(replacing_model, models):
    from ibdiv.measure.probes import sample_nested

    kw = dict(paths=3, continuations=3, cut_fraction=0.5, seed=0)
    out = sample_nested(replacing_model, C, knobs={"mask_and_replace": True}, **kw)
    assert out["suppressed_replacements"] > 0
    frozen = out["frozen"][:, :, None, :].repeat(3, axis=2)
    assert (out["tokens"] == out["tokens"][:, :, :1])[frozen].all()  # every continuation keeps its path's prefix
    assert "suppressed_replacements" not in sample_nested(models["diffusion"], C, knobs={}, **kw)


# --- perturbations --------------------------------------------------------------------------

@pytest.mark.parametrize("family", LEARNED)
def test_zero_sigma_perturbation_is_bit_identical(models, family):
    model, classes = models[family], torch.arange(64) % C
    zero = Perturbation(condition_noise(model, 64, 0.0, gen(9)), codebook_noise(model, 64, 0.0, gen(9)))
    for knobs in ({}, {"cfg_scale": 2.0}):
        plain = sample(model, classes, knobs, gen())
        perturbed = sample(model, classes, knobs, gen(), perturbation=zero)
        assert torch.equal(plain.tokens, perturbed.tokens)
        assert torch.equal(plain.logprobs, perturbed.logprobs)


@pytest.mark.parametrize("family", LEARNED)
@pytest.mark.parametrize("kind", ["cond", "code"])
def test_positive_sigma_perturbation_changes_tokens(models, family, kind):
    model, classes = models[family], torch.arange(64) % C
    if kind == "cond":
        perturbation = Perturbation(cond_noise=condition_noise(model, 64, 1.0, gen(9)))
    else:
        perturbation = Perturbation(code_noise=codebook_noise(model, 64, 1.0, gen(9)))
    plain = sample(model, classes, {}, gen())
    perturbed = sample(model, classes, {}, gen(), perturbation=perturbation)
    assert not torch.equal(plain.tokens, perturbed.tokens)


@pytest.mark.parametrize("family", LEARNED)
def test_perturbation_before_or_after_the_cut(models, family):
    model, classes = models[family], torch.arange(64) % C
    noise = Perturbation(code_noise=codebook_noise(model, 64, 1.0, gen(9)))
    g_plain, g_before, g_after = gen(1), gen(1), gen(1)
    plain_cut = sample(model, classes, {}, g_plain, cut_fraction=0.5)
    plain = resume(model, plain_cut.state, {}, g_plain)
    before_cut = sample(model, classes, {}, g_before, cut_fraction=0.5, perturbation=noise)
    assert not torch.equal(before_cut.tokens, plain_cut.tokens)
    after_cut = sample(model, classes, {}, g_after, cut_fraction=0.5)
    after = resume(model, after_cut.state, {}, g_after, perturbation=noise)
    assert torch.equal(after_cut.tokens, plain_cut.tokens)  # the path is untouched
    assert not torch.equal(after.tokens, plain.tokens)


def test_noise_helpers_use_per_element_rms(models):
    model = models["ar"]
    cond = condition_noise(model, 4000, 0.5, gen())
    code = codebook_noise(model, 200, 2.0, gen())
    class_rms = model.cls_emb.weight[:C].pow(2).mean().sqrt().item()
    code_rms = model.tok_emb.weight[:K].pow(2).mean().sqrt().item()
    assert cond.pow(2).mean().sqrt().item() == pytest.approx(0.5 * class_rms, rel=0.02)
    assert code.pow(2).mean().sqrt().item() == pytest.approx(2.0 * code_rms, rel=0.02)


def test_perturbation_shape_and_family_are_checked(models):
    with pytest.raises(ValueError, match="cond_noise"):
        sample(models["ar"], one_class(3), {}, gen(), perturbation=Perturbation(torch.zeros(2, 32)))
    with pytest.raises(ValueError, match="independent"):
        sample(models["independent"], one_class(3), {}, gen(), perturbation=Perturbation())


# --- training, likelihood, persistence ------------------------------------------------------

def test_training_lowers_heldout_bits_below_uniform(models):
    for family in ALL:
        bits = heldout_bits_per_token(models[family], *VAL, gen())
        assert bits < math.log2(K) - 0.3, family


def test_ar_learns_cross_token_structure_the_independent_table_cannot():
    ar_model, curve, _ = train("ar", steps=250)
    independent_bits = heldout_bits_per_token(train("independent")[0], *VAL, gen())
    assert curve[-1]["heldout_bits"] < independent_bits - 0.3


def test_independent_bits_are_exact(models):
    model, (x, y) = models["independent"], VAL
    counts = torch.zeros(C, N, K)
    for tokens, label in zip(*TRAIN):
        counts[label, torch.arange(N), tokens] += 1
    p = (counts + DEFAULT_CFG["alpha"]) / (counts + DEFAULT_CFG["alpha"]).sum(-1, keepdim=True)
    expected = -p[y[:, None], torch.arange(N), x].log2().mean().item()
    assert heldout_bits_per_token(model, x, y, None) == pytest.approx(expected, rel=1e-5)


def test_monte_carlo_elbo_agrees_with_the_exact_sum_over_mask_sizes(models):
    """The scalable score (a few stratified mask sizes per sequence) estimates the same bound as the
    exact sum over all N sizes: on the trained tiny diffusion prior their per-sequence difference
    averages to within 4 standard errors of 0 and 3% of the bound; the draws do not depend on the
    network-call chunking (same bits up to float summation order)."""
    from ibdiv.families.masking import nelbo_per_sequence

    model, (x, y) = models["diffusion"], VAL
    exact = nelbo_per_sequence(model, x, y, gen(1))
    mc = nelbo_per_sequence(model, x, y, gen(2), levels=4)
    diff = mc - exact
    se = diff.std() / math.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se and abs(diff.mean()) < 0.03 * exact.mean()
    assert not torch.equal(mc, exact)  # an estimate, not the same computation
    chunked = [mim.heldout_bits_per_token(model, x, y, gen(3), levels=4, rows_per_call=rows) for rows in (7, 64, 4096)]
    assert chunked[0] == pytest.approx(chunked[1], rel=1e-6) == pytest.approx(chunked[2], rel=1e-6)
    # levels >= N is the exact form itself
    assert mim.heldout_bits_per_token(model, x, y, gen(4), levels=N) == mim.heldout_bits_per_token(model, x, y, gen(4))


def test_same_seed_gives_identical_weights_and_keeps_the_best_checkpoint():
    first, curve, bits = train("mim", steps=30, seed=5, eval_every=10)
    second, _, _ = train("mim", steps=30, seed=5, eval_every=10)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    best = min(point["heldout_bits"] for point in curve)
    # selection set = the whole (small) held-out split here, so the reported score is the best one
    assert heldout_bits_per_token(first, *VAL, gen(6)) == pytest.approx(best, abs=1e-6) == bits
    assert len(curve) == 3


def test_selection_subset_scores_fewer_sequences_but_reports_the_whole_split():
    model, curve, bits = train("ar", steps=20, eval_every=10, eval_sequences=32)
    assert heldout_bits_per_token(model, *VAL, None) == pytest.approx(bits, abs=1e-6)
    assert all(point["heldout_bits"] != pytest.approx(bits, abs=1e-4) for point in curve)


def test_unknown_training_key_raises():
    with pytest.raises(ValueError, match="learning_rate"):
        train("ar", steps=2, learning_rate=1e-3)


@pytest.mark.parametrize("family", ALL)
def test_save_and_load_roundtrip(models, family, tmp_path):
    path = tmp_path / f"{family}.pt"
    save_model(path, models[family])
    loaded = load_model(path)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    classes = torch.arange(16) % C
    assert torch.equal(sample(loaded, classes, {}, gen()).tokens,
                       sample(models[family], classes, {}, gen()).tokens)


def test_diffusion_roundtrip_keeps_replace_fraction(tmp_path):
    model = diffusion.DiffusionPrior.build(K, N, C, {**DEFAULT_CFG, "replace_fraction": 0.25})
    save_model(tmp_path / "m.pt", model)
    assert load_model(tmp_path / "m.pt").replace_fraction == 0.25


@pytest.mark.parametrize("family, knobs", [("ar", {}), ("ar", {"kv_cache": False}), ("ar", {"cfg_scale": 2.0}),
                                           ("mim", {}), ("mim", {"cfg_scale": 2.0}), ("diffusion", {})])
def test_codebook_noise_after_the_cut_leaves_the_prefix_reads_alone(models, family, knobs):
    assert_prefix_read_clean(models[family], torch.arange(16) % C, knobs, 0.25)


def test_prefix_reads_alone_with_mask_and_replace():
    model = train("diffusion", steps=20, replace_fraction=0.3)[0]
    assert_prefix_read_clean(model, torch.arange(16) % C, {"mask_and_replace": True}, 0.5)


@pytest.mark.parametrize("family", LEARNED)
def test_after_cut_noise_keeps_the_resume_contract(models, family):
    """sample(cut) + resume with the same after-cut perturbation (its path included) equals the
    uninterrupted run with it: the reads depend only on the tokens and the path."""
    model, classes = models[family], torch.arange(16) % C
    cut = sample(model, classes, {}, gen(2), cut_fraction=0.25)
    noise = after_cut(Perturbation(code_noise=codebook_noise(model, 16, 1.0, gen(9))), cut.state)
    whole = sample(model, classes, {}, gen(4), perturbation=noise)
    g = gen(4)
    part = sample(model, classes, {}, g, perturbation=noise, cut_fraction=0.25)
    assert torch.equal(resume(model, part.state, {}, g, perturbation=noise).tokens, whole.tokens)


# --- sampling shortcuts (issue 26): the same samples as the plain full pass ------------------

def plain_copy(model):
    """A copy of `model` whose forward is the plain full pass, every position of every sample
    (logits gathered at `positions`): the reference the samplers' shortcuts must reproduce."""
    base = type(model)

    class Plain(base):
        forward_step = TokenPrior.forward_step  # AR: every sample's prefix fed

        def forward(self, tokens, classes, *, cond_override=None, code_table=None, positions=None):
            cond = self.condition(classes, cond_override)[:, None]
            x = torch.cat([cond, self.embed_tokens(tokens, code_table)], dim=1)
            logits = self._run(x, start=0)[:, 1:]
            return logits if positions is None else logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))

    plain = copy.deepcopy(model)
    plain.__class__ = Plain
    return plain


@pytest.mark.parametrize("family", ["ar", "mim", "diffusion"])
@pytest.mark.parametrize("knobs", [{}, {"cfg_scale": 2.0}])
def test_sampling_shortcuts_give_the_plain_passes_samples(models, family, knobs):
    """Flat (codebook noise, guidance) and nested (codebook noise after the cut) designs: the
    query-subset and repeated-row passes (AR: the shared prefix's keys and values) give the tokens
    and log-probs of full passes. Bit for bit on the machine that wrote them (2026-12-07); another
    CPU's kernels may round a pass of other shape differently, so a draw may flip where two
    perturbed logits tie: the test allows 1 % of tokens and 1e-4 nat (docs/testing.md)."""
    from ibdiv.measure import probes

    model, plain = models[family], plain_copy(models[family])
    for m in (model, plain):
        assert not m.training
    flat = [probes.sample_flat(m, C, 40, knobs, seed=3, noise=("codebook", 0.5), noise_seed=4) for m in (model, plain)]
    same = flat[0]["tokens"] == flat[1]["tokens"]
    assert same.mean() >= 0.99
    np.testing.assert_allclose(flat[0]["logprobs"][same], flat[1]["logprobs"][same], atol=1e-4)
    nested = [probes.sample_nested(m, C, 5, 6, 0.25, knobs, seed=3, after=("codebook", 0.5), noise_seed=4)
              for m in (model, plain)]
    assert (nested[0]["tokens"] == nested[1]["tokens"]).mean() >= 0.99
    assert (nested[0]["frozen"] == nested[1]["frozen"]).mean() >= 0.99


def test_query_subset_and_repeated_rows_match_the_full_pass_at_default_size():
    """The default architecture (3 blocks, 4 heads of 24): logits of any number of query positions,
    and of repeated samples computed once, equal the full pass's bit for bit (torch's attention
    kernel rounds 1-3 query rows differently: backbone.MIN_QUERY_ROWS pads them). Bit for bit on
    the machine that wrote them; across CPUs promised to float32 rounding (1e-5)."""
    model = registry.implementation("mim").PRIOR.build(64, 16, 8, {**DEFAULT_CFG, "d_model": 96, "n_layers": 3,
                                                                    "n_heads": 4}).eval()
    g = gen(5)
    tokens, classes = torch.randint(0, 65, (64, 16), generator=g), torch.randint(0, 8, (64,), generator=g)
    with torch.no_grad():
        full = model(tokens, classes)
        for r in (1, 2, 3, 4, 7, 15):
            positions = torch.stack([torch.randperm(16, generator=g)[:r] for _ in range(64)])
            sub = model(tokens, classes, positions=positions)
            torch.testing.assert_close(sub, full.gather(1, positions[..., None].expand(-1, -1, 64)), atol=1e-5,
                                       rtol=1e-5, msg=lambda m: f"{r} query rows: {m}")
        repeated = model(tokens.repeat_interleave(8, 0), classes.repeat_interleave(8, 0))
    torch.testing.assert_close(repeated, full.repeat_interleave(8, 0), atol=1e-5, rtol=1e-5)


def test_draw_at_consumes_and_uses_the_uniforms_of_a_whole_grid_draw():
    from ibdiv.families.backbone import draw, draw_at, row_positions

    log_probs = torch.randn(6, 16, 10, generator=gen(1)).log_softmax(-1)
    where = torch.rand(6, 16, generator=gen(2)).argsort(1) < 5  # 5 positions per row
    positions = row_positions(where)
    g_full, g_at = gen(3), gen(3)
    tokens, lp = draw(log_probs, g_full)
    sub = log_probs.gather(1, positions[..., None].expand(-1, -1, 10))
    tokens_at, lp_at = draw_at(sub, positions, 16, g_at)
    assert torch.equal(tokens_at[where], tokens[where]) and torch.equal(lp_at[where], lp[where])
    assert (tokens_at[~where] == -1).all() and lp_at[~where].isnan().all()
    assert torch.equal(g_full.get_state(), g_at.get_state())  # the same randomness consumed
    assert row_positions(torch.ones(2, 4, dtype=torch.bool)) is None  # all positions: the plain pass
    assert row_positions(torch.tensor([[True, False], [True, True]])) is None  # unequal counts


def test_repeated_rows_finds_runs_bit_for_bit():
    from ibdiv.families.backbone import repeated_rows

    x = torch.tensor([[[1.0]], [[1.0]], [[2.0]], [[2.0]], [[2.0]], [[0.0]], [[-0.0]], [[0.0]]]).expand(-1, 64, -1)
    first, counts = repeated_rows(x, most=1.0)
    assert first.tolist() == [0, 2, 5, 6, 7] and counts.tolist() == [2, 3, 1, 1, 1]  # -0.0 is its own run
    assert repeated_rows(x) is None  # 5 runs of 8 samples: above half, the plain pass
    assert repeated_rows(x[:1]) is None
    assert repeated_rows(x[:, :8], most=1.0) is None  # 5 runs x 8 positions: too small a pass (MIN_PASS_ROWS)
