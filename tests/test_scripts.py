"""The README's two commands: their own help, and nothing written while giving it; the SE calibration
script's table; the schedule replay of a finished run."""
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


def test_replay_schedule_reads_a_snakemake_log_and_replays_its_order():
    """scripts/replay_schedule.py: jobs, dependencies and times from a Snakemake log; on 2 cores, a
    long job started first ends the replay sooner than the same job started last."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_schedule", ROOT / "scripts/replay_schedule.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def job(rule, jobid, start, inputs, outputs):
        return (f"[Tue Dec  8 00:00:{start:02d} 2026]\nlocalrule {rule}:\n    input: {', '.join(inputs)}\n"
                f"    output: {', '.join(outputs)}\n    jobid: {jobid}\n")

    log = (job("a", 1, 0, ["x"], ["a.out"]) + job("b", 2, 0, ["x"], ["b.out"]) + job("c", 3, 4, ["b.out"], ["c.out"])
           + "[Tue Dec  8 00:00:04 2026]\nFinished jobid: 2 (Rule: b)\n"
           + "[Tue Dec  8 00:00:08 2026]\nFinished jobid: 3 (Rule: c)\n"
           + "[Tue Dec  8 00:00:10 2026]\nFinished jobid: 1 (Rule: a)\n")
    jobs = script.parse_log(log)
    assert {j: (job["rule"], job["end"] - job["start"]) for j, job in jobs.items()} == {1: ("a", 10), 2: ("b", 4), 3: ("c", 4)}
    # c reads what b writes: on 3 cores it still waits for b (4 + 4 s), a alone would end at 2
    assert script.replay(jobs, {1: 2.0, 2: 4.0, 3: 4.0}, dict.fromkeys(jobs, 0), {}, cores=3) == 8
    # one long job and four short ones, none waiting on another: 10 s if the long one starts first
    jobs = {j: {"rule": "long" if j == 0 else "short", "input": [], "output": [f"{j}.out"]} for j in range(5)}
    seconds, sizes = {0: 10.0, 1: 2.0, 2: 2.0, 3: 2.0, 4: 2.0}, {0: 0, 1: 1, 2: 1, 3: 1, 4: 1}
    assert script.replay(jobs, seconds, sizes, {"long": 1}, cores=2) == 10
    assert script.replay(jobs, seconds, sizes, {}, cores=2) == 14  # the shorts' larger inputs first
