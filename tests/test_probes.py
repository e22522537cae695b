"""Probe designs: zero perturbations are identities, nested designs freeze what was committed,
noise before a cut is drawn per path and after it per continuation, and the measurements are reproducible."""
import numpy as np
import pytest
import torch

from ibdiv.measure import diagnostics, probes
from ibdiv.core import registry
from ibdiv.families import training

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
    return {f: training.train_prior(f, tokens, labels, tokens[:48], labels[:48], K=K, C=C, cfg=cfg, seed=0,
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
    assert out["committed_fraction"] >= 0.25 and frozen.sum(-1).min() >= 4
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
    probe = {"kind": "decoupling", "cut_fraction": 0.5, "sigma": 4.0, "paths": 4, "continuations": 3}
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
    probe = {"kind": "enhancement", "cut_fraction": 0.5, "condition_sigmas": [0.0, 10.0], "codebook_sigmas": [0.0, 10.0]}
    out = probes.run_probe(m, probe, C, knobs, per_class=6, seed=3, noise_seed=4)
    base = probes.sample_flat(m, C, 6, knobs, seed=3)
    assert probes.probe_cells(probe) == ["0.0/0.0", "0.0/10.0", "10.0/0.0", "10.0/10.0"]
    assert (out["tokens"][0] == base["tokens"]).all()  # cut + resume without noise = uninterrupted
    assert (out["tokens"][1] != base["tokens"]).any() and (out["tokens"][2] != base["tokens"]).any()


def test_noise_after_the_cut_leaves_the_prefix_alone(models):
    m = models["ar"]
    base = probes.sample_flat(m, C, 6, {}, seed=3)
    after = probes.sample_flat(m, C, 6, {}, seed=3, cut_fraction=0.5, noise_after=("codebook", 10.0), noise_seed=1)
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


# --- the enhancement's (0, 0) cell is copied from the baseline (issue 14) -------------------------

@pytest.mark.parametrize("family", PERTURBABLE)
def test_enhancement_zero_cell_from_the_baseline_is_byte_identical(models, family):
    """Every array as without the copy, except AR's log-probs of the (0, 0) cell after the cut,
    which the resampled cell computed through a rebuilt KV cache (a float32 ulp, tokens unchanged)."""
    m, knobs = models[family], KNOBS.get(family, {})
    probe = {"kind": "enhancement", "cut_fraction": 0.25, "condition_sigmas": [1.0, 0.0], "codebook_sigmas": [0.0, 1.0]}
    assert registry.baseline_cell(probe, 6, 6) == 2  # cell "0.0/0.0", condition-major
    base = probes.sample_flat(m, C, 6, knobs, seed=3, batch_size=8)
    base = {**base, "tokens": base["tokens"].astype(np.uint8), "seed": np.int64(3)}  # as sample_baseline writes it
    old = probes.run_probe(m, probe, C, knobs, per_class=6, seed=3, noise_seed=4, batch_size=8)
    given = {2: probes.baseline_as_cell(base, seed=3)}
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
        probes.baseline_as_cell(base, seed=4)


def test_baseline_cache_is_the_flat_draw_as_its_file_holds_it(models, tmp_path):
    """probes.baseline_cache (sample_baseline's and a grouped run's one way to draw a baseline): the
    flat draw at the run's seed, tokens in the compact dtype, the seed recorded; through its file it
    is the cell a probe copies (baseline_as_cell)."""
    from ibdiv.core.io import load_npz, save_npz

    m = models["mim"]
    cache, replaced = probes.baseline_cache(m, C, per_class=6, knobs=KNOBS["mim"], seed=3, batch_size=8,
                                            token_dtype=np.uint8)
    flat = probes.sample_flat(m, C, 6, KNOBS["mim"], seed=3, batch_size=8)
    assert list(cache) == ["tokens", "labels", "logprobs", "seed"] and replaced is None  # the file's order
    assert cache["tokens"].dtype == np.uint8 and np.array_equal(cache["tokens"], flat["tokens"])
    assert np.array_equal(cache["logprobs"], flat["logprobs"]) and int(cache["seed"]) == 3
    save_npz(tmp_path / "baseline.npz", **cache)
    cell = probes.baseline_as_cell(load_npz(tmp_path / "baseline.npz"), seed=3)
    assert all(np.array_equal(cell[key], flat[key]) and cell[key].dtype == flat[key].dtype for key in cell)


def test_only_a_cell_that_is_the_baseline_is_copied():
    enh = {"kind": "enhancement", "cut_fraction": 0.25, "condition_sigmas": [0.0, 1.0], "codebook_sigmas": [0.5, 0.0]}
    assert registry.baseline_cell(enh, 6, 6) == 1
    assert registry.baseline_cell(enh, 6, 12) is None  # a larger baseline: its first 6 per class are other draws
    assert registry.baseline_cell({**enh, "codebook_sigmas": [1.0]}, 6, 6) is None  # no (0, 0) cell
    decoupling = {"kind": "decoupling", "cut_fraction": 0.25, "sigma": 1.0, "paths": 4, "continuations": 2}
    assert registry.baseline_cell(decoupling, 6, 6) is None  # nested: no cell is the baseline


@pytest.mark.parametrize("design", ["nested", "enhancement"])
def test_after_cut_codebook_noise_reads_the_path_clean(models, monkeypatch, design):
    """DESIGN §4: the decoupling probe's and the enhancement's after-cut noise hand the resume the
    tokens committed at the cut as the path (read through the clean table: backbone.CodeReads)."""
    seen = {}
    real = probes.sampling.resume
    monkeypatch.setattr(probes.sampling, "resume", lambda model, state, *a, **k: (
        seen.update(state=state, noise=k["perturbation"]), real(model, state, *a, **k))[1])
    if design == "nested":
        probes.sample_nested(models["mim"], C, 4, 3, 0.5, KNOBS["mim"], seed=1, after=("codebook", 1.0))
    else:
        probes.sample_flat(models["mim"], C, 4, KNOBS["mim"], seed=1, cut_fraction=0.5, noise_after=("codebook", 1.0))
    state, noise = seen["state"], seen["noise"]
    assert noise.code_noise is not None and (noise.path >= 0).any()
    assert torch.equal(noise.path, state.tokens.masked_fill(~state.committed, -1))


@pytest.mark.parametrize("family", PERTURBABLE)
def test_a_probe_cache_does_not_depend_on_the_probes_drawn_before_it_in_its_job(models, family):
    """One sampling job draws every probe of a run (workflow/rules/probes.smk): a probe's cache must
    be what a job of its own would draw, whatever the job drew before with the same model."""
    m, knobs, run = models[family], KNOBS.get(family, {}), ("d", family, "0", "neutral")
    noise = {"kind": "noise", "target": "codebook", "sigmas": [0.0, 1.0]}
    others = {"clamp": {"kind": "path_clamp", "cut_fractions": [0.25], "paths": 3, "continuations": 2},
              "sweep": {"kind": "sweep", "knob": "temperature", "values": [0.5, 2.0]}}
    draw = lambda name, probe: probes.probe_cache(m, name, probe, n_classes=C, knobs=knobs, per_class=4,  # noqa: E731
                                                  run=run, base_seed=7)
    alone = draw("noise", noise)
    for name, probe in others.items():
        draw(name, probe)
    after = draw("noise", noise)
    assert alone.keys() == after.keys() and all((alone[k] == after[k]).all() for k in alone)
    renamed = draw("other_noise", noise)  # the noise seed is the probe's own (its name), not the job's
    assert (renamed["tokens"][0] == alone["tokens"][0]).all() and (renamed["tokens"][1] != alone["tokens"][1]).any()


@pytest.mark.parametrize("family", ["ar", "mim", "diffusion"])
def test_enhancement_cells_sharing_a_pre_cut_run_equal_cells_drawn_alone(models, family, monkeypatch):
    """The cells of one condition σ take their pre-cut run from the memo (issue 26): each equals the
    cell drawn on its own, and the shared runs are drawn once per σ and batch."""
    probe = {"kind": "enhancement", "cut_fraction": 0.25, "condition_sigmas": [0.0, 1.0], "codebook_sigmas": [0.0, 0.5, 1.0]}
    model = models[family]
    cells = registry.cell_settings(probe, {})
    calls = []
    sample = probes.sampling.sample
    monkeypatch.setattr(probes.sampling, "sample", lambda *a, **k: calls.append(1) or sample(*a, **k))
    out = probes.run_probe(model, probe, C, {}, per_class=6, seed=2, noise_seed=3, batch_size=10)
    assert len(calls) == 2 * 2  # 2 condition σ x 2 batches (C x 6 = 18 samples, 10 a batch)
    for i, cell in enumerate(cells):
        alone = probes.sample_flat(model, C, 6, seed=2, noise_seed=3, batch_size=10, **cell)
        assert np.array_equal(out["tokens"][i], alone["tokens"])
        assert np.array_equal(out["logprobs"][i], alone["logprobs"], equal_nan=True)
