"""Calibration figures: the oracle's true split against its nested estimate, and the label
calibration suite (labels per constructed case, SE against replicate spread)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ibdiv.report.figures import style
from ibdiv.report.figures.style import plt
from ibdiv.core.io import save_figure


def truth_vs_estimate(table, path, *, title=None) -> None:
    """Bars of ground truth next to estimates (± 1.96 SE), one group per quantity."""
    quantities = list(dict.fromkeys(table["quantity"]))
    fig, ax = plt.subplots(figsize=(1.6 * len(quantities) + 2, 3.2))
    x = np.arange(len(quantities))
    first = table.drop_duplicates("quantity").set_index("quantity").loc[quantities]
    ax.bar(x - 0.2, first["truth"], 0.4, label="ground truth (large sample)", color="0.7")
    ax.bar(x + 0.2, first["estimate"], 0.4, yerr=1.96 * first["se"], capsize=3, label="nested estimate", color="tab:blue")
    ax.set_xticks(x, quantities)
    ax.set_ylabel("bits")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Result figures. Each takes the pipeline's tables, draws one figure, writes it as PNG and PDF
# next to a CSV of exactly the numbers drawn, and returns that CSV's DataFrame. Error bars are
# 1.96 bootstrap SE; where seeds are averaged, the SE of the mean is sqrt(sum SE^2) / n_seeds.


def calibration_confusion(confusion: pd.DataFrame, se: pd.DataFrame, path) -> pd.DataFrame:
    """Label calibration suite: share of seeds given each label per constructed case (left; the
    expected label outlined), and mean SE / replicate spread per quantity and case (right; 1 =
    calibrated, 0.8-1.2 shaded as the accepted band)."""
    labels = [c for c in confusion.columns if c not in ("expected", "n_seeds")]
    shares = confusion[labels].to_numpy(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    left.imshow(shares, cmap="Greens", vmin=0, vmax=1)
    for i, case in enumerate(confusion.index):
        for j, label in enumerate(labels):
            left.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=7)
            if label == confusion.loc[case, "expected"]:
                left.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, color="k"))
    left.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    left.set_yticks(range(len(confusion)), [f"{c} (n={n})" for c, n in zip(confusion.index, confusion.n_seeds)], fontsize=7)
    left.set_title("share of seeds per label (box: built to be)", fontsize=9)
    for k, (case, g) in enumerate(se.groupby("case", sort=True)):
        right.plot(g["ratio"].to_numpy(), range(len(g)), "o", ms=4, label=case, alpha=0.8)
        quantities = list(g["quantity"])
    right.axvspan(0.8, 1.2, color="0.9", zorder=0)
    right.axvline(1.0, color="0.5", lw=0.8)
    right.set_yticks(range(len(quantities)), quantities, fontsize=7) if len(se) else style.note(right)
    right.set_xlabel("mean SE / spread over replicates", fontsize=8)
    right.legend(fontsize=6, loc="best")
    right.set_title("SE calibration", fontsize=9)
    table = confusion.reset_index().melt(id_vars=["case", "expected", "n_seeds"], value_vars=labels,
                                         var_name="label", value_name="share")
    return style.finish(fig, path, table)
