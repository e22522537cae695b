"""Issue 25's "done when", as one command (not a test: ~200 reference units, too slow for CI):

    .venv/bin/python scripts/capped_run.py [--work DIR] [--memory-gib 0.2]

The whole DAG, report included, under a memory cap on user-style checkpoint folders: a tiny aMUSEd
with a released-size 64 x 64 token grid (`amused.save_tiny_checkpoint(grid=64)`) and the tiny
VQ-Diffusion, both written by the libraries' own `save_pretrained`; the pretrained smoke config
otherwise (LlamaGen left out), `resources.memory_gib` = the cap, `sampling.batch_size: auto`.
It checks that the start-up log carries the estimator's numbers (`ibdiv sizing:` lines), that every
sampling and scoring job logged its measured peak beside them, and that results/report.html was
written; it prints those lines and the CPU the whole process tree took, in reference units
(`ibdiv.pipeline.speed`, measured before and after the run).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["Snakefile", "workflow", "src", "profiles", "envs", "scripts", "config.yaml", "config", ".gitignore",
          "pyproject.toml"]
CONFIG = "config/pretrained-smoke.yaml"
REPORT = ["--report", "results/report.html", "--report-stylesheet", "workflow/report/style.css"]


def capped_config(folders: dict, memory_gib: float) -> dict:
    """The pretrained smoke config on the two prebuilt folders, under the cap, batch auto."""
    config = yaml.safe_load((ROOT / CONFIG).read_text())
    del config["datasets"]["llamagen_tiny"], config["families"]["llamagen"]
    config["datasets"]["amused_tiny"]["checkpoint"] = str(folders["amused"])
    config["datasets"]["vq_diffusion_tiny"]["checkpoint"] = str(folders["vq_diffusion"])
    config["resources"] = {"memory_gib": memory_gib}
    config["sampling"]["batch_size"] = "auto"
    return config


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(work: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(work / "src")}  # the copy's own code
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "capped.yaml", *args],
                          cwd=work, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{out[-4000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="an empty folder for the copy (default: a temporary one, kept)")
    parser.add_argument("--memory-gib", type=float, default=0.2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ibdiv.backends import amused, vq_diffusion
    from ibdiv.pipeline.speed import reference_unit_seconds

    work = args.work or Path(tempfile.mkdtemp(prefix="ibdiv_capped_"))
    work.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, work / name)
    unit_before = reference_unit_seconds()
    start = children_cpu()
    folders = {"amused": amused.save_tiny_checkpoint(work / "checkpoints/amused64", grid=64),
               "vq_diffusion": vq_diffusion.save_tiny_checkpoint(work / "checkpoints/vqd")}
    (work / "capped.yaml").write_text(yaml.safe_dump(capped_config(folders, args.memory_gib)))
    log = snakemake(work)
    snakemake(work, *REPORT)
    cpu = children_cpu() - start
    unit = (unit_before + reference_unit_seconds()) / 2

    sizing = [line for line in log.splitlines() if line.startswith("ibdiv sizing:")]
    peaks = sorted(p for p in (work / "results/logs").rglob("*.log") if "peak " in p.read_text())
    report = work / "results/report.html"
    print("\n".join(sizing))
    for path in peaks:
        line = next(ln for ln in path.read_text().splitlines() if "peak " in ln)
        print(f"{path.relative_to(work)}: {line.split(' - ')[-1]}")
    print(f"report: {report} ({report.stat().st_size if report.exists() else 0} bytes)")
    print(f"CPU of the process tree (folders, run, report): {cpu:.0f} CPU-s = {cpu / unit:.0f} reference units "
          f"(unit {unit_before:.2f} before, {unit:.2f} mean)")
    if not (sizing and peaks and report.exists() and report.stat().st_size):
        raise SystemExit("incomplete: estimates, measured peaks or report missing")


if __name__ == "__main__":
    main()
