"""Oracle family: the `shapes` process behind the sampler interface, with a known path cut."""

import numpy as np
import pytest
import torch

from ibdiv.families import oracle
from ibdiv.core import registry
from ibdiv.data import shapes, tokenizer
from ibdiv.families.oracle import OraclePrior, layout_of
from ibdiv.families.sampling import Perturbation, resume, sample

torch.set_num_threads(1)

CFG = tokenizer.TokenizerConfig(image_size=16, grid=4, codebook_size=16, code_dim=8, channels=16)


@pytest.fixture(scope="module")
def model():
    images = shapes.generate(512, 16, 0)[0]
    vq, _ = tokenizer.train_tokenizer(images, images[:64], CFG, steps=60, batch_size=64, lr=5e-3,
                                      seed=0, eval_every=60, progress=False)
    codes = vq.encode(images[:256])
    assert len(np.unique(codes)) >= 4, "tiny tokenizer collapsed: the path/execution test is void"
    return OraclePrior(vq)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def one_class(n=32, c=1):
    return torch.full((n,), c, dtype=torch.long)


def test_attributes_and_registration(model):
    assert model.family == "oracle" and registry.implementation("oracle") is oracle
    assert model.vocab_size == 16 and model.seq_len == 16 and model.mask_id == 16
    assert model.n_classes == len(shapes.CLASS_NAMES) and model.image_size == 16
    assert oracle.KNOBS == {} and oracle.SCHEDULE_KNOBS == ()


def test_tokens_shapes_dtypes_and_nan_logprobs(model):
    classes = torch.arange(24) % model.n_classes
    result = sample(model, classes, {}, gen())
    assert result.tokens.shape == (24, 16) and result.tokens.dtype == torch.long
    assert result.committed.all() and result.state is None
    assert result.tokens.min() >= 0 and result.tokens.max() < model.vocab_size
    assert torch.isnan(result.logprobs).all() and result.logprobs.shape == (24, 16)
    assert result.committed_fraction == 1.0 and result.process_fraction == 1.0
    assert result.trace["committed"] == [0, 16]
    layouts = layout_of(result)
    assert layouts.shape == (24,) and layouts.dtype == np.int64
    assert layouts.min() >= 0 and layouts.max() < shapes.N_LAYOUTS
    assert model.training is False and model.vq.training is False


def test_same_seed_same_result_other_seed_other_result(model):
    classes = one_class(32)
    first, again, other = (sample(model, classes, {}, gen(s)) for s in (3, 3, 4))
    assert torch.equal(first.tokens, again.tokens)
    assert np.array_equal(layout_of(first), layout_of(again))
    assert not np.array_equal(layout_of(first), layout_of(other))


@pytest.mark.parametrize("fraction", [0.125, 0.25, 0.5, 0.99])
def test_any_fraction_cuts_after_the_path_stage(model, fraction):
    cut = sample(model, one_class(8), {}, gen(1), cut_fraction=fraction)
    assert cut.state is not None and not cut.committed.any() and (cut.tokens == -1).all()
    assert cut.committed_fraction == 0.0 and cut.process_fraction == 0.5
    assert layout_of(cut).shape == (8,) and np.array_equal(layout_of(cut), layout_of(cut.state))


def test_cut_fraction_zero_and_one(model):
    before = sample(model, one_class(4), {}, gen(1), cut_fraction=0.0)
    assert before.process_fraction == 0.0 and before.state is not None
    with pytest.raises(ValueError, match="path stage"):
        layout_of(before)
    whole = sample(model, one_class(4), {}, gen(1))
    assert torch.equal(resume(model, before.state, {}, gen(1)).tokens, whole.tokens)
    assert torch.equal(sample(model, one_class(4), {}, gen(1), cut_fraction=1.0).tokens, whole.tokens)


def test_stop_and_resume_with_same_generator_equals_uninterrupted(model):
    classes = torch.arange(16) % model.n_classes
    whole = sample(model, classes, {}, gen(7))
    g = gen(7)
    cut = sample(model, classes, {}, g, cut_fraction=0.25)
    snapshot = cut.state.tokens.clone()
    rest = resume(model, cut.state, {}, g)
    assert torch.equal(rest.tokens, whole.tokens)
    assert np.array_equal(layout_of(rest), layout_of(whole))
    assert rest.trace["committed"] == whole.trace["committed"] and rest.state is None
    assert torch.equal(cut.state.tokens, snapshot) and cut.state.step == 1  # state untouched


def test_resume_with_fresh_randomness_keeps_the_layouts(model):
    cut = sample(model, one_class(64), {}, gen(0), cut_fraction=0.25)
    first, second, same = (resume(model, cut.state, {}, gen(s)) for s in (1, 2, 1))
    for result in (first, second, same):
        assert np.array_equal(layout_of(result), layout_of(cut))
    assert torch.equal(first.tokens, same.tokens)
    assert not torch.equal(first.tokens, second.tokens)


def mean_hamming(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean fraction of differing positions between the rows of a and the rows of b (paired)."""
    return (a != b).float().mean().item()


def test_path_matters_more_than_execution(model):
    """Continuations of different paths differ more than continuations of one path."""
    P, R = 24, 6
    cut = sample(model, one_class(P, c=0), {}, gen(11), cut_fraction=0.25)
    runs = torch.stack([resume(model, cut.state, {}, gen(100 + r)).tokens
                        for r in range(R)])  # (R, P, N)
    within = np.mean([mean_hamming(runs[r], runs[s]) for r in range(R) for s in range(r + 1, R)])
    layouts = layout_of(cut)
    pairs = [(i, j) for i in range(P) for j in range(i + 1, P) if layouts[i] != layouts[j]]
    assert len(pairs) > 50
    between = np.mean([mean_hamming(runs[0, i], runs[1, j]) for i, j in pairs])
    assert between > within + 0.1, (between, within)


def test_knob_and_perturbation_raise(model):
    with pytest.raises(ValueError, match="unknown knob"):
        sample(model, one_class(2), {"temperature": 1.0}, gen())
    cut = sample(model, one_class(2), {}, gen(), cut_fraction=0.5)
    with pytest.raises(ValueError, match="unknown knob"):
        resume(model, cut.state, {"steps": 2}, gen())
    noise = Perturbation(cond_noise=torch.zeros(2, 8))
    with pytest.raises(ValueError, match="perturb"):
        sample(model, one_class(2), {}, gen(), perturbation=noise)
    with pytest.raises(ValueError, match="perturb"):
        resume(model, cut.state, {}, gen(), perturbation=noise)
    with pytest.raises(ValueError, match="perturb"):  # the family itself refuses too
        oracle.advance(model, oracle.start(model, one_class(2), {}), {}, gen(), noise)


def test_bad_classes_and_undefined_likelihood(model):
    with pytest.raises(ValueError, match="classes"):
        sample(model, torch.tensor([0, model.n_classes]), {}, gen())
    with pytest.raises(NotImplementedError, match="not defined"):
        oracle.heldout_bits_per_token(model, torch.zeros(2, 16, dtype=torch.long),
                                      torch.zeros(2, dtype=torch.long))


def test_tokens_are_the_shapes_process(model):
    """Seeds from the generator in a fixed order: layouts, then render noise; then vq.encode."""
    classes = torch.arange(10) % model.n_classes
    result = sample(model, classes, {}, gen(5))
    g = gen(5)
    seeds = [torch.randint(0, 2**63 - 1, (1,), generator=g).item() for _ in range(2)]
    layouts = shapes.sample_layouts(10, np.random.default_rng(seeds[0]))
    images = shapes.render(classes.numpy(), layouts, 16, np.random.default_rng(seeds[1]))
    assert np.array_equal(layout_of(result), layouts)
    assert np.array_equal(result.tokens.numpy(), model.vq.encode(images))


def test_ground_truth_renders_the_configured_executions_per_layout(model):
    """measure.oracle_executions has an effect: more renders per layout, less small-N bias
    (the plug-in entropy is biased down at N = 3, so D_exec rises with executions)."""
    from ibdiv.measure.diagnostics import oracle_ground_truth

    few = oracle_ground_truth(model.vq, executions=3, seed=0, method="plugin")
    many = oracle_ground_truth(model.vq, executions=40, seed=0, method="plugin")
    assert (few["executions_per_layout"], many["executions_per_layout"]) == (3, 40)
    assert few["d_exec"] < many["d_exec"]
    assert many == oracle_ground_truth(model.vq, executions=40, seed=0, method="plugin")  # seeded


def test_ground_truth_through_a_code_map(model):
    """The coarse truth counts the same renders through the map: the identity map gives the
    full-K split, and merging codes (plug-in) cannot raise D_exec or D_tot."""
    from ibdiv.measure import coarse
    from ibdiv.measure.diagnostics import oracle_ground_truth

    K = model.vq.cfg.codebook_size
    maps = {K: np.arange(K), 4: coarse.tokenizer_maps(model.vq, [4], seed=0)[4]}
    truth = oracle_ground_truth(model.vq, executions=20, seed=0, method="plugin", maps=maps)
    assert truth["coarse"][str(K)] == {q: truth[q] for q in ("d_exec", "d_tot", "d_path")}
    small = truth["coarse"]["4"]
    assert small["d_exec"] <= truth["d_exec"] + 1e-12 and small["d_tot"] <= truth["d_tot"] + 1e-12
    assert small["d_tot"] <= 2 + 1e-12 and small["d_path"] == pytest.approx(small["d_tot"] - small["d_exec"])


# --- the tunable oracle: zero-shot handles on the shapes process (DESIGN §5) -------------------

def tunable(wiring="decoupled"):
    from ibdiv.verdict.calibration import PatchTokenizer

    return oracle.TunableOracle(PatchTokenizer(), oracle.OracleKnobs(wiring=wiring))


def noises(model, n, sigma, seed=9):
    from ibdiv.families.sampling import codebook_noise, condition_noise

    return condition_noise(model, n, sigma, gen(seed)), codebook_noise(model, n, sigma, gen(seed + 1))


def test_plain_oracle_renders_as_before_with_a_unit_noise_scale():
    """shapes.render's execution knob at 1 is the dataset's own process, bit for bit."""
    classes, layouts = np.arange(8), np.arange(8) * 2
    a = shapes.render(classes, layouts, 16, np.random.default_rng(3))
    b = shapes.render(classes, layouts, 16, np.random.default_rng(3), noise_scale=1.0)
    c = shapes.render(classes, layouts, 16, np.random.default_rng(3), noise_scale=2.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("wiring", oracle.WIRINGS)
def test_tunable_oracle_keeps_the_sampler_contract(wiring):
    """sigma = 0 is bit-identical to no perturbation, and a cut + resume is the uninterrupted run."""
    model, classes = tunable(wiring), torch.arange(32) % 8
    assert registry.implementation("oracle_knobs") is oracle.TUNABLE and registry.family("oracle_knobs").perturbable
    base = sample(model, classes, {}, gen(1))
    zero = sample(model, classes, {}, gen(1), perturbation=Perturbation(*noises(model, 32, 0.0)))
    assert torch.equal(base.tokens, zero.tokens)
    g = gen(1)
    cut = sample(model, classes, {}, g, cut_fraction=0.25)
    assert torch.equal(resume(model, cut.state, {}, g).tokens, base.tokens)


def test_condition_noise_pulls_the_layouts_to_the_centre():
    model, classes = tunable(), torch.arange(2000) % 8
    cond, _ = noises(model, 2000, 0.5)
    clean = layout_of(sample(model, classes, {}, gen(2), cut_fraction=0.5))
    tilted = layout_of(sample(model, classes, {}, gen(2), cut_fraction=0.5, perturbation=Perturbation(cond_noise=cond)))
    distance = oracle._centre_distance(shapes.N_LAYOUTS)
    cx, cy, _ = shapes.layout_params(np.arange(shapes.N_LAYOUTS), 16)
    assert np.allclose(distance, np.hypot(cx - 7.5, cy - 7.5) / 3.0)  # anchor steps from the centre
    assert distance[tilted].mean() < distance[clean].mean() - 0.15
    assert abs(distance[clean].mean() - distance.mean()) < 0.05  # clean: uniform, as the dataset


@pytest.mark.parametrize("wiring", oracle.WIRINGS)
def test_codebook_noise_after_the_cut_acts_on_the_rendering_only_as_wired(wiring):
    """Ground truth by construction: the decoupled oracle renders every continuation with its path's
    layout (noisier); the entangled one misreads it at rate min(1, misread x sigma^2)."""
    model, classes = tunable(wiring), torch.arange(800) % 8
    cut = sample(model, classes, {}, gen(3), cut_fraction=0.5)
    _, code = noises(model, 800, 0.5)
    plain = resume(model, cut.state, {}, gen(4))
    noisy = resume(model, cut.state, {}, gen(4), perturbation=Perturbation(code_noise=code))
    path, rendered = layout_of(cut), np.asarray(noisy.trace["rendered"])
    assert np.array_equal(np.asarray(plain.trace["rendered"]), path)  # no noise: the path's layout
    kept = (rendered == path).mean()
    if wiring == "decoupled":
        assert kept == 1.0 and not torch.equal(plain.tokens, noisy.tokens)
    else:  # misread at 2 x 0.25 = 0.5, redrawn uniformly (1/18 land on the same layout)
        assert kept == pytest.approx(1 - 0.5 * (1 - 1 / shapes.N_LAYOUTS), abs=0.06)
