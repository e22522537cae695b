"""The generator families and probe kinds the pipeline knows, and what each one is (DESIGN §3, §4).

One table per axis. The Snakefile and rules read it to plan jobs, the config schema's enums must
equal it (tests/test_registry.py), and the sampler, probes, tables and figures ask it instead of
spelling names out. Nothing here imports torch: Snakemake reads this module while it builds the
DAG, and a family's implementation is imported only when it is first used (`implementation`).

Adding a built-in family: its module (the contract at the top of ibdiv/families/sampling.py), one `Family`
below, and its operating points under `families` in the config (plus the name in the schema's
`families` properties, which the registry test checks). A config can also bring a family of its
own, without touching this package:

    families:
      myfam:
        implementation: "mypkg.fam:MyFamily"   # an object (class, instance or module) with the contract
        neutral: {temperature: 1.0}
        standard: {temperature: 0.9}

whose object also declares the traits LEARNED, EXACT_LIKELIHOOD and PERTURBABLE (see `Family`).
`declare(config)` registers it; from then on it is used exactly like a built-in family.

Adding a probe kind: one `ProbeKind` below (its cell labels and what each cell samples) and its
settings in the schema (`$defs.probe`); docs/extending.md lists every file each extension touches.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

POINTS = ("neutral", "standard")  # operating points of a configured family (DESIGN §3)
STRUCTURE_REFERENCE = "independent"  # learned structure = its held-out bits minus a family's (DESIGN §2)
ISO_QUALITY_KNOB = "temperature"  # the sweep along which families are compared at matched quality


@dataclass(frozen=True)
class Family:
    name: str
    implementation: str  # "ibdiv.families.ar"; "package.module:Object" for an object inside a module
    learned: bool  # trained by gradient descent (`training_loss`); else counted (`PRIOR.fit`) or not trained
    exact_likelihood: bool  # held-out bits/token are an exact NLL (else a bound, or undefined)
    perturbable: bool  # has a condition-embedding table and a code-embedding table (I2, I3 act on it)
    knobs: tuple[str, ...]  # sampler knobs it accepts; their defaults are the implementation's KNOBS
    # What its sampler loads: "prior", the checkpoint train_prior writes (the families configured
    # under `families`); "tokenizer", the dataset's VQ tokenizer (the oracle); "built", nothing:
    # constructed in code (the calibration generators, never a job of the DAG); "checkpoint", a
    # local folder of published weights, not trained by the DAG (the pretrained backends, DESIGN §12):
    # its module provides `load_checkpoint(folder, device)` (ibdiv.measure.probes.load_sampler).
    model: str = "prior"
    points: tuple[str, ...] = POINTS
    source: str | None = None  # a "tokenizer" family exists on the datasets of this source only
    condition: str | None = None  # a "checkpoint" family: what each configured condition names for it


@dataclass(frozen=True)
class ProbeKind:
    name: str
    design: str  # "flat": per_class samples per cell; "nested": paths x continuations per cell
    perturbing: bool  # perturbs embedding tables: applies to `perturbable` families only
    cells: Callable[[dict], list]  # the cell labels of a probe of this kind, in cache order
    # (probe, knobs) -> what each cell samples, in the order of `cells`: keyword arguments of
    # ibdiv.measure.probes.sample_flat (knobs, noise placement) for a flat design, of sample_nested
    # (cut, noise before / after it) for a nested one
    cell_settings: Callable[[dict, dict], list[dict]]
    sweeps_knob: bool = False  # varies the probe's `knob`: applies to families that have it


_BUILT_IN = (
    Family("ar", "ibdiv.families.ar", learned=True, exact_likelihood=True, perturbable=True,
           knobs=("temperature", "top_k", "top_p", "cfg_scale", "kv_cache")),
    # MIM and diffusion: held-out bits/token are the absorbing-diffusion ELBO bound
    Family("mim", "ibdiv.families.mim", learned=True, exact_likelihood=False, perturbable=True,
           knobs=("steps", "schedule", "temperature", "choice_temperature", "cfg_scale")),
    Family("diffusion", "ibdiv.families.diffusion", learned=True, exact_likelihood=False, perturbable=True,
           knobs=("steps", "temperature", "top_p", "cfg_scale", "mask_and_replace")),
    Family("independent", "ibdiv.families.independent", learned=False, exact_likelihood=True, perturbable=False,
           knobs=("temperature", "top_k", "top_p")),
    # rendering noise has no tractable token likelihood: no sequence entropy, no held-out bits
    Family("oracle", "ibdiv.families.oracle", learned=False, exact_likelihood=False, perturbable=False, knobs=(),
           model="tokenizer", points=("neutral",), source="shapes"),
    Family("calibration", "ibdiv.verdict.calibration", learned=False, exact_likelihood=True, perturbable=True,
           knobs=("temperature",), model="built", points=("neutral",)),
    # the shapes oracle with zero-shot handles (I2 tilts its layout choice, I3 acts on its rendering):
    # the label calibration suite's natural process of known split (DESIGN §5), built in code
    Family("oracle_knobs", "ibdiv.families.oracle:TUNABLE", learned=False, exact_likelihood=False,
           perturbable=True, knobs=(), model="built", points=("neutral",)),
    # LlamaGen c2i (DESIGN §12): an AR transformer with exact per-token log-probs; its class table
    # and input code table are what I2 and I3 perturb. Learned, but not by the DAG: no training_loss.
    Family("llamagen", "ibdiv.backends.llamagen", learned=False, exact_likelihood=True, perturbable=True,
           knobs=("temperature", "top_k", "top_p", "cfg_scale", "kv_cache"), model="checkpoint",
           condition="class_id"),
    # aMUSEd (DESIGN §12): MIM on diffusers components, prompts as conditions; I2 perturbs the
    # prompt's text encodings, I3 the transformer's input code rows (ibdiv.backends.amused). Held-out bits:
    # the absorbing ELBO bound, as the in-house MIM. Learned, but not by the DAG: no training_loss.
    Family("amused", "ibdiv.backends.amused", learned=False, exact_likelihood=False, perturbable=True,
           knobs=("steps", "cfg_scale", "choice_temperature", "temperature"), model="checkpoint",
           condition="prompt"),
    # VQ-Diffusion ITHQ (DESIGN §12): discrete diffusion on diffusers components, prompts as
    # conditions, the scheduler's fixed 100 steps (no steps knob); top_p is the pipeline's
    # truncation_rate. I2 perturbs the normalised prompt states, I3 the transformer's input code
    # rows (ibdiv.backends.vq_diffusion). Held-out bits: the absorbing ELBO bound. No training_loss.
    Family("vq_diffusion", "ibdiv.backends.vq_diffusion", learned=False, exact_likelihood=False, perturbable=True,
           knobs=("cfg_scale", "top_p", "temperature"), model="checkpoint", condition="prompt"),
)
BUILT_IN = {f.name: f for f in _BUILT_IN}
CONFIGURABLE = tuple(f.name for f in _BUILT_IN if f.model == "prior")  # may appear under `families`, trained
# pretrained backends: may appear under `families` too (operating points), never trained; each runs
# on the `source: pretrained` datasets whose `backend` it is (DESIGN §12)
BACKENDS = tuple(f.name for f in _BUILT_IN if f.model == "checkpoint")


def _knob_type(knob: str, value: float):
    return int(value) if knob in ("top_k", "steps") else float(value)


def _sweep_settings(probe: dict, knobs: dict) -> list[dict]:
    return [{"knobs": {**knobs, probe["knob"]: _knob_type(probe["knob"], v)}} for v in probe["values"]]


def _noise_settings(probe: dict, knobs: dict) -> list[dict]:
    """The same noise at every phase of the generation."""
    return [{"knobs": knobs, "noise": (probe["target"], s)} for s in probe["sigmas"]]


def _path_clamp_settings(probe: dict, knobs: dict) -> list[dict]:
    return [{"cut_fraction": float(f)} for f in probe["cut_fractions"]]


def _decoupling_settings(probe: dict, knobs: dict) -> list[dict]:
    """Unperturbed, I2 only before the cut, I3 only after it (DESIGN §5)."""
    sigma = probe["sigma"]
    placements = [{}, {"before": ("condition", sigma)}, {"after": ("codebook", sigma)}]
    return [{"cut_fraction": probe["cut_fraction"], **where} for where in placements]


def _enhancement_settings(probe: dict, knobs: dict) -> list[dict]:
    """Condition noise only before the cut (path), codebook noise only after it (execution)."""
    return [{"knobs": knobs, "cut_fraction": probe["cut_fraction"], "noise": ("condition", c),
             "noise_after": ("codebook", z)} for c in probe["condition_sigmas"] for z in probe["codebook_sigmas"]]


PROBE_KINDS = {k.name: k for k in (
    ProbeKind("sweep", "flat", perturbing=False, sweeps_knob=True,
              cells=lambda probe: [float(v) for v in probe["values"]], cell_settings=_sweep_settings),
    ProbeKind("noise", "flat", perturbing=True, cells=lambda probe: [float(s) for s in probe["sigmas"]],
              cell_settings=_noise_settings),
    ProbeKind("path_clamp", "nested", perturbing=False, cells=lambda probe: [float(f) for f in probe["cut_fractions"]],
              cell_settings=_path_clamp_settings),
    # unperturbed, I2 only before the cut, I3 only after it (DESIGN §5)
    ProbeKind("decoupling", "nested", perturbing=True,
              cells=lambda probe: ["none", "condition_before_cut", "codebook_after_cut"],
              cell_settings=_decoupling_settings),
    # condition noise before the cut x codebook noise after it (DESIGN §7)
    ProbeKind("enhancement", "flat", perturbing=True,
              cells=lambda probe: [f"{c}/{z}" for c in probe["condition_sigmas"] for z in probe["codebook_sigmas"]],
              cell_settings=_enhancement_settings),
)}
FLAT_KINDS = tuple(k for k, v in PROBE_KINDS.items() if v.design == "flat")
NESTED_KINDS = tuple(k for k, v in PROBE_KINDS.items() if v.design == "nested")

# Families a config brought (`declare`), by name: this process's additions to BUILT_IN.
_declared: dict[str, Family] = {}
_loaded: dict[str, object] = {}


# --- families -------------------------------------------------------------------------------

def family(name: str) -> Family:
    """The family called `name`: a built-in one, or one a config declared in this process."""
    found = BUILT_IN.get(name) or _declared.get(name)
    if found is None:
        raise KeyError(f"unknown family {name!r}: built-in {sorted(BUILT_IN)}, declared {sorted(_declared)} "
                       f"(a config brings its own with families.{name}.implementation)")
    return found


def implementation(name: str):
    """The object implementing a family's sampler contract (a module for the built-in ones),
    imported on first use."""
    if name not in _loaded:
        _loaded[name] = load_object(family(name).implementation)
    return _loaded[name]


def load_object(path: str):
    """"package.module" -> the module; "package.module:Object" -> that attribute of it."""
    module, _, attribute = path.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


def families_for(configured, source: str, backend: str | None = None) -> list[str]:
    """A dataset's families: the configured ones, then those that come with its data source
    (the oracle of `shapes`). A configured pretrained backend belongs only to the `pretrained`
    datasets whose `backend` it is."""
    own = [f for f in configured if family(f).model != "checkpoint" or (source == "pretrained" and f == backend)]
    return [*own, *(f.name for f in _BUILT_IN if f.model == "tokenizer" and f.source == source)]


def declare(config: dict) -> None:
    """Register the families `config` brings (`families.<name>.implementation`) and check the
    names its probes restrict themselves to. Raises ValueError naming the config key."""
    for name, entry in config["families"].items():
        if "implementation" in entry:
            _declare(name, entry["implementation"], f"families.{name}.implementation")
    known = set(config["families"]) | {f.name for f in _BUILT_IN if f.model == "tokenizer"}
    for probe, spec in config["probes"].items():
        unknown = sorted(set(spec.get("families", ())) - known)
        if unknown:
            raise ValueError(f"probes.{probe}.families: {unknown} not a configured family; known: {sorted(known)}")


def _declare(name: str, path: str, key: str) -> None:
    if name in BUILT_IN:
        raise ValueError(f"{key}: {name!r} is a built-in family; give yours another name")
    try:
        obj = load_object(path)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{key}: cannot import {path!r} ({error})") from error
    missing = [a for a in _CONTRACT if not hasattr(obj, a)]
    if getattr(obj, "LEARNED", False) and not hasattr(obj, "training_loss"):
        missing.append("training_loss")
    if missing:
        raise ValueError(f"{key}: {path!r} lacks {missing} of the family contract (see ibdiv.families.sampling)")
    _declared[name] = Family(name, path, learned=bool(obj.LEARNED), exact_likelihood=bool(obj.EXACT_LIKELIHOOD),
                             perturbable=bool(obj.PERTURBABLE), knobs=tuple(obj.KNOBS))
    _loaded[name] = obj


_CONTRACT = ("LEARNED", "EXACT_LIKELIHOOD", "PERTURBABLE", "KNOBS", "SCHEDULE_KNOBS", "PRIOR", "start",
             "advance", "heldout_bits_per_token")


# --- probe kinds ----------------------------------------------------------------------------

def probe_kind(name: str) -> ProbeKind:
    if name not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {name!r}; known: {sorted(PROBE_KINDS)}")
    return PROBE_KINDS[name]


def probe_cells(probe: dict) -> list:
    """The cell labels of a probe, in cache order."""
    return probe_kind(probe["kind"]).cells(probe)


def cell_settings(probe: dict, knobs: dict) -> list[dict]:
    """What each cell of a probe samples, in the order of `probe_cells` (`ProbeKind.cell_settings`)."""
    return probe_kind(probe["kind"]).cell_settings(probe, knobs)


def applies(probe: dict, family_name: str) -> bool:
    """Whether a probe can run on a family: perturbing probes need embedding tables, a sweep
    needs the knob it sweeps (the probe's own `families` / `points` lists are the config's)."""
    kind, fam = probe_kind(probe["kind"]), family(family_name)
    if kind.perturbing and not fam.perturbable:
        return False
    return not kind.sweeps_knob or probe["knob"] in fam.knobs


def probes_of_kind(probes: dict, kind: str, **settings) -> list[str]:
    """Names of the configured probes of `kind` whose settings include `settings`
    (e.g. knob="temperature"), in config order. The one way rules, tables and figures find a
    probe: names are the user's to choose."""
    probe_kind(kind)  # a misspelt kind is an error, not "none configured"
    return [name for name, spec in probes.items()
            if spec["kind"] == kind and all(spec.get(k) == v for k, v in settings.items())]


def probe_of_kind(probes: dict, kind: str, **settings) -> str | None:
    """The first such probe, or None when the config has none."""
    return next(iter(probes_of_kind(probes, kind, **settings)), None)


def iso_quality_probe(probes: dict) -> str | None:
    """The sweep along which families are compared at matched quality (DESIGN §2)."""
    return probe_of_kind(probes, "sweep", knob=ISO_QUALITY_KNOB)


def baseline_cell(probe: dict, per_class: int, baseline_per_class: int) -> int | None:
    """The cell of a probe that is its run's baseline cache bit for bit, so its sampling job
    copies the baseline instead of drawing it again (issue 14); None when it has none.

    The enhancement's (0, 0) cell: every probe of a run samples with the run's baseline seed
    (ibdiv.measure.probes.sampling_seed) and a cut without noise is the uninterrupted run. Only when
    the baseline holds the same per_class: batches are class-major, so a larger baseline's
    first per_class samples of a class are other draws.

    Not the decoupling probe's unperturbed cell, though the path_clamp cache at the same fraction
    has the same prefixes: its continuations are drawn R' at a time from one generator, so its
    first R are not the random numbers the I2 / I3 cells' continuations use, and the paired
    responses lose their common random numbers (measured on tiny models: the SE of r_i3_exec
    rose 1.7-2.1x, of r_i2_exec 2.5-4x).
    """
    if probe["kind"] != "enhancement" or per_class != baseline_per_class:
        return None
    conditions, codebooks = probe["condition_sigmas"], probe["codebook_sigmas"]
    if 0 not in conditions or 0 not in codebooks:
        return None
    return conditions.index(0) * len(codebooks) + codebooks.index(0)  # cells are condition-major


# --- checkpoint folders ---------------------------------------------------------------------

def backend_owning(folder) -> str | None:
    """The pretrained backend (a family whose model is "checkpoint") whose checkpoint folder
    `folder` is, by the marker each backend module declares: its FOLDER_MARKER file is in the
    folder and, where the module lists FOLDER_CLASSES, the marker's `_class_name` is one of them
    (a diffusers model_index.json). None when no backend claims it. Imports the backend modules
    (and torch) when called, not when this module is."""
    import json
    from pathlib import Path

    for name in BACKENDS:
        module = implementation(name)
        marker = Path(folder) / module.FOLDER_MARKER
        if not marker.is_file():
            continue
        if not module.FOLDER_CLASSES:
            return name
        try:
            found = json.loads(marker.read_text())
        except ValueError:
            continue
        if isinstance(found, dict) and found.get("_class_name") in module.FOLDER_CLASSES:
            return name
    return None
