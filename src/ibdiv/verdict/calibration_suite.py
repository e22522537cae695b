"""The label calibration suite and the SE calibration (DESIGN §5): the constructed generators of
`ibdiv.verdict.calibration` through the real probes, estimands and classification rule.

Apart from the generators themselves so that the families' code (which samples calibration
generators like any other family) does not depend on the estimators and the rule: a job that only
samples must not rerun when the diagnostics change.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ibdiv.measure import diagnostics, entropy, probes
from ibdiv.families.oracle import OracleKnobs, TunableOracle
from ibdiv.verdict.calibration import CalibrationConfig, CalibrationPrior, PatchTokenizer
from ibdiv.verdict.classification import LABELS, classify_rows
from ibdiv.core.seeds import derive_seed


# name -> (the label it is built to have, wiring, sampling temperature against the data's 1.0,
# construction overrides). (e) is a second, independently built world, sampled as its own data.
CASES = {
    "decoupled": ("Decoupled", "decoupled", 1.0, {}),
    "entangled": ("Balanced", "entangled", 1.0, {}),
    "diversity_prioritized": ("Diversity-Prioritized", "entangled", 1.4, {}),
    "compression_prioritized": ("Compression-Prioritized", "entangled", 0.7, {}),
    "balanced": ("Balanced", "entangled", 1.0, {"n_modes": 3, "path_gain": 1.0, "seed": 1}),
    # the decoupled wiring reading its mode from token 0's embedding: Decoupled only when I3 after
    # the cut leaves the path's read alone (DESIGN §4; under the old whole-table I3 it looked entangled)
    "decoupled_embedding_read": ("Decoupled", "decoupled", 1.0, {"mode_read": "embedding"}),
    # the shapes oracle (families.oracle.TunableOracle): a natural process decoupled by construction
    # (I2 tilts its layout, I3 scales its rendering noise) and one whose rendering reads the layout
    # through the code table (entangled by construction; its generated set is its own data: Balanced)
    "oracle_decoupled": ("Decoupled", "decoupled", None, {}),
    "oracle_entangled": ("Balanced", "entangled", None, {}),
}


# Cases whose expected label the token-level estimand does not earn, and why (docs/methods.md,
# "A natural process decoupled by construction"): shown in the confusion table with their true
# label, left out of the >= 95 % requirement until the path column is read where the path lives.
ESTIMAND_OPEN = {
    "oracle_decoupled": "token-level D_path is I(z_i; layout | c): more rendering noise lowers it where "
                        "layouts' per-position supports overlap, although no continuation leaves its layout",
}


def build_case(name: str, cut_fraction: float) -> tuple[CalibrationPrior | TunableOracle, float | None]:
    """The generator of a suite case and its sampling temperature (None: the oracle, which has no
    knobs); a constructed generator's path is decided exactly at the decoupling probe's cut, the
    oracle's at its own (after the layout, whatever the cut)."""
    _, wiring, temperature, overrides = CASES[name]
    if name.startswith("oracle"):
        return TunableOracle(PatchTokenizer(), OracleKnobs(wiring=wiring, **overrides)), temperature
    config = CalibrationConfig(wiring=wiring, **overrides)
    n_path = round(cut_fraction * config.seq_len)
    return CalibrationPrior(CalibrationConfig(**{**config.__dict__, "n_path": n_path})), temperature


def measure_case(name: str, seed: int, measure: dict, probe: dict) -> dict:
    """One replicate of a case through the real probes and estimands: a summary row ready for
    classification.classify_rows, plus the unperturbed split terms (for the SE calibration).

    The data is the generator's own distribution (temperature 1) sampled with another seed, at
    the same N per class as the generated set; the decoupling probe runs at the configured P,
    R, cut and sigma.
    """
    torch.set_num_threads(1)
    model, temperature = build_case(name, probe["cut_fraction"])
    C, K, n = model.config.n_classes, model.config.vocab_size, measure["per_class"]
    knobs = {} if temperature is None else {"temperature": temperature}
    seeds = {part: derive_seed(seed, "calibration", name, part) for part in ("data", "gen", "noise", "measure")}
    rng = np.random.default_rng(seeds["measure"])
    method, n_boot = measure["method"], measure["n_boot"]
    row = {"dataset": "calibration", "family": name, "seed": seed, "point": "neutral",
           "d_iso": math.nan, "d_iso_se": math.nan, "rho_infl": math.nan, "learned_structure_bits": math.nan}
    for part, part_knobs, suffix in (("gen", knobs, ""), ("data", {}, "_data")):
        cache = probes.sample_flat(model, C, n, part_knobs, seeds[part])
        tokens, labels = cache["tokens"].astype(np.int64), cache["labels"]
        # the estimands the rule reads, by the functions flat_estimands uses (same N per class)
        for col, est in (("h_z", entropy.codebook_entropy(tokens, K, method, n_boot, rng, labels=labels).entropy),
                         ("h_pos", entropy.positional_entropy(tokens, K, method, n_boot, rng, labels=labels)),
                         ("d", entropy.conditional_diversity(tokens, labels, K, method, n_boot, rng))):
            row[f"{col}{suffix}"], row[f"{col}{suffix}_se"] = est.value, est.se
    nested = probes.run_probe(model, probe, C, knobs, per_class=n, seed=seeds["gen"], noise_seed=seeds["noise"])
    cells = [{"tokens": nested["tokens"][i], "frozen": nested["frozen"][i]} for i in range(3)]
    responses = diagnostics.decoupling_responses(cells, K, measure, rng)
    for key, value in responses.items():
        for sub, est in (value.items() if key == "unperturbed" else [(key, value)]):
            row[sub], row[f"{sub}_se"] = est["value"], est["se"]
    return row


def run_suite(seeds: int, measure: dict, probe: dict, thresholds: dict, cases=tuple(CASES),
              progress: bool = False) -> pd.DataFrame:
    """Every case over `seeds` replicates, classified by the real rule: one row per case x seed
    with the expected label, the label given and the numbers behind it."""
    jobs = [(name, seed) for name in cases for seed in range(seeds)]
    rows = [measure_case(name, seed, measure, probe) for name, seed in tqdm(jobs, disable=not progress, desc="calibration")]
    summary = pd.DataFrame(rows)
    classified = classify_rows(summary, thresholds)
    classified["expected"] = [CASES[name][0] for name in classified.family]
    keep = [c for c in summary.columns if c.startswith(("d_tot", "d_exec", "d_path", "d_influence", "r_i"))]
    return pd.concat([classified.rename(columns={"family": "case"}), summary[keep]], axis=1)


def confusion(results: pd.DataFrame) -> pd.DataFrame:
    """Share of seeds given each label, per case (rows) and label (columns)."""
    table = pd.crosstab(results.case, results.label, normalize="index").reindex(columns=list(LABELS), fill_value=0.0)
    table.insert(0, "expected", [CASES[c][0] for c in table.index])
    table.insert(1, "n_seeds", results.groupby("case").size().reindex(table.index).to_numpy())
    return table


SE_QUANTITIES = ("d_tot", "d_exec", "d_path", "d_influence", "decoupling_index", "r_i2_path", "r_i3_exec", "eta")


def se_calibration(results: pd.DataFrame, quantities=SE_QUANTITIES) -> pd.DataFrame:
    """Per case and quantity: mean SE over replicates / SD of the estimate over replicates
    (1 = calibrated; DESIGN §5 asks for 0.8-1.2)."""
    rows = []
    for case, group in results.groupby("case"):
        for q in quantities:
            spread = float(group[q].std(ddof=1))
            mean_se = float(group[f"{q}_se"].mean())
            rows.append({"case": case, "quantity": q, "n_replicates": len(group), "mean": float(group[q].mean()),
                         "spread": spread, "mean_se": mean_se, "ratio": mean_se / spread if spread > 0 else math.nan})
    return pd.DataFrame(rows)
