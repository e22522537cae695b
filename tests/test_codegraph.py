"""The code inputs of every rule are derived from its script's imports (ibdiv.pipeline.codegraph)."""
import json
import re
import subprocess
import sys
from pathlib import Path

from ibdiv.pipeline.codegraph import code_files

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def names(files, root) -> set[str]:
    return {str(f.relative_to(root)) for f in files}


def test_follows_imports_transitively_including_function_level_and_relative_ones(tmp_path):
    src = tmp_path / "src"
    write(src / "ibdiv/__init__.py", "")
    write(src / "ibdiv/a.py", "import numpy\nfrom ibdiv.b import helper\n")
    write(src / "ibdiv/b.py", "def helper():\n    from ibdiv import c  # runs when called\n    return c\n")
    write(src / "ibdiv/c.py", "try:\n    from .sub import e\nexcept ImportError:\n    pass\n")
    write(src / "ibdiv/sub/__init__.py", "")
    write(src / "ibdiv/sub/e.py", "import ibdiv.core.io\n")
    write(src / "ibdiv/core/io.py", "")
    write(src / "ibdiv/unused.py", "")
    write(src / "ibdiv/core/config.py", "")
    write(tmp_path / "script.py", "import os\nfrom ibdiv import a\nx = snakemake.input\n")
    found = names(code_files(tmp_path / "script.py", src), src)
    assert found == {"ibdiv/__init__.py", "ibdiv/a.py", "ibdiv/b.py", "ibdiv/c.py", "ibdiv/sub/__init__.py",
                     "ibdiv/sub/e.py", "ibdiv/core/io.py"}


def test_attributes_imported_from_a_module_are_not_files(tmp_path):
    src = tmp_path / "src"
    write(src / "ibdiv/__init__.py", "")
    write(src / "ibdiv/core/io.py", "def save_npz(): pass\n")
    write(tmp_path / "script.py", "from ibdiv.core.io import save_npz\n")
    assert names(code_files(tmp_path / "script.py", src), src) == {"ibdiv/__init__.py", "ibdiv/core/io.py"}


def test_no_job_runs_the_config_validation():
    """Editing the schema validation must not make any job's code look changed."""
    for script in (ROOT / "workflow/scripts").glob("*.py"):
        files = names(code_files(script, SRC), SRC)
        assert "ibdiv/core/config.py" not in files, script.name
        assert "ibdiv/core/io.py" in files and "ibdiv/core/runlog.py" in files, script.name  # every adapter logs and writes


def test_a_file_importing_the_registry_depends_on_every_family_module_it_names():
    """The registry imports a family's module by name (importlib) when the family is first used:
    no import statement names ar.py, mim.py, ..., yet a job that loads a family runs them."""
    from ibdiv.core import registry

    for script in ("sample_baseline", "measure_probes", "train_prior"):
        found = names(code_files(ROOT / f"workflow/scripts/{script}.py", SRC), SRC)
        for fam in registry.BUILT_IN.values():
            module = fam.implementation.partition(":")[0].replace(".", "/") + ".py"
            # a pretrained backend is no code input of the in-house jobs: editing it retrains nothing
            assert (module in found) == (fam.model != "checkpoint"), (script, fam.name)


def test_lazy_family_modules_are_read_from_the_registry_source(tmp_path):
    src = tmp_path / "src"
    write(src / "ibdiv/__init__.py", "")
    write(src / "ibdiv/core/registry.py", 'import importlib\n_BUILT_IN = (Family("x", "ibdiv.fam_x", learned=True),\n'
                                     '    Family("y", implementation="ibdiv.fam_y:Obj"),\n'
                                     '    Family("z", "ibdiv.backend_z", model="checkpoint"))\n')
    write(src / "ibdiv/backend_z.py", "")  # a pretrained backend: not followed
    write(src / "ibdiv/fam_x.py", "from ibdiv import helper\n")
    write(src / "ibdiv/fam_y.py", "")
    write(src / "ibdiv/helper.py", "")
    write(tmp_path / "script.py", "from ibdiv.core import registry\n")
    assert names(code_files(tmp_path / "script.py", src), src) == {
        "ibdiv/__init__.py", "ibdiv/core/registry.py", "ibdiv/fam_x.py", "ibdiv/fam_y.py", "ibdiv/helper.py"}


def test_the_static_graph_covers_what_python_imports():
    """Importing each package module loads no package file the static graph missed (a dynamic
    import, e.g. through importlib, would go unseen by ast and be an undeclared input). Where the
    module brings in the registry, every built-in family is loaded through it too (its modules
    are imported lazily, by name), so the registry's dynamic imports are checked as well."""
    probe = """
import importlib, json, sys
loaded = {}
for name in sys.argv[1:]:
    for key in [k for k in sys.modules if k == "ibdiv" or k.startswith("ibdiv.")]:
        del sys.modules[key]
    importlib.import_module(name)
    if "ibdiv.core.registry" in sys.modules:
        registry = sys.modules["ibdiv.core.registry"]
        for family, traits in registry.BUILT_IN.items():
            if traits.model != "checkpoint":  # pretrained backends are not followed (ibdiv.pipeline.codegraph)
                registry.implementation(family)
    loaded[name] = sorted(sys.modules[k].__file__ for k in sys.modules if k == "ibdiv" or k.startswith("ibdiv."))
print(json.dumps(loaded))
"""
    modules = [f"ibdiv.{p.stem}" for p in sorted((SRC / "ibdiv").glob("*.py")) if p.stem != "__init__"]
    out = subprocess.run([sys.executable, "-c", probe, *modules], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "MPLBACKEND": "Agg"})
    for name, files in json.loads(out.stdout).items():
        module_file = SRC / (name.replace(".", "/") + ".py")
        static = {module_file, *code_files(module_file, SRC), SRC / "ibdiv/__init__.py"}
        assert {Path(f) for f in files} <= static, name


def test_each_rule_declares_the_code_of_the_script_it_runs():
    """script_inputs("x") and `script: "../scripts/x.py"` name the same adapter in every rule, the
    rules a `for` loop generates (`rule:` with a `name:`, e.g. sample_run_<family>_<point>) included."""
    rules = 0
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=\S)", smk.read_text()):  # a rule, or a loop that generates one
            rule = re.match(r"rule (\w+):", block) or re.search(r'^\s+rule:\n\s+name:\n\s+f?"(\w+)', block, re.M)
            if rule:
                declared = re.findall(r'script_inputs\("(\w+)"\)', block)
                run = re.findall(r'^\s+script:\n\s+"\.\./scripts/(\w+)\.py"', block, re.M)
                assert declared == run and len(run) == 1, (rule[1], declared, run)
                rules += 1
    assert rules >= 20
