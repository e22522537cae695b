"""The diagnostic figures of a dataset: one row each, the one table every place that lists them reads.

A row names the figure (its files results/<dataset>/figures/diagnostics/<name>.png, .pdf and .csv;
its caption workflow/report/<name>.rst), how it is drawn (a call of a function of
ibdiv.report.figures.diagnostic_plots) and how `dvc plots` shows its CSV. Read by:

- workflow/rules/common.smk and report.smk: the rule's outputs, the report's captions, the default target;
- workflow/scripts/diagnostic_figures.py: the calls it makes;
- scripts/dvc_yaml.py: the figures' outs and plots in dvc.yaml (tests/test_dvc.py checks it is current);
- tests/test_figures.py: every row's function, arguments and caption exist.

Adding a figure: one row below, its function in diagnostic_plots (returning the table its CSV
holds, as the others do), its caption workflow/report/<name>.rst, then `python scripts/dvc_yaml.py`
(docs/extending.md). Standard library only: Snakemake reads this module while it builds the DAG.

`draw` is a call written as Python, whose arguments are names the adapter knows (`ARGUMENTS`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# What a `draw` call may pass (workflow/scripts/diagnostic_figures.py gives the values)
ARGUMENTS = {
    "measurements": "the dataset's measurements table (tables/<dataset>/measurements.csv), full K",
    "summary": "the dataset's summary table (summary.csv), full K",
    "classification": "the dataset's per-seed classification (classification.csv), full K",
    "path": "the figure's PNG path (the PDF and CSV are written beside it)",
    "probes": "the config's `probes` section",
    "iso_quality_probe": "the sweep along which families are compared (registry.iso_quality_probe)",
    "clamp_probe": "the first probe of kind path_clamp (registry.probe_of_kind)",
    "nested_kinds": "the probe kinds of nested design (registry.NESTED_KINDS)",
}


@dataclass(frozen=True)
class DiagnosticFigure:
    name: str  # file stem of its PNG / PDF / CSV and of its caption workflow/report/<name>.rst
    draw: str  # the call of its ibdiv.report.figures.diagnostic_plots function, e.g. "f(measurements, path)"
    # `dvc plots` of its CSV (dvc.yaml): template, x, y, x_label, y_label, title ("<dataset>: " is prepended)
    plot: dict = field(default_factory=dict)


def _scatter(x_label: str, y_label: str, title: str, **axes) -> dict:
    return {"template": "scatter", "x": "x", "y": "y", **axes, "x_label": x_label, "y_label": y_label, "title": title}


DIAGNOSTIC_FIGURES = (
    DiagnosticFigure("ib_plane", "ib_plane(measurements, classification, path)", _scatter(
        "H(Z) or H_pos (bits)", "D (bits)", "IB plane: D vs H(Z) and H_pos per family, seed, point")),
    DiagnosticFigure("iso_quality", "iso_quality(measurements, path, iso_quality_probe)", _scatter(
        "conditioning accuracy", "D (bits)", "iso-quality: D vs accuracy along the temperature sweep")),
    DiagnosticFigure("allocation", "allocation(measurements, path, clamp_probe)", _scatter(
        "committed fraction at cut", "bits", "allocation: D_exec, D_frozen, D_influence vs committed fraction")),
    DiagnosticFigure("layout_commitment", "layout_commitment(measurements, path, clamp_probe)", _scatter(
        "committed fraction at cut", "layout MI - null (bits)", "layout commitment vs committed fraction")),
    DiagnosticFigure("responses", "responses(measurements, path)", _scatter(
        "noise sigma", "H(Z), D (bits) or accuracy", "responses to condition / codebook noise")),
    DiagnosticFigure("decoupling", "decoupling_matrices(summary, path)", {
        "template": "scatter_jitter", "x": "col", "y": "value", "x_label": "response of", "y_label": "bits",
        "title": "decoupling: responses of D_influence and D_exec to I2 / I3"}),
    DiagnosticFigure("pareto", "pareto(measurements, path, nested_kinds=nested_kinds)", _scatter(
        "conditioning accuracy", "D (bits)", "diversity vs quality per probe (neutral point)")),
)
NAMES = [f.name for f in DIAGNOSTIC_FIGURES]


def call(figure: DiagnosticFigure) -> tuple[str, list[str], dict[str, str]]:
    """A row's `draw` as (function name, positional argument names, {keyword: argument name})."""
    import ast

    node = ast.parse(figure.draw, mode="eval").body
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and all(isinstance(a, ast.Name) for a in [*node.args, *(k.value for k in node.keywords)])):
        raise ValueError(f"figure {figure.name}: draw must be a call f(name, ..., key=name), got {figure.draw!r}")
    names = [a.id for a in node.args] + [k.value.id for k in node.keywords]
    unknown = sorted(set(names) - set(ARGUMENTS))
    if unknown:
        raise ValueError(f"figure {figure.name}: draw passes {unknown}, not among {sorted(ARGUMENTS)}")
    return node.func.id, [a.id for a in node.args], {k.arg: k.value.id for k in node.keywords}
