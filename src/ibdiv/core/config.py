"""Config loading and schema validation outside Snakemake (library users, tests).

Snakemake validates the same schema in the Snakefile; this module gives the same
error (naming the offending key) to code that does not go through Snakemake.
"""
from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")  # a link to workflow/schemas/ in the checkout, a copy in the wheel


class ConfigError(ValueError):
    pass


def validate_config(config: dict, schema_path=SCHEMA_PATH) -> dict:
    """Raise ConfigError naming the key path and the problem; return the config."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(map(str, e.absolute_path)) or '<top level>'}: {e.message}{_why(e)}" for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    return config


def _why(error) -> str:
    """The failing rule's description, where the schema gives one (e.g. a cross-key condition)."""
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f" ({description})" if description else ""


def load_config(path) -> dict:
    return validate_config(yaml.safe_load(Path(path).read_text()))

