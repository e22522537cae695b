"""The documentation stays navigable: a short README, no dead relative links in README.md and
docs/, every config file the scripts name exists, and no retired knob names."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target) and ![alt](target); the target up to whitespace or ')', an optional "title" after it
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CONFIG_PATH = re.compile(r"[\w./-]*config[\w./-]*\.ya?ml")


def _without_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code: links there are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    dead = []
    for target in LINK.findall(_without_code(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            dead.append(target)
    assert not dead, f"{page.relative_to(ROOT)} links to missing files: {dead}"


def test_config_paths_named_in_scripts_exist():
    scripts = [*sorted((ROOT / "scripts").glob("*.sh")), *sorted((ROOT / "scripts").glob("*.py")),
               ROOT / "Snakefile", *sorted((ROOT / ".ci").glob("*"))]
    missing = [f"{script.relative_to(ROOT)}: {name}" for script in scripts if script.is_file()
               for name in sorted(set(CONFIG_PATH.findall(script.read_text())))
               if not (ROOT / name).exists()]
    assert not missing, f"config files named but missing: {missing}"


def test_docs_name_no_retired_knob():
    """`stop_at` became `cut_fraction` (the sampler contract, src/ibdiv/families/sampling.py)."""
    stale = [str(page.relative_to(ROOT)) for page in PAGES if "stop_at" in page.read_text()]
    assert not stale, f"retired name stop_at in {stale}"
