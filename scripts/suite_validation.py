"""Run the label calibration suite as the DAG's label_calibration job runs it (config.yaml's design,
`calibration.seeds` seeds per case, `calibration.se_replicates` of the decoupled case) and write its
rows, confusion table and SE calibration to --out, with the CPU seconds it took. The cases can be
split over processes (--cases) and the rows joined afterwards (--join). Replaces the issue-22
prototype scripts/joint_path_information.py: the joint path column is in the library
(ibdiv.measure.joint, verdict.calibration.continuation_log_likelihood, calibration_suite).

    PYTHONPATH=src .venv/bin/python scripts/suite_validation.py --out results/suite_a --cases decoupled oracle_decoupled
    PYTHONPATH=src .venv/bin/python scripts/suite_validation.py --join results/suite_a results/suite_b --out results/suite
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ibdiv.core.config import load_config
from ibdiv.verdict import calibration_suite

def run(config: dict, cases: list[str], seeds: int | None) -> pd.DataFrame:
    args = (config["measure"], config["probes"]["decoupling"], config["classification"])
    parts = []
    for case in cases:
        n = seeds or config["calibration"]["se_replicates" if case == "decoupled" else "seeds"]
        start = time.process_time()
        parts.append(calibration_suite.run_suite(n, *args, cases=(case,)))
        print(f"{case}: {n} replicates, {time.process_time() - start:.1f} CPU-s", flush=True)
    return pd.concat(parts, ignore_index=True)


def validation_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per case: the expected label and the share of seeds given it; Δ on the path column that decided
    (mean, mean paired SE, range) with the largest Δ + 2 SE; the token-level Δ beside it; and, for the
    record, Δ on relative responses (joint ΔI / I(none) beside the token-level ΔD_exec / D_exec(none),
    the prototype's joint_relative)."""
    from ibdiv.measure.decoupling import decoupling_index

    r = results
    rel = decoupling_index(r.r_i2_path / r.joint_d_path, r.token_r_i2_exec / r.d_exec,
                           r.r_i3_path / r.joint_d_path, r.token_r_i3_exec / r.d_exec) if "joint_d_path" in r else np.nan
    r = r.assign(relative_delta=rel, hit=r.label == r.expected, top=r.decoupling_index + 2 * r.decoupling_index_se)
    g = r.groupby("case", sort=False)
    table = pd.DataFrame({
        "expected": g.expected.first(), "n": g.size(), "share_expected": g.hit.mean(),
        "decoupled_share": g.label.apply(lambda x: (x == "Decoupled").mean()), "path_column": g.path_column.first(),
        "delta": g.decoupling_index.mean(), "delta_se": g.decoupling_index_se.mean(),
        "delta_min": g.decoupling_index.min(), "delta_max": g.decoupling_index.max(), "delta_plus_2se_max": g.top.max(),
        "token_delta": g.token_decoupling_index.mean() if "token_decoupling_index" in r else np.nan,
        "relative_delta": g.relative_delta.mean(),
        **{q: g[q].mean() for q in ("r_i2_path", "r_i2_exec", "r_i3_path", "r_i3_exec", "eta")}})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--cases", nargs="+", default=list(calibration_suite.CASES))
    parser.add_argument("--seeds", type=int, help="override the configured replicates of every case")
    parser.add_argument("--join", nargs="+", help="join the results.csv of these --out folders instead of running")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if args.join:
        results = pd.concat([pd.read_csv(Path(d) / "results.csv") for d in args.join], ignore_index=True)
    else:
        results = run(load_config(args.config), args.cases, args.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False, float_format="%.6g")
    confusion = calibration_suite.confusion(results)
    confusion.to_csv(out / "confusion.csv", float_format="%.4g")
    calibration_suite.se_calibration(results).to_csv(out / "se_calibration.csv", index=False, float_format="%.4g")
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(confusion.to_string())
        table = validation_table(results)
        table.to_csv(out / "validation.csv", float_format="%.4g")
        print(table.to_string())


if __name__ == "__main__":
    main()
