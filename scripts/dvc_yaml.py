"""Write the generated blocks of dvc.yaml: the diagnostic figures from their catalogue
(ibdiv.report.figures.catalogue) and the stages' code deps from the import graph (codegraph).

dvc.yaml is written by hand except its blocks between a `# >>> <kind> ...` line and a
`# <<< <kind>` line (same indent):

- `# >>> figure outs` / `# >>> figure plots` (the `tables` stage): the figures' PDFs (outs) and
  their PNGs and CSVs (plots, with the CSV's axes and title from the catalogue);
- `# >>> code deps of RULE ...`: the adapters workflow/scripts/RULE.py of those rules and every
  package file they import (ibdiv.pipeline.codegraph, as the rules' own code inputs).

This script rewrites those blocks; tests/test_dvc.py fails while the committed file differs from
what it writes, and checks the rest of dvc.yaml against the Snakemake DAG.

    python scripts/dvc_yaml.py           # rewrite dvc.yaml
    python scripts/dvc_yaml.py --check   # exit 1 (and say what differs) when dvc.yaml is not current
"""
from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "results/${key}/figures/diagnostics"
BEGIN = re.compile(r"^(?P<indent> *)# >>> (?P<block>figure outs|figure plots|code deps)\b(?: of (?P<rules>[\w ]+))?(?:[ :].*)?$")


def _figures():
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from ibdiv.report.figures import catalogue
    finally:
        sys.path.pop(0)
    return catalogue.DIAGNOSTIC_FIGURES


def _scalar(value: str) -> str:
    """A YAML scalar: plain where it reads back as itself, else double-quoted."""
    try:
        plain = yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value, ensure_ascii=False)


def code_deps(rules: list[str]) -> list[str]:
    """The rules' adapters, then every package file they import (sorted)."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from ibdiv.pipeline.codegraph import code_files
    finally:
        sys.path.pop(0)
    scripts = [f"workflow/scripts/{rule}.py" for rule in rules]
    code = {str(f.relative_to(ROOT)) for s in scripts for f in code_files(ROOT / s, ROOT / "src")}
    return [*scripts, *sorted(code)]


def block(kind: str, indent: str, rules: list[str] = ()) -> list[str]:
    """The lines of one generated block (without its marker lines)."""
    if kind == "code deps":
        return [f"{indent}- {path}" for path in code_deps(rules)]
    figures = _figures()
    if kind == "figure outs":
        return [f"{indent}- {FOLDER}/{f.name}.pdf" for f in figures]
    lines = [f"{indent}- {FOLDER}/{f.name}.png" for f in figures]
    for f in figures:
        lines.append(f"{indent}- {FOLDER}/{f.name}.csv:")
        for key, value in f.plot.items():
            value = f"${{key}}: {value}" if key == "title" else value
            lines.append(f"{indent}    {key}: {_scalar(value)}")
    return lines


def render(text: str) -> str:
    """dvc.yaml's text with its generated blocks rewritten from the catalogue."""
    lines, out, i = text.splitlines(), [], 0
    found = set()
    while i < len(lines):
        out.append(lines[i])
        begin = BEGIN.match(lines[i])
        i += 1
        if not begin:
            continue
        kind, indent, rules = begin["block"], begin["indent"], (begin["rules"] or "").split()
        if kind == "code deps" and not rules:
            raise ValueError(f"dvc.yaml: {lines[i - 1].strip()!r} names no rule (`# >>> code deps of RULE ...`)")
        end = f"{indent}# <<< {kind}"
        while i < len(lines) and lines[i] != end:
            i += 1
        if i == len(lines):
            raise ValueError(f"dvc.yaml: `# >>> {kind}` has no closing line {end.strip()!r} at its indent")
        out += [*block(kind, indent, rules), end]
        found.add(kind)
        i += 1
    if not {"figure outs", "figure plots"} <= found:
        raise ValueError("dvc.yaml: the `# >>> figure outs` / `# >>> figure plots` blocks are missing")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    path = ROOT / "dvc.yaml"
    current = path.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current == wanted:
            return 0
        diff = difflib.unified_diff(current.splitlines(), wanted.splitlines(), "dvc.yaml", "generated", lineterm="")
        print("dvc.yaml is not current: run `python scripts/dvc_yaml.py`\n" + "\n".join(diff), file=sys.stderr)
        return 1
    if current != wanted:
        path.write_text(wanted)
        print("dvc.yaml: generated blocks rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
