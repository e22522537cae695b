"""The HTML report's stylesheet (issue 24): at 1024 px Snakemake's content panel centred a page
wider than itself (the findings tables), so the tables' first columns lay left of the panel, at the
menu's edge, where no scroll bar reaches. workflow/report/style.css, passed with
--report-stylesheet, keeps the page at the panel's left edge and lets each wide table scroll in its
own box. These tests read the CSS (no browser needed); the selectors are checked against the class
lists of Snakemake's own report components, so a Snakemake upgrade that renames them fails here."""
import re
import shlex
from pathlib import Path

import pytest

from conftest import snakemake

ROOT = Path(__file__).resolve().parents[1]
STYLE = ROOT / "workflow/report/style.css"
STYLE_ARG = "--report-stylesheet workflow/report/style.css"
# the class lists of Snakemake's report elements (html_reporter/template/components/content.js)
PANEL = "grow flex items-center justify-center h-screen overflow-auto"  # ContentDisplay, beside the menu
LANDING = "grow flex gap-3 p-3 items-start"  # the landing page: findings text and rule graph


def rules(css: str) -> list[tuple[str, dict[str, list[str]]]]:
    """(selector, {property: [values in order]}) per selector of every rule of a flat stylesheet."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    out = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        decls: dict[str, list[str]] = {}
        for decl in body.split(";"):
            if ":" in decl:
                prop, value = decl.split(":", 1)
                decls.setdefault(prop.strip().lower(), []).append(" ".join(value.split()).lower())
        out += [(" ".join(s.split()), decls) for s in selectors.split(",") if s.strip()]
    return out


def classes_of(compound: str) -> set[str]:
    return set(re.findall(r"\.([\w-]+)", compound))


def matching(css_rules, classes: str, prop: str):
    """The values of `prop` in rules whose (last compound) selector only names classes of an
    element with class list `classes`, and at least three of them (to win over Tailwind's
    one-class utilities, which are inserted after the custom stylesheet)."""
    element = set(classes.split())
    values = []
    for selector, decls in css_rules:
        last = classes_of(selector.split()[-1])
        if len(last) >= 3 and last <= element and prop in decls:
            values += decls[prop]
    return values


@pytest.fixture(scope="module")
def css_rules():
    return rules(STYLE.read_text())


def test_parser_reads_rules():
    parsed = rules("/* x { } */ a.b, c > d.e { min-width: 0; Display : block ;}\n")
    assert parsed == [("a.b", {"min-width": ["0"], "display": ["block"]}),
                      ("c > d.e", {"min-width": ["0"], "display": ["block"]})]


def test_panel_no_longer_centres_overflowing_content(css_rules):
    """The panel's `justify-content: center` is what pushed the page under the menu: the stylesheet
    must replace it by a start or `safe` alignment (last declaration wins where supported)."""
    values = matching(css_rules, PANEL, "justify-content")
    assert values, "no rule for the report's content panel"
    assert all(v in ("flex-start", "start", "safe center", "normal") for v in values), values
    assert values[-1] in ("safe center", "flex-start", "start")


def test_landing_page_may_shrink_and_tables_scroll(css_rules):
    """The landing page and its columns shrink to the panel (min-width 0, else a flex item is as wide
    as its widest table), and the tables scroll sideways in their own box."""
    assert "0" in matching(css_rules, LANDING, "min-width")
    assert any(sel.startswith("div.grow.flex.items-start >") and decls.get("min-width") == ["0"]
               for sel, decls in css_rules if classes_of(sel.split(">")[0]) <= set(LANDING.split()))
    tables = [decls for sel, decls in css_rules if sel.split()[-1].split(".")[0] == "table"]
    assert any(d.get("display") == ["block"] and d.get("overflow-x") == ["auto"] and d.get("max-width") == ["100%"]
               for d in tables), tables


def test_selectors_match_snakemake_components():
    """The class lists above are the ones the installed Snakemake's report components render."""
    from snakemake.report import html_reporter

    components = Path(html_reporter.__file__).parent / "template/components/content.js"
    if not components.is_file():
        pytest.skip("this Snakemake has no template/components/content.js")
    source = components.read_text()
    assert f'"{PANEL}"' in source and f'"{LANDING}"' in source


def test_main_script_passes_the_stylesheet():
    lines = [line for line in (ROOT / "scripts/main.sh").read_text().splitlines() if "--report " in line]
    assert lines and all(STYLE_ARG in line for line in lines), lines
    path = shlex.split(STYLE_ARG)[1]
    assert (ROOT / path).is_file()


@pytest.mark.e2e
def test_report_embeds_the_stylesheet(smoke_run, tmp_path):
    report = tmp_path / "report.html"  # outside smoke_run, which other tests read
    snakemake(smoke_run, "--report", str(report), *shlex.split(STYLE_ARG))
    html = report.read_text(errors="ignore")
    assert (smoke_run / "workflow/report/style.css").read_text() in html
