"""The README's two commands: their own help, and nothing written while giving it; the pipeline benchmark's Snakemake patch."""
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


def test_calibrate_se_reports_mean_se_over_spread_per_family_and_estimand():
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("calibrate_se", ROOT / "scripts/calibrate_se.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    names = script.FLAT + script.SPLIT + script.RESPONSES
    reps = pd.DataFrame([{"family": "ar", "replicate": r, **{n: v for n in names}, **{f"{n}_se": 0.5 for n in names}}
                         for r, v in enumerate((1.0, 2.0, 3.0))])
    table = script.se_over_spread(reps).set_index("quantity")
    assert len(table) == len(names) and (table.n_replicates == 3).all()
    assert table.loc["d", "spread"] == 1.0 and table.loc["d", "ratio"] == 0.5 and table.loc["d", "mean"] == 2.0


