"""Which files of the `ibdiv` package a script runs: its imports, followed transitively.

The Snakefile declares these files as each rule's code inputs, so the inputs are derived from
the code and cannot drift from it. The files are read with `ast`, never imported: building
the DAG must not load torch. Standard library only (the Snakefile imports this module).

Every import statement counts, including those inside functions: a function-level import
runs whenever the function does, and a job that calls it depends on that module's code.

One import is not a statement: the registry (ibdiv/core/registry.py) imports each family's module by
its name, with importlib, when the family is first used. A file that imports the registry is
therefore taken to import every module its built-in families name (`Family(name, "ibdiv.families.ar", ...)`
read from the registry's source): a job runs only some families, but which ones is config, not
code, and a job that could load a family's module depends on it. A family a config brings itself
(`families.<name>.implementation`) lives outside the package and is not followed. Neither is a
pretrained backend (`model="checkpoint"`, DESIGN §12): the in-house jobs never load one, so editing
a backend must not retrain the in-house priors; a rule that runs a backend declares its module
itself (`CHECKPOINT_MODEL`).
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "ibdiv"
REGISTRY = ("ibdiv", "core", "registry.py")  # imports its families' modules lazily, by name (see above)
FAMILY_CALL = "Family"  # registry.Family(name, implementation, ...): the implementation is a module path
CHECKPOINT_MODEL = "checkpoint"  # Family(..., model="checkpoint"): a pretrained backend, not followed


def code_files(script, source_root) -> list[Path]:
    """The package's files that `script` imports, directly or through other package files,
    sorted. `source_root` is the folder holding the package (src/)."""
    source_root = Path(source_root).resolve()
    seen: set[Path] = set()
    pending = set(_package_files(_imported_names(Path(script).resolve(), source_root), source_root))
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending |= _package_files(_imported_names(path, source_root), source_root)
    return sorted(seen)


@lru_cache(maxsize=None)
def _imported_names(path: Path, source_root: Path) -> frozenset[str]:
    """Dotted names a file imports. For `from a import b` both `a` and `a.b` (b may be a
    submodule or a plain attribute; _package_files keeps only what exists as a file)."""
    names = set()
    for node in _statements(ast.parse(path.read_bytes(), filename=str(path)).body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, path, source_root)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    if path == source_root.joinpath(*REGISTRY):
        names.update(_registry_family_modules(path))
    return frozenset(names)


def _registry_family_modules(path: Path) -> set[str]:
    """The modules the registry's built-in families name: the second argument (or the
    `implementation` keyword) of each `Family(...)` call, up to a ":" (an object in the module);
    not those of pretrained backends (see the module docstring)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == FAMILY_CALL:
            if any(k.arg == "model" and getattr(k.value, "value", None) == CHECKPOINT_MODEL for k in node.keywords):
                continue
            given = [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "implementation")]
            modules.update(a.value.partition(":")[0] for a in given
                           if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return modules


def _statements(body):
    """Every statement, nested ones included (imports are statements: walking only these is
    ten times faster than ast.walk over every expression)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _statements(getattr(node, field, ()))
        for case in getattr(node, "cases", ()):  # match statements
            yield from _statements(case.body)


def _absolute(node: ast.ImportFrom, path: Path, source_root: Path) -> str:
    """The module an ImportFrom reads, with relative imports resolved against the file."""
    if not node.level:
        return node.module or ""
    try:
        package = list(path.relative_to(source_root).parent.parts)
    except ValueError:  # a relative import outside the source tree reaches no package file
        return ""
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


@lru_cache(maxsize=None)
def _package_files(names: frozenset[str], source_root: Path) -> frozenset[Path]:
    """The files that importing these names runs, package __init__ files included. Cached: the
    rules' scripts share most of their imports, and each lookup stats two candidate files per
    dotted prefix (585 calls, 0.84 of the default DAG's 14.5 profiled dry-run seconds)."""
    files = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != PACKAGE:
            continue
        for depth in range(1, len(parts) + 1):
            stem = source_root.joinpath(*parts[:depth])
            for candidate in (stem / "__init__.py", stem.with_suffix(".py")):
                if candidate.is_file():
                    files.add(candidate)
    return frozenset(files)
