"""Coarse-alphabet validation (DESIGN §13): do the labels and the family orderings at each K'
agree with the full codebook's? Reads a finished workspace's tables; computes nothing new.

    python scripts/compare_alphabets.py [WORKSPACE]      # default: this checkout

Per dataset it prints (1) each family x seed x point's label at full K and at every K', with
the rows where they differ; (2) per seed and point, the order of the families by delta, eta and
the decoupling index Delta at full K and at K' (the learned families and the independent table;
the oracle has no codebook of its own to compare), and which pairs of families that differ by
more than 2 SE at full K keep the sign of their difference at K'; (3) the oracle's estimated-vs-true split at
every alphabet (relative error), where the dataset has one.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ORDERED = ["delta", "eta", "decoupling_index"]


def label_agreement(classification: pd.DataFrame) -> pd.DataFrame:
    """One row per family x seed x point: the label per alphabet, and whether all agree."""
    table = classification.pivot_table(index=["family", "seed", "point"], columns="coarse_k", values="label",
                                       aggfunc="first")
    table.columns = [f"K'={k}" if k else "full K" for k in table.columns]
    table["agree"] = table.nunique(axis=1) == 1
    return table


def orderings(classification: pd.DataFrame) -> pd.DataFrame:
    """Per seed, point and quantity: the families from highest to lowest at each alphabet."""
    rows = []
    generators = classification[classification["family"] != "oracle"]
    for (seed, point, k), group in generators.groupby(["seed", "point", "coarse_k"]):
        for quantity in ORDERED:
            order = group.dropna(subset=[quantity]).sort_values(quantity, ascending=False)
            rows.append({"seed": seed, "point": point, "quantity": quantity, "coarse_k": k,
                         "order": " > ".join(order["family"])})
    table = pd.DataFrame(rows).pivot_table(index=["seed", "point", "quantity"], columns="coarse_k",
                                           values="order", aggfunc="first")
    table["same"] = table.nunique(axis=1) == 1
    return table


def pair_signs(classification: pd.DataFrame, margin: float = 2.0) -> pd.DataFrame:
    """Every pair of families whose difference at full K is beyond `margin` SEs (same seed, point,
    quantity): its sign at each K' and whether it is beyond `margin` SEs there too. A raw order
    also flips where two families are within noise; a resolved pair should not."""
    rows = []
    generators = classification[classification["family"] != "oracle"].set_index(["seed", "point", "family", "coarse_k"])
    coarse = sorted(k for k in classification["coarse_k"].unique() if k)
    for (seed, point), group in generators.groupby(level=["seed", "point"]):
        families = sorted(group.index.get_level_values("family").unique())
        for quantity in ORDERED:
            def diff(a, b, k):
                x, y = group.loc[(seed, point, a, k)], group.loc[(seed, point, b, k)]
                return x[quantity] - y[quantity], (x[f"{quantity}_se"] ** 2 + y[f"{quantity}_se"] ** 2) ** 0.5
            for i, a in enumerate(families):
                for b in families[i + 1:]:
                    full, se = diff(a, b, 0)
                    if not abs(full) > margin * se:  # NaN (no Delta for the independent table) skips too
                        continue
                    for k in coarse:
                        coarse_diff, coarse_se = diff(a, b, k)
                        rows.append({"seed": seed, "point": point, "quantity": quantity, "pair": f"{a} vs {b}",
                                     "full K": round(full, 3), "coarse_k": k, "K'": round(coarse_diff, 3),
                                     "same sign": bool(full * coarse_diff > 0),
                                     "resolved at K'": bool(abs(coarse_diff) > margin * coarse_se)})
    return pd.DataFrame(rows)


def oracle_errors(validation: pd.DataFrame) -> pd.DataFrame:
    """Mean relative error of the nested estimate against the oracle's truth, per alphabet."""
    split = validation[validation["quantity"].isin(["d_exec", "d_path", "d_tot"])]
    return split.groupby(["coarse_k", "quantity"])["relative_error"].agg(["mean", "min", "max"]).unstack("quantity")


def main(workspace: Path) -> None:
    pd.set_option("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 200)
    for folder in sorted((workspace / "results/tables").iterdir()):
        classification = pd.read_csv(folder / "classification.csv")
        if classification["coarse_k"].nunique() < 2:
            print(f"== {folder.name}: no coarse alphabet measured (measure.coarse_k empty)")
            continue
        labels = label_agreement(classification)
        print(f"== {folder.name}: labels agree in {int(labels['agree'].sum())} of {len(labels)} rows")
        print(labels[~labels["agree"]].to_string() if (~labels["agree"]).any() else "(every row agrees)")
        order = orderings(classification)
        print(f"\nfamily orderings: the same in {int(order['same'].sum())} of {len(order)}")
        print(order[~order["same"]].to_string() if (~order["same"]).any() else "(every ordering agrees)")
        pairs = pair_signs(classification)
        flipped, kept = pairs[~pairs["same sign"]], pairs["same sign"]
        still = int((kept & pairs["resolved at K'"]).sum())
        print(f"\npairs resolved at full K (|difference| > 2 SE): {len(pairs)}; same sign at K': "
              f"{int(kept.sum())}, of which still resolved: {still}")
        print(flipped.to_string(index=False) if len(flipped) else "(no resolved pair changes sign)")
        if (folder / "oracle_validation.csv").exists():
            print("\noracle: relative error of the nested estimate against the truth (mean, min, max over cuts)")
            print(oracle_errors(pd.read_csv(folder / "oracle_validation.csv")).round(4).to_string())
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
