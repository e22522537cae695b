"""Environment files agree: requirements.txt (the human-edited pins), the hashed locks that
scripts/setup.sh installs, pyproject.toml's dependencies, and the conda file envs/ibdiv.yaml
with its post-deploy script. Reads files only (no install, no network)."""
import hashlib
import re
import tomllib
from importlib import metadata
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")


@dataclass
class Entry:
    requirement: Requirement
    hashes: list[str]
    via: set[str] = field(default_factory=set)  # lock annotations: what needs it ("-r ..." for a root)

    @property
    def version(self) -> Version:
        (spec,) = self.requirement.specifier
        return Version(spec.version)


def parse_lock(path: Path) -> dict[str, Entry]:
    """name -> Entry of a pip-compile style lock: `name==version \\`, indented `--hash=...`
    lines, then indented `# via` annotations."""
    entries: dict[str, Entry] = {}
    current, in_via, statement = None, False, ""
    for line in path.read_text().splitlines():
        if statement or (line and not line[0].isspace() and not line.startswith("#")):
            statement += " " + line.strip()
            if statement.endswith("\\"):  # continued on the next line
                statement = statement[:-1]
                continue
            text = statement.split("#")[0]
            current = Entry(Requirement(text.split(" --")[0].strip()), HASH.findall(text))
            entries[canonicalize_name(current.requirement.name)] = current
            statement, in_via = "", False
        elif current and line[:1].isspace() and line.strip().startswith("#"):
            body = line.strip().lstrip("#").strip()
            if re.match(r"via(\s|$)", body):
                in_via = not body[3:].strip()
                if not in_via:
                    current.via.add(body[3:].strip())
            elif in_via and body:
                current.via.add(body)
        else:  # blank line or top-level comment
            current, in_via = None, False
    return entries


def pins(path: Path) -> dict[str, Requirement]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def exact_version(req: Requirement) -> Version:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, f"{req}: not an exact pin"
    return Version(specs[0].version)


LOCK = parse_lock(ROOT / "requirements.lock")
NODEPS = parse_lock(ROOT / "requirements-nodeps.lock")
ENV = yaml.safe_load((ROOT / "envs/ibdiv.yaml").read_text())


def env_pip_lines() -> list[str]:
    (pip_section,) = [d["pip"] for d in ENV["dependencies"] if isinstance(d, dict)]
    return pip_section


def env_pip_requirements() -> dict[str, Requirement]:
    reqs = {}
    for line in env_pip_lines():
        try:
            req = Requirement(line)
        except InvalidRequirement as e:  # options (-r, -e, --no-deps) and paths are not requirements
            pytest.fail(f"envs/ibdiv.yaml pip line {line!r} is not a requirement: {e}")
        reqs[canonicalize_name(req.name)] = req
    return reqs


def test_parser_reads_the_whole_lock():
    text = (ROOT / "requirements.lock").read_text()
    assert len(LOCK) == len(re.findall(r"^[A-Za-z0-9]", text, flags=re.M)) > 100
    assert LOCK["setuptools"].via == {"torch", "zc-lockfile"}
    assert "-r requirements.txt" in LOCK["numpy"].via


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-nodeps.lock"])
def test_every_lock_entry_is_pinned_and_hashed(lock):
    entries = LOCK if lock == "requirements.lock" else NODEPS
    assert entries
    for name, entry in entries.items():
        exact_version(entry.requirement)
        assert entry.hashes, f"{lock}: {name} has no --hash"
        assert not entry.requirement.url and not entry.requirement.marker, f"{lock}: {name}"


def test_lock_pins_every_requirement_at_its_version():
    for name, req in pins(ROOT / "requirements.txt").items():
        assert name in LOCK, f"{req} is not in requirements.lock: run `bash scripts/lock.sh`"
        locked = LOCK[name].version
        # == 2.13.0 admits the local build 2.13.0+cpu (PEP 440), and nothing else
        assert req.specifier.contains(locked, prereleases=True), f"requirements.txt {req} but lock {locked}"
        assert locked.public == str(exact_version(req)), name


def test_lock_admits_the_cpu_wheel_and_pypis_builds_of_torch():
    """torch is pinned without a local label (== 2.13.0 admits 2.13.0+cpu), with the hash of the
    CPU wheel and of PyPI's cp311 wheels (scripts/lock_torch.py), so an index without the CPU
    wheel still installs; the CUDA libraries PyPI's Linux build needs are a separate lock."""
    torch = LOCK["torch"]
    assert torch.version == Version("2.13.0") and not torch.version.local
    (cpu,) = parse_lock(ROOT / "requirements-torch-cpu.lock").values()  # setup.sh tries it first
    assert cpu.version == Version("2.13.0+cpu") and set(cpu.hashes) <= set(torch.hashes)
    local_wheel = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
    if local_wheel.exists():
        assert hashlib.sha256(local_wheel.read_bytes()).hexdigest() in cpu.hashes
    assert len(torch.hashes) >= 4, "PyPI's wheels (Linux x86_64 / aarch64, macOS, Windows) are missing"
    cuda = [n for n in LOCK if n.startswith("nvidia-") or n == "triton"]
    assert not cuda, f"CUDA packages in requirements.lock (they belong in requirements-cuda.lock): {cuda}"
    closure = parse_lock(ROOT / "requirements-cuda.lock")
    assert {"triton", "nvidia-cudnn-cu13"} <= set(closure) and not set(closure) & set(LOCK)


def test_no_deps_packages_stay_out_of_the_resolved_lock():
    assert set(NODEPS) == {"pip", "animal-mnist"}
    assert not set(NODEPS) & set(LOCK)
    assert "tensorflow" not in LOCK


def test_env_file_has_python_pip_and_only_pinned_requirements():
    assert ENV["channels"] == ["conda-forge"]
    conda = [d for d in ENV["dependencies"] if isinstance(d, str)]
    assert conda == ["python=3.11", "pip"]
    lines = env_pip_lines()
    assert not [line for line in lines if ".." in line or line.startswith("-")]
    reqs = env_pip_requirements()
    assert len(reqs) == len(lines), "a package appears twice"
    for name, req in reqs.items():
        assert not req.url and not req.marker and not req.extras, str(req)
        assert name in LOCK, f"envs/ibdiv.yaml: {req} is not in requirements.lock"
        assert exact_version(req) == Version(LOCK[name].version.public), f"envs/ibdiv.yaml {req}, lock {LOCK[name].version}"


def test_env_file_has_everything_its_packages_need():
    """Closed under dependencies, as the installed metadata of this (locked) environment
    declares them for Linux / Python 3.11 without extras (the lock's `# via` notes cannot
    tell an extra's dependency from a plain one)."""
    names = set(env_pip_requirements())
    missing = {}
    for name in names:
        for line in metadata.requires(name) or []:
            dep = Requirement(line)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                if canonicalize_name(dep.name) not in names:
                    missing.setdefault(canonicalize_name(dep.name), []).append(name)
    assert not missing, f"envs/ibdiv.yaml lacks (package: needed by): {missing}"


def test_pyproject_dependencies_admit_the_lock_and_are_in_the_env_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").exists()
    env = env_pip_requirements()
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in LOCK and req.specifier.contains(LOCK[name].version), f"pyproject {req} vs lock"
        assert name in env, f"pyproject dependency {req.name} missing from envs/ibdiv.yaml"


def test_post_deploy_installs_the_locked_animal_mnist_without_dependencies():
    script = (ROOT / "envs/ibdiv.post-deploy.sh").read_text()
    entry = NODEPS["animal-mnist"]
    assert f"animal-mnist=={entry.version} --hash=sha256:{entry.hashes[0]}" in script
    assert "--no-deps" in script and "--require-hashes" in script


def test_env_file_covers_the_pretrained_extra():
    """The aMUSEd and VQ-Diffusion jobs import diffusers / transformers: a conda run needs them too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = env_pip_requirements()
    for line in project["optional-dependencies"]["pretrained"]:
        req = Requirement(line)
        assert canonicalize_name(req.name) in env, f"envs/ibdiv.yaml lacks the pretrained extra's {req.name}"
