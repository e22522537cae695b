"""Config validation: every shipped config is valid; mistakes fail naming the key."""
import copy
from pathlib import Path

import pytest
import yaml

from ibdiv.core.config import ConfigError, load_config, validate_config
from ibdiv.core.seeds import derive_seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["config.yaml", "config/quick.yaml", "config/smoke.yaml"])
def test_shipped_configs_validate(name):
    load_config(ROOT / name)


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_misspelt_key_is_named(config):
    config["datasets"]["shapes"]["tokenizer"]["codebok_size"] = 32
    with pytest.raises(ConfigError, match=r"datasets.shapes.tokenizer: .*'codebok_size' was unexpected"):
        validate_config(config)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("datasets", "shapes", "heldout_fraction"), 1.5, "datasets.shapes.heldout_fraction"),
        (("datasets", "shapes", "tokenizer", "steps"), "many", "datasets.shapes.tokenizer.steps"),
        (("datasets", "shapes", "source"), "mnist", "datasets.shapes.source"),
        (("seed",), -1, "seed"),
    ],
)
def test_bad_values_are_named(config, path, value, message):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_npz_source_requires_path(config):
    bad = copy.deepcopy(config)
    bad["datasets"]["shapes"]["source"] = "npz"
    with pytest.raises(ConfigError, match="'path' is a required property"):
        validate_config(bad)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "shapes", "data") == derive_seed(0, "shapes", "data")
    assert len({derive_seed(0, "shapes", s) for s in ("data", "split", "tokenizer")}) == 3


def test_training_settings_have_one_source(config):
    """train_prior.DEFAULT_CFG, the schema's `prior` keys and config.yaml's `prior` agree: the same
    keys, and the code's defaults are the default run's values (a config that leaves a key out
    trains like the default run)."""
    from ibdiv.families.training import DEFAULT_CFG

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert set(DEFAULT_CFG) == set(schema["properties"]["prior"]["properties"]) == set(config["prior"])
    assert DEFAULT_CFG == config["prior"]


def test_mask_and_replace_needs_a_network_trained_for_it(config):
    config["families"]["diffusion"]["standard"]["mask_and_replace"] = True
    with pytest.raises(ConfigError, match=r"families.diffusion.standard.mask_and_replace: .*prior.replace_fraction > 0"):
        validate_config(copy.deepcopy(config))
    config["prior"]["replace_fraction"] = 0.25
    validate_config(config)


def test_mask_and_replace_runs_end_to_end_from_config():
    """The smoke config with mask-and-replace switched on: training reads replace_fraction from
    `prior`, and the diffusion sampler revises committed tokens at the configured point."""
    import torch

    from ibdiv.families import sampling
    from ibdiv.families.training import train_prior

    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["prior"].update(replace_fraction=0.3, steps=10, eval_every=10)
    config["families"]["diffusion"]["neutral"]["mask_and_replace"] = True
    validate_config(config)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (128,), generator=g)
    tokens = (labels[:, None] + torch.randint(0, 2, (128, 16), generator=g)) % 8
    model = train_prior("diffusion", tokens, labels, tokens[:32], labels[:32], K=8, C=3, cfg=config["prior"],
                        seed=0, progress=False)[0]
    assert model.replace_fraction == 0.3
    knobs = config["families"]["diffusion"]["neutral"]
    result = sampling.sample(model, torch.arange(3).repeat(20), knobs, torch.Generator().manual_seed(1))
    assert sum(result.trace["revised"]) > 0


def test_snakemake_names_every_schema_error_at_once_before_any_job(tmp_path):
    """Three bad values: all three named, one dotted key a line, and nothing planned or run."""
    import subprocess
    import sys

    config = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    config["seed"] = -1
    config["measure"]["per_class"] = -3
    config["datasets"]["shapes"]["heldout_fraction"] = 1.5
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(tmp_path / "bad.yaml")],
                          cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    named = [line.strip() for line in out.splitlines() if line.startswith("  ") and ": " in line]
    assert [line.split(":")[0] for line in named] == ["datasets.shapes.heldout_fraction", "measure.per_class", "seed"], out
    assert "Job stats" not in out and "Traceback" not in out


def test_the_built_wheel_carries_the_schema_and_validates_outside_the_checkout(tmp_path):
    """Not only editable installs: a wheel's ibdiv.core.config finds its schema in the package."""
    import subprocess
    import sys
    import zipfile

    import shutil

    source = tmp_path / "source"  # setuptools builds in the source tree (build/): not in the checkout
    for name in ("src", "workflow/schemas"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("ibdiv-*.whl")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    assert (tmp_path / "site/ibdiv/core/config.schema.yaml").is_file()
    check = ("import sys, yaml; from ibdiv.core import config; assert config.__file__.startswith(sys.argv[1]); "
             "config.validate_config(yaml.safe_load(open(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", check, str(tmp_path / "site"), str(ROOT / "config.yaml")],
                   cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, check=True)
