"""The suite's own scheduling (tests/conftest.py): the files it hands out first exist, so a renamed
heavy file cannot silently fall back to the end of the run (docs/testing.md)."""
from conftest import HEAVY_FILES_FIRST, ROOT


def test_every_heavy_file_named_first_exists():
    assert len(set(HEAVY_FILES_FIRST)) == len(HEAVY_FILES_FIRST)
    missing = [name for name in HEAVY_FILES_FIRST if not (ROOT / "tests" / name).is_file()]
    assert not missing, missing
