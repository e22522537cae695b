"""The registry of families and probe kinds: the schema agrees with it, the built-in modules
agree with it, probes are found by kind, and a family a config brings itself (defined below)
runs through the same code as a built-in one."""
import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ibdiv.measure import probes
from ibdiv.core import registry
from ibdiv.families import sampling, training
from ibdiv.families.backbone import DecodeState, draw, sampling_log_probs
from ibdiv.core.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
SHIPPED = ["config.yaml", "config/quick.yaml", "config/smoke.yaml"]
K, N, C = 8, 6, 3


# --- the schema and the modules agree with the registry -----------------------------------------

def test_schema_families_are_the_registry_s():
    families = SCHEMA["properties"]["families"]
    assert list(families["properties"]) == list(registry.CONFIGURABLE) + list(registry.BACKENDS)
    not_configured = [f for f in registry.BUILT_IN if f not in registry.CONFIGURABLE + registry.BACKENDS]
    assert families["propertyNames"]["not"]["enum"] == not_configured
    for name in ("family", "own_family"):
        assert SCHEMA["$defs"][name]["required"][-2:] == list(registry.POINTS)


def test_schema_probe_kinds_and_points_are_the_registry_s():
    probe = SCHEMA["$defs"]["probe"]
    assert probe["properties"]["kind"]["enum"] == list(registry.PROBE_KINDS)
    branches = [b["if"]["properties"]["kind"]["const"] for b in probe["allOf"]]
    assert sorted(branches) == sorted(registry.PROBE_KINDS)  # one set of settings per kind
    assert probe["properties"]["points"]["items"]["enum"] == list(registry.POINTS)


def test_schema_knobs_are_the_sampler_s_and_cover_every_family():
    knobs = set(SCHEMA["$defs"]["knobs"]["properties"])
    assert knobs == set(sampling.KNOB_CHECKS)
    assert set().union(*(f.knobs for f in registry.BUILT_IN.values())) <= knobs


@pytest.mark.parametrize("name", list(registry.BUILT_IN))
def test_built_in_entries_match_their_modules(name):
    fam, module = registry.family(name), registry.implementation(name)
    assert set(fam.knobs) == set(module.KNOBS)
    assert fam.learned == hasattr(module, "training_loss")
    if fam.model == "prior":  # a tiny instance tells whether there are tables to perturb
        model = module.PRIOR.build(K, N, C, training.resolve_cfg({"d_model": 8, "n_layers": 1, "n_heads": 2}))
        assert fam.perturbable == (hasattr(model, "cls_emb") and hasattr(model, "tok_emb"))
        assert fam.learned or hasattr(model, "fit")


def test_the_registry_does_not_import_torch():
    code = "import sys; from ibdiv.core import registry; registry.family('ar'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


@pytest.mark.parametrize("config", SHIPPED)
def test_every_shipped_probe_has_one_setting_per_cell(config):
    for spec in yaml.safe_load((ROOT / config).read_text())["probes"].values():
        assert len(registry.cell_settings(spec, {})) == len(registry.probe_cells(spec))


def test_cell_settings_are_what_the_samplers_take():
    """A kind's cell settings are keyword arguments of its design's sampler (probes.sample_flat /
    sample_nested), in the order of its cell labels."""
    import inspect

    takes = {"flat": set(inspect.signature(probes.sample_flat).parameters),
             "nested": set(inspect.signature(probes.sample_nested).parameters)}
    specs = {"sweep": {"knob": "top_k", "values": [1, 5.0]}, "noise": {"target": "condition", "sigmas": [0, 0.5]},
             "path_clamp": {"cut_fractions": [0.25, 0.5]}, "decoupling": {"cut_fraction": 0.5, "sigma": 1.0},
             "enhancement": {"cut_fraction": 0.5, "condition_sigmas": [0, 1], "codebook_sigmas": [0, 2]}}
    assert set(specs) == set(registry.PROBE_KINDS)
    for kind, spec in specs.items():
        probe = {"kind": kind, **spec}
        settings = registry.cell_settings(probe, {"temperature": 1.0})
        assert len(settings) == len(registry.probe_cells(probe))
        assert all(set(cell) <= takes[registry.probe_kind(kind).design] for cell in settings), kind
    assert [c["knobs"]["top_k"] for c in registry.cell_settings({"kind": "sweep", **specs["sweep"]}, {})] == [1, 5]
    assert registry.cell_settings({"kind": "enhancement", **specs["enhancement"]}, {})[1]["noise_after"] == ("codebook", 2)


# --- which probes run where, and finding probes by kind ---------------------------------------

@pytest.mark.parametrize("probe, runs_on", [
    ({"kind": "noise", "target": "codebook"}, {"ar", "mim", "diffusion"}),
    ({"kind": "decoupling"}, {"ar", "mim", "diffusion"}),
    ({"kind": "path_clamp"}, {"ar", "mim", "diffusion", "independent", "oracle"}),
    ({"kind": "sweep", "knob": "temperature"}, {"ar", "mim", "diffusion", "independent"}),
    ({"kind": "sweep", "knob": "top_k"}, {"ar", "independent"}),
    ({"kind": "sweep", "knob": "choice_temperature"}, {"mim"}),
])
def test_a_probe_applies_to_the_families_with_what_it_needs(probe, runs_on):
    families = ["ar", "mim", "diffusion", "independent", "oracle"]
    assert {f for f in families if registry.applies(probe, f)} == runs_on


def test_probes_are_found_by_kind_and_settings_not_by_name():
    config = {"heat": {"kind": "sweep", "knob": "temperature"}, "k": {"kind": "sweep", "knob": "top_k"},
              "clamp_a": {"kind": "path_clamp"}, "clamp_b": {"kind": "path_clamp"}}
    assert registry.probes_of_kind(config, "path_clamp") == ["clamp_a", "clamp_b"]
    assert registry.probe_of_kind(config, "sweep", knob="top_k") == "k"
    assert registry.iso_quality_probe(config) == "heat"
    assert registry.probe_of_kind(config, "decoupling") is None
    with pytest.raises(ValueError, match="unknown probe kind 'path_clmap'"):
        registry.probes_of_kind(config, "path_clmap")


# --- bring your own family ----------------------------------------------------------------------

class ToyPrior(torch.nn.Module):
    """Per-class, per-position categorical tables (add-one counts): the smallest prior there is."""

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int):
        super().__init__()
        self.vocab_size, self.seq_len, self.n_classes = vocab_size, seq_len, n_classes
        self.register_buffer("counts", torch.ones(n_classes, seq_len, vocab_size))

    @classmethod
    def build(cls, vocab_size, seq_len, n_classes, cfg):
        return cls(vocab_size, seq_len, n_classes)

    def spec(self):
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len, "n_classes": self.n_classes}

    @classmethod
    def from_spec(cls, spec):
        return cls(**spec)

    @property
    def mask_id(self):
        return self.vocab_size

    def fit(self, tokens, labels):
        for position in range(self.seq_len):
            self.counts[:, position].index_put_((labels, tokens[:, position]), torch.ones(len(labels)), accumulate=True)
        return self

    def log_probs(self, classes):
        return (self.counts[classes] / self.counts[classes].sum(-1, keepdim=True)).log()


class ToyFamily:
    """The family contract as a class: its functions are called on the class, never on an instance."""

    LEARNED, EXACT_LIKELIHOOD, PERTURBABLE = False, True, False
    KNOBS = {"temperature": 1.0}
    SCHEDULE_KNOBS = ()
    PRIOR = ToyPrior

    def heldout_bits_per_token(model, tokens, labels, gen=None):
        log_p = model.log_probs(labels).gather(-1, tokens[..., None])
        return -log_p.sum().item() / (tokens.numel() * math.log(2))

    def start(model, classes, knobs):
        return DecodeState.fresh(classes, model.seq_len, model.mask_id, model.seq_len, {})

    def advance(model, state, knobs, gen, perturbation=None, cut_fraction=None):
        table = model.log_probs(state.classes)
        while not state.finished and not state.reached(cut_fraction):
            i = state.step
            log_probs = sampling_log_probs(table[:, i], knobs["temperature"], 0, 1.0)
            state.tokens[:, i], state.logprobs[:, i] = draw(log_probs, gen)
            state.committed[:, i] = True
            state.step += 1
            state.trace["committed"].append(state.step)
        return state


TOY = f"{__name__}:ToyFamily"


@pytest.fixture
def config(monkeypatch):
    """The smoke config plus the toy family; the families declared here stay in this test."""
    monkeypatch.setattr(registry, "_declared", {})
    monkeypatch.setattr(registry, "_loaded", {})
    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["families"]["toy"] = {"implementation": TOY, "neutral": {}, "standard": {"temperature": 0.5}}
    return config


def toy_tokens(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % C
    tokens = (labels[:, None] + torch.arange(N)) % K  # one likely code per class and position
    return torch.where(torch.rand(n, N, generator=g) < 0.7, tokens, torch.randint(0, K, (n, N), generator=g)), labels


def test_a_config_family_is_registered_with_its_class_traits(config):
    validate_config(config)
    registry.declare(config)
    toy = registry.family("toy")
    assert (toy.learned, toy.exact_likelihood, toy.perturbable, toy.knobs) == (False, True, False, ("temperature",))
    assert toy.model == "prior" and toy.points == registry.POINTS
    assert registry.implementation("toy") is ToyFamily
    assert registry.applies({"kind": "sweep", "knob": "temperature"}, "toy")
    assert not registry.applies({"kind": "sweep", "knob": "top_k"}, "toy")
    assert not registry.applies({"kind": "noise", "target": "condition"}, "toy")


def test_a_config_family_trains_saves_samples_and_checks_its_knobs(config, tmp_path):
    registry.declare(config)
    (x, y), (vx, vy) = toy_tokens(), toy_tokens(60, seed=1)
    model, curve, bits = training.train_prior("toy", x, y, vx, vy, K=K, C=C, cfg={}, seed=0, progress=False)
    assert model.family == "toy" and bits < math.log2(K) and curve[0]["heldout_bits"] == bits  # counted
    training.save_model(tmp_path / "toy.pt", model)
    model = training.load_model(tmp_path / "toy.pt")
    classes, gen = torch.arange(600) % C, lambda: torch.Generator().manual_seed(3)
    hot = sampling.sample(model, classes, {}, gen())
    cold = sampling.sample(model, classes, config["families"]["toy"]["standard"], gen())
    assert hot.tokens.shape == (600, N) and hot.committed.all()
    assert (cold.tokens == (classes[:, None] + torch.arange(N)) % K).float().mean() > \
        (hot.tokens == (classes[:, None] + torch.arange(N)) % K).float().mean()  # colder = more typical
    cut = sampling.sample(model, classes, {}, gen(), cut_fraction=0.5)
    resumed = sampling.resume(model, cut.state, {}, gen())
    assert resumed.committed.all() and torch.equal(resumed.tokens[:, :N // 2], cut.tokens[:, :N // 2])
    with pytest.raises(ValueError, match="top_k"):  # a knob of other families, not of this one
        sampling.sample(model, classes, {"top_k": 2}, gen())
    with pytest.raises(ValueError, match="temperature"):
        sampling.sample(model, classes, {"temperature": 0}, gen())
    with pytest.raises(ValueError, match="'toy' has no embeddings"):
        sampling.sample(model, classes[:2], {}, gen(), perturbation=sampling.Perturbation())
    sweep = {"kind": "sweep", "knob": "temperature", "values": [0.5, 2.0]}
    out = probes.run_probe(model, sweep, C, {}, per_class=4, seed=1, noise_seed=2)
    assert out["tokens"].shape == (2, C * 4, N)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["toy"].pop("implementation"), r"families.toy: 'implementation' is a required property"),
    (lambda f: f["toy"].update(implementation="not a path"), r"families.toy.implementation: 'not a path' does not match"),
    (lambda f: f["ar"].update(implementation=TOY), r"families.ar: .*'implementation' was unexpected"),
    (lambda f: f.update(oracle=f.pop("toy")), r"families: 'oracle' should not be valid"),
    (lambda f: f["toy"]["neutral"].update(top_k=1.5), r"families.toy.neutral.top_k"),
])
def test_a_bad_family_entry_fails_validation_naming_the_key(config, edit, message):
    edit(config["families"])
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


@pytest.mark.parametrize("implementation, message", [
    ("no_such_package.fam:Family", "families.toy.implementation: cannot import 'no_such_package.fam:Family'"),
    (f"{__name__}:NoSuchFamily", "families.toy.implementation: cannot import"),
    (f"{__name__}:ToyPrior", r"lacks \['LEARNED', 'EXACT_LIKELIHOOD', 'PERTURBABLE', 'KNOBS'"),
])
def test_an_unusable_implementation_fails_naming_the_key(config, implementation, message):
    config["families"]["toy"]["implementation"] = implementation
    with pytest.raises(ValueError, match=message):
        registry.declare(config)


def test_a_probe_restricted_to_an_unknown_family_fails_naming_the_probe(config):
    bad = copy.deepcopy(config)
    bad["probes"]["top_k"]["families"] = ["ar", "toy", "tyo"]
    with pytest.raises(ValueError, match=r"probes.top_k.families: \['tyo'\] not a configured family"):
        registry.declare(bad)
    with pytest.raises(KeyError, match="unknown family 'tyo'"):
        registry.family("tyo")


def test_a_knob_without_a_range_check_is_named(config, monkeypatch):
    """Knob names are the sampler's (KNOB_CHECKS): a family cannot bring an unchecked one."""
    registry.declare(config)
    model = ToyPrior(K, N, C)
    model.family = "toy"
    monkeypatch.setattr(ToyFamily, "KNOBS", {"temperature": 1.0, "warp": 2})
    with pytest.raises(ValueError, match="knob 'warp' of family 'toy' has no range check"):
        sampling.sample(model, torch.arange(2), {}, torch.Generator())
