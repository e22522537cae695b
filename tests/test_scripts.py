"""The README's two commands: their own help, and nothing written while giving it."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_main_help_prints_ibdivs_usage_once_and_writes_nothing(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts/main.sh", tmp_path / "scripts/main.sh")
    proc = subprocess.run(["bash", "scripts/main.sh", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("usage: bash scripts/main.sh") == 1 and "snakemake [" not in out.lower()
    for what in ("scripts/test.sh", "config/smoke.yaml", "results/logs/main.log", "results/report.html"):
        assert what in out, what
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scripts"]  # no .venv, no results/logs/main.log
