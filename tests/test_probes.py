"""Probe designs: zero perturbations are identities, nested designs freeze what was committed,
noise before a cut is drawn per path and after it per continuation, and the measurements are reproducible."""
import numpy as np
import pytest
import torch

from ibdiv import diagnostics, probes, registry, train_prior

torch.set_num_threads(1)
K, N, C = 16, 16, 3
MEASURE = {"method": "chao_shen", "per_class": 8, "n_boot": 4, "n_null": 4, "n_boot_paths": 4,
           "n_null_paths": 4, "n_sets": 20, "margin_se": 1.0}


@pytest.fixture(scope="module")
def models():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, K, (240, N), generator=g)
    labels = torch.arange(240) % C
    tokens[:, 8:] = tokens[:, :8]  # some cross-token structure to learn
    cfg = {"steps": 200, "d_model": 32, "n_layers": 1, "n_heads": 2, "eval_every": 100}
    return {f: train_prior.train_prior(f, tokens, labels, tokens[:48], labels[:48], K=K, C=C, cfg=cfg, seed=0,
                                       progress=False)[0] for f in registry.CONFIGURABLE}


KNOBS = {"mim": {"steps": 6}, "diffusion": {"steps": 6}}  # fewer steps than the default; others: defaults
PERTURBABLE = [f for f in registry.CONFIGURABLE if registry.family(f).perturbable]


@pytest.mark.parametrize("family", PERTURBABLE)
@pytest.mark.parametrize("target", ["condition", "codebook"])
def test_zero_noise_cell_is_bit_identical_to_baseline(models, family, target):
    m, knobs = models[family], KNOBS.get(family, {})
    base = probes.sample_flat(m, C, 8, knobs, seed=11)
    zero = probes.sample_flat(m, C, 8, knobs, seed=11, noise=(target, 0.0), noise_seed=3)
    noisy = probes.sample_flat(m, C, 8, knobs, seed=11, noise=(target, 10.0), noise_seed=3)
    assert (zero["tokens"] == base["tokens"]).all()
    assert (noisy["tokens"] != base["tokens"]).any()


def test_zero_noise_reproduces_baseline_numbers_exactly(models):
    m = models["ar"]
    base = probes.sample_flat(m, C, 8, {}, seed=5)
    zero = probes.sample_flat(m, C, 8, {}, seed=5, noise=("codebook", 0.0), noise_seed=9)
    measure = lambda cache: diagnostics.flat_estimands(cache["tokens"], cache["labels"], K, MEASURE,  # noqa: E731
                                                      np.random.default_rng(0), cache["logprobs"])
    assert measure(base) == measure(zero)


def test_temperature_one_cell_of_a_sweep_is_the_baseline(models):
    m = models["mim"]
    probe = {"kind": "sweep", "knob": "temperature", "values": [0.5, 1.0]}
    out = probes.run_probe(m, probe, C, KNOBS["mim"], per_class=6, seed=2, noise_seed=1)
    base = probes.sample_flat(m, C, 6, KNOBS["mim"], seed=2)
    assert (out["tokens"][1] == base["tokens"]).all() and (out["tokens"][0] != base["tokens"]).any()


@pytest.mark.parametrize("family", registry.CONFIGURABLE)
def test_nested_design_freezes_committed_positions(models, family):
    out = probes.sample_nested(models[family], C, 5, 4, 0.25, KNOBS.get(family, {}), seed=1)
    tokens, frozen = out["tokens"], out["frozen"]
    assert tokens.shape == (C, 5, 4, N) and frozen.shape == (C, 5, N) and (tokens >= 0).all()
    assert out["fraction_committed"] >= 0.25 and frozen.sum(-1).min() >= 4
    for c in range(C):
        for p in range(5):
            assert (tokens[c, p][:, frozen[c, p]] == tokens[c, p, 0][frozen[c, p]]).all()
    # continuations differ somewhere after the cut (fresh randomness per continuation)
    assert any(len(np.unique(tokens[c, p][:, ~frozen[c, p]], axis=0)) > 1 for c in range(C) for p in range(5))


@pytest.mark.parametrize("where", ["before", "after"])
def test_nested_noise_is_per_path_before_the_cut_and_per_continuation_after(models, monkeypatch, where):
    """DESIGN §4: noise shared by a path's continuations would be a path variable by construction."""
    seen = {}
    for name in ("sample", "resume"):
        real = getattr(probes.sampling, name)
        monkeypatch.setattr(probes.sampling, name, lambda *a, _real=real, _name=name, **k: (
            seen.__setitem__(_name, k["perturbation"]), _real(*a, **k))[1])
    probes.sample_nested(models["ar"], C, 4, 3, 0.5, {}, seed=1, **{where: ("codebook", 1.0)})
    noise = seen["sample" if where == "before" else "resume"].code_noise
    other = seen["resume" if where == "before" else "sample"]
    assert other is None
    if where == "before":  # one draw per path (C * P), all different
        assert noise.shape[0] == C * 4 and not torch.equal(noise[0], noise[1])
    else:  # one draw per continuation (C * P * R): continuations of one path differ
        assert noise.shape[0] == C * 4 * 3 and not torch.equal(noise[0], noise[1])


def test_decoupling_cells_apply_noise_only_in_their_phase(models):
    m = models["ar"]
    probe = {"kind": "decoupling", "fraction": 0.5, "sigma": 4.0, "paths": 4, "continuations": 3}
    out = probes.run_probe(m, probe, C, {}, per_class=4, seed=7, noise_seed=2)
    none, before, after = out["tokens"]
    frozen = out["frozen"][0]
    assert out["tokens"].shape == (3, C, 4, 3, N)
    # noise after the cut leaves the prefix untouched; noise before the cut changes it
    assert (after[..., :8] == none[..., :8]).all()
    assert (before[..., :8] != none[..., :8]).any()
    assert frozen[:, :, :8].all() and not frozen[:, :, 8:].any()


@pytest.mark.parametrize("family", PERTURBABLE)
def test_enhancement_zero_cell_is_the_baseline_and_phases_are_separate(models, family):
    m, knobs = models[family], KNOBS.get(family, {})
    probe = {"kind": "enhancement", "fraction": 0.5, "condition_sigmas": [0.0, 10.0], "codebook_sigmas": [0.0, 10.0]}
    out = probes.run_probe(m, probe, C, knobs, per_class=6, seed=3, noise_seed=4)
    base = probes.sample_flat(m, C, 6, knobs, seed=3)
    assert probes.probe_cells(probe) == ["0.0/0.0", "0.0/10.0", "10.0/0.0", "10.0/10.0"]
    assert (out["tokens"][0] == base["tokens"]).all()  # cut + resume without noise = uninterrupted
    assert (out["tokens"][1] != base["tokens"]).any() and (out["tokens"][2] != base["tokens"]).any()


def test_noise_after_the_cut_leaves_the_prefix_alone(models):
    m = models["ar"]
    base = probes.sample_flat(m, C, 6, {}, seed=3)
    after = probes.sample_flat(m, C, 6, {}, seed=3, cut=0.5, noise_after=("codebook", 10.0), noise_seed=1)
    assert (after["tokens"][:, :8] == base["tokens"][:, :8]).all() and (after["tokens"][:, 8:] != base["tokens"][:, 8:]).any()


def test_probe_cells_and_unknown_kind():
    assert probes.probe_cells({"kind": "noise", "sigmas": [0, 0.5]}) == [0.0, 0.5]
    assert probes.probe_cells({"kind": "decoupling"})[1] == "condition_before_cut"
    with pytest.raises(ValueError, match="unknown probe kind"):
        probes.probe_cells({"kind": "nope"})


def test_independent_family_influence_does_not_clear_its_null(models):
    """No cross-token structure => the path cannot influence the rest (the null can fail)."""
    out = probes.sample_nested(models["independent"], C, 40, 10, 0.25, {}, seed=4)
    split = diagnostics.nested_estimands(out, K, {**MEASURE, "n_boot_paths": 20, "n_null_paths": 50, "n_sets": 200},
                                         np.random.default_rng(0))
    assert not split["influence_clears"]
    assert abs(split["d_influence"]["value"]) < 0.1


# --- cells taken from other caches of the run (issue 14) ---------------------------------------

def _as_cache(out: dict, **extra) -> dict:
    """What a job writes: tokens in a compact dtype, plus its own keys (cells, seed)."""
    return {**out, "tokens": out["tokens"].astype(np.uint8), **extra}


@pytest.mark.parametrize("family", PERTURBABLE)
def test_decoupling_none_cell_from_path_clamp_has_the_same_prefixes(models, family):
    """The path_clamp cell at the decoupling fraction holds exactly the prefixes the decoupling
    probe would draw (same seed, prefix drawn before the continuations); I2 and I3 are unchanged."""
    m, knobs = models[family], KNOBS.get(family, {})
    clamp = {"kind": "path_clamp", "fractions": [0.125, 0.25], "paths": 4, "continuations": 3}
    decoupling = {"kind": "decoupling", "fraction": 0.25, "sigma": 1.0, "paths": 4, "continuations": 2}
    plan = registry.reused_cells({"clamp": clamp, "dec": decoupling}, "dec", 6, 6)
    assert plan == {0: ("clamp", 1)}
    clamp_cache = _as_cache(probes.run_probe(m, clamp, C, knobs, per_class=6, seed=5, noise_seed=8),
                            cells=np.array(["0.125", "0.25"]))
    old = probes.run_probe(m, decoupling, C, knobs, per_class=6, seed=5, noise_seed=9)
    given = {0: probes.reused_cell(decoupling, clamp_cache, 1, seed=5)}
    new = probes.run_probe(m, decoupling, C, knobs, per_class=6, seed=5, noise_seed=9, given=given)
    assert sorted(new) == sorted(old)
    for key in old:
        assert new[key].dtype == old[key].dtype and new[key].shape == old[key].shape, key
    for key in ("frozen", "fraction_committed", "process_fraction"):
        assert np.array_equal(new[key], old[key]), key
    frozen = old["frozen"][0][:, :, None, :].repeat(2, axis=2)  # (C, P, R, N)
    assert np.array_equal(new["tokens"][0][frozen], old["tokens"][0][frozen])  # prefix tokens of every path
    assert np.array_equal(new["tokens"][1:], old["tokens"][1:])  # I2 and I3 cells: drawn as before
    # the continuations are path_clamp's first R: a valid draw, not the same random numbers
    assert np.array_equal(new["tokens"][0], clamp_cache["tokens"][1][:, :, :2])


@pytest.mark.parametrize("family", PERTURBABLE)
def test_enhancement_zero_cell_from_the_baseline_is_byte_identical(models, family):
    """Every array as without reuse, except AR's log-probs of the (0, 0) cell after the cut, which
    the resampled cell computed through a rebuilt KV cache (a float32 ulp, tokens unchanged)."""
    m, knobs = models[family], KNOBS.get(family, {})
    probe = {"kind": "enhancement", "fraction": 0.25, "condition_sigmas": [1.0, 0.0], "codebook_sigmas": [0.0, 1.0]}
    plan = registry.reused_cells({"enh": probe}, "enh", 6, 6)
    assert plan == {2: ("baseline", None)}  # cell "0.0/0.0", condition-major
    base = _as_cache(probes.sample_flat(m, C, 6, knobs, seed=3, batch_size=8), seed=np.int64(3))
    old = probes.run_probe(m, probe, C, knobs, per_class=6, seed=3, noise_seed=4, batch_size=8)
    given = {2: probes.reused_cell(probe, base, None, seed=3)}
    new = probes.run_probe(m, probe, C, knobs, per_class=6, seed=3, noise_seed=4, batch_size=8, given=given)
    assert sorted(new) == sorted(old)
    exact = ["tokens", "labels"] if family == "ar" else list(old)
    for key in old:
        assert new[key].dtype == old[key].dtype, key
        assert np.array_equal(new[key] if key in exact else np.delete(new[key], 2, 0),
                              old[key] if key in exact else np.delete(old[key], 2, 0), equal_nan=True), key
    if family == "ar":  # resuming rebuilds the KV cache from the prefix in one pass: float32 rounding
        np.testing.assert_allclose(new["logprobs"][2], old["logprobs"][2], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="seed 3"):
        probes.reused_cell(probe, base, None, seed=4)


def test_reuse_applies_only_where_the_draws_are_the_same():
    clamp = {"kind": "path_clamp", "fractions": [0.25], "paths": 4, "continuations": 3}
    dec = {"kind": "decoupling", "fraction": 0.25, "sigma": 1.0, "paths": 4, "continuations": 2}
    enh = {"kind": "enhancement", "fraction": 0.25, "condition_sigmas": [0.0, 1.0], "codebook_sigmas": [0.0]}
    assert registry.reused_cells({"enh": enh}, "enh", 6, 12) == {}  # a larger baseline: other draws
    assert registry.reused_cells({"enh": {**enh, "codebook_sigmas": [1.0]}}, "enh", 6, 6) == {}  # no (0, 0) cell
    assert registry.reused_cells({"dec": dec}, "dec", 6, 6) == {}  # no path_clamp probe
    for other in ({"paths": 5}, {"continuations": 1}, {"fractions": [0.5]}):
        assert registry.reused_cells({"clamp": {**clamp, **other}, "dec": dec}, "dec", 6, 6) == {}, other
    assert registry.reused_cells({"clamp": clamp, "dec": dec}, "dec", 6, 6) == {0: ("clamp", 0)}
