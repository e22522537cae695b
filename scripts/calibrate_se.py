"""SE calibration on the trained families themselves (DESIGN §5; issue 22): are the bootstrap SEs
the rule reads right for real models, not only for the suite's constructed generators?

    python scripts/calibrate_se.py [--workspace DIR] [--configfile FILE] [--dataset shapes]
                                   [--replicates 20] [--point neutral] [--out FILE]

For every in-house family the DAG trained (a `model.pt` under the workspace's
results/<dataset>/priors/<family>/seed<first seed>/), the model is held fixed and its flat set (at
`measure.per_class`) and the configured decoupling probe (P, R, cut, σ) are sampled again with
`--replicates` independent sampling seeds (≥ 20). Each replicate is measured by the pipeline's
functions (diagnostics.per_position_estimands, diagnostics.decoupling_responses); per family and
estimand the script prints and writes the mean bootstrap SE over replicates, the SD of the
estimate over replicates (its spread) and their ratio (1 = calibrated; the suite asks 0.8–1.2).

Not in the DAG: at config.yaml's design it costs about (1 + 3 × P·R / per_class) baseline
samplings per replicate and family, hours on two cores. Run it on a finished workspace, e.g. the
smoke run's (`--configfile config/smoke.yaml`), or on the default run's where time allows.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ibdiv.core import registry  # noqa: E402
from ibdiv.core.seeds import derive_seed  # noqa: E402
from ibdiv.data import tokens  # noqa: E402
from ibdiv.measure import diagnostics, probes  # noqa: E402

# what is calibrated: flat estimands, the unperturbed split and the decoupling matrix
FLAT = ("h_z", "h_pos", "d")
SPLIT = ("d_tot", "d_exec", "d_path", "d_influence")
RESPONSES = ("r_i2_path", "r_i2_exec", "r_i3_path", "r_i3_exec", "decoupling_index")


def trained_families(workspace: Path, config: dict, dataset: str) -> dict[str, Path]:
    """{family: model.pt} of every configured family the DAG trained, at the first seed."""
    seed = config["seeds"][0]
    out = {}
    for family in config["families"]:
        path = workspace / f"results/{dataset}/priors/{family}/seed{seed}/model.pt"
        if registry.family(family).model == "prior" and path.exists():
            out[family] = path
    return out


def measure_replicate(model, n_classes: int, knobs: dict, config: dict, probe: dict, seed: int,
                      perturbable: bool = True) -> dict:
    """One sampling seed: the flat estimands and (for a family the probes can perturb) the
    decoupling probe's split and responses, each {name: value} and {name_se: SE}."""
    measure, K = config["measure"], model.vocab_size
    rng = np.random.default_rng(derive_seed(seed, "measure"))
    flat = probes.sample_flat(model, n_classes, measure["per_class"], knobs, seed)
    row = {}
    values = diagnostics.per_position_estimands(flat["tokens"].astype(np.int64), flat["labels"], K, measure, rng)
    for name in FLAT:
        row[name], row[f"{name}_se"] = values[name]["value"], values[name]["se"]
    if not perturbable:  # no condition or code table to perturb (the independent count table)
        return row
    nested = probes.run_probe(model, probe, n_classes, knobs, per_class=measure["per_class"], seed=seed,
                              noise_seed=derive_seed(seed, "noise"))
    cells = [{"tokens": nested["tokens"][i].astype(np.int64), "frozen": nested["frozen"][i]} for i in range(3)]
    responses = diagnostics.decoupling_responses(cells, K, measure, rng)
    for name in RESPONSES:
        row[name], row[f"{name}_se"] = responses[name]["value"], responses[name]["se"]
    for name in SPLIT:
        row[name], row[f"{name}_se"] = responses["unperturbed"][name]["value"], responses["unperturbed"][name]["se"]
    return row


def se_over_spread(replicates: pd.DataFrame) -> pd.DataFrame:
    """Per family and estimand: mean, spread (SD over replicates), mean SE, mean SE / spread."""
    rows = []
    for family, group in replicates.groupby("family"):
        for name in [n for n in FLAT + SPLIT + RESPONSES if n in group and group[n].notna().any()]:
            spread = float(group[name].std(ddof=1))
            mean_se = float(group[f"{name}_se"].mean())
            rows.append({"family": family, "quantity": name, "n_replicates": len(group), "mean": float(group[name].mean()),
                         "spread": spread, "mean_se": mean_se, "ratio": mean_se / spread if spread > 0 else np.nan})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=ROOT, help="a finished run's checkout (default: this one)")
    parser.add_argument("--configfile", type=Path, default=None, help="its config file (default: the workspace's config.yaml)")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--replicates", type=int, default=20, help="independent sampling seeds per family (>= 20)")
    parser.add_argument("--point", default="neutral", help="operating point whose knobs are sampled")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the ratios (default: WORKSPACE/results/calibration/se_families.csv)")
    args = parser.parse_args(argv)
    if args.replicates < 2:
        parser.error("--replicates must be at least 2 (20 or more for a usable ratio)")
    config = yaml.safe_load((args.configfile or args.workspace / "config.yaml").read_text())
    registry.declare(config)
    probe = config["probes"][registry.probe_of_kind(config["probes"], "decoupling")]
    n_classes = int(tokens.load_token_cache(args.workspace / f"results/{args.dataset}/tokens.npz", "heldout").labels.max()) + 1
    families = trained_families(args.workspace, config, args.dataset)
    if not families:
        print(f"no trained family under {args.workspace}/results/{args.dataset}/priors", file=sys.stderr)
        return 1
    rows = []
    for family, path in families.items():
        model = probes.load_sampler(family, path)
        knobs = config["families"][family][args.point]
        for r in range(args.replicates):
            seed = derive_seed(config["seed"], args.dataset, family, "calibrate_se", r)
            rows.append({"family": family, "replicate": r,
                         **measure_replicate(model, n_classes, knobs, config, probe, seed, registry.family(family).perturbable)})
        print(f"{family}: {args.replicates} replicates measured", file=sys.stderr)
    table = se_over_spread(pd.DataFrame(rows))
    out = args.out or args.workspace / "results/calibration/se_families.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4g")
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.to_string(index=False))
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
