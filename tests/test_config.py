"""Config validation: every shipped config is valid; mistakes fail naming the key."""
import copy
from pathlib import Path

import pytest
import yaml

from ibdiv.config import ConfigError, load_config, validate_config
from ibdiv.seeds import derive_seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["config.yaml", "config.quick.yaml", "config.smoke.yaml"])
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
