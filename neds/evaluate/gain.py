"""The gain of pretraining as a function of the data: the tables of the experiments with a
``data_axis`` (:attr:`neds.experiments.Experiment.data_axis`), ``scaling`` (the number of
pretraining sessions) and ``finetune_trials`` (the fraction of the new animal's training trials).

Each variant of such an experiment trains at one amount of data (its *level*) and one seed. On
each held-out session, its fine-tuned model is paired with the model trained from scratch at the
same seed: the variant's own from-scratch model where it trains one (``finetune_trials``: the
scratch model sees the same fraction of trials), else that of the experiment's from-scratch-only
variant of the seed (``scaling``: the amount of pretraining data does not change a model that is
not pretrained).

* :func:`paired`: a row per (level, seed, held-out session), each metric of both models.
* :func:`per_seed`: a row per (level, seed, metric): the mean over the held-out sessions (those
  where both models have the metric) of the fine-tuned and the scratch model, and of their
  difference, the gain.
* :func:`over_seeds`: a row per (level, metric): the mean and standard deviation over seeds of
  each, the gain in percent of scratch's mean, and the number of seeds with a positive gain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from neds.evaluate import options
from neds.evaluate.tables import markdown_table
from neds.vocab import METRIC_LABELS, NEDS_FINETUNED, NEDS_SCRATCH, SELECTION_METRICS

__all__ = ["paired", "per_seed", "over_seeds", "gain_markdown"]

SCRATCH_SUFFIX = "_scratch"


def paired(metrics: pd.DataFrame, variants: Mapping[str, Mapping[str, Any]], split: str = "test") -> pd.DataFrame:
    """The experiment's ``metrics.tsv`` (a row per variant, method, split and session) -> a row per
    fine-tuned model on ``split``: variant, level, seed, eid, each selection metric, and
    ``<metric>_scratch``, that of the model trained from scratch it is paired with.

    variants : each variant's {'level': amount of data (None for a from-scratch-only variant),
        'seed': its training seed} (:meth:`neds.experiments.Experiment.data_levels`)
    ValueError for a variant missing from ``variants`` or a fine-tuned model without a
    from-scratch model at its seed.
    """
    df = metrics[metrics["split"] == split]
    unknown = sorted(set(df["variant"]) - set(variants))
    if unknown:
        raise ValueError(f"variants {unknown} are not variants of the experiment; rebuild its metrics.tsv")
    cols = [c for c in SELECTION_METRICS if c in df]
    scratch = df[df["method"] == NEDS_SCRATCH]
    tuned = df[df["method"] == NEDS_FINETUNED].copy()
    if tuned.empty:
        raise ValueError(f"the experiment has no fine-tuned model scored on the {split} trials")
    own = set(scratch["variant"])
    reference_of_seed = {v["seed"]: name for name, v in variants.items() if v["level"] is None}

    def reference(name: str) -> str | None:
        return name if name in own else reference_of_seed.get(variants[name]["seed"])

    tuned["reference"] = tuned["variant"].map(reference)
    orphans = sorted(set(tuned.loc[tuned["reference"].isna(), "variant"]))
    if orphans:
        raise ValueError(f"variants {orphans} have no model trained from scratch at their seed to compare with")
    tuned["level"] = tuned["variant"].map(lambda v: variants[v]["level"])
    tuned["seed"] = tuned["variant"].map(lambda v: variants[v]["seed"])
    ref = scratch[["variant", "eid", *cols]].rename(columns={"variant": "reference"})
    out = tuned.merge(ref, on=["reference", "eid"], how="left", suffixes=("", SCRATCH_SUFFIX))
    missing = out[out[[f"{c}{SCRATCH_SUFFIX}" for c in cols]].isna().all(axis=1)]
    if len(missing):
        pairs = sorted({(r, e) for r, e in zip(missing["reference"], missing["eid"])})
        raise ValueError(f"no from-scratch score for {pairs} (variant, session); rebuild the experiment's metrics.tsv")
    return out[["variant", "level", "seed", "eid", *cols, *(f"{c}{SCRATCH_SUFFIX}" for c in cols)]]


def per_seed(pairs: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired`'s rows -> a row per (level, seed, metric): ``finetuned`` and ``scratch``, the
    means over the held-out sessions where both are scored, ``gain`` their difference, and
    ``sessions``, how many."""
    rows = []
    cols = [c for c in SELECTION_METRICS if c in pairs and f"{c}{SCRATCH_SUFFIX}" in pairs]
    for (level, seed), g in pairs.groupby(["level", "seed"], sort=True):
        for c in cols:
            both = g[[c, f"{c}{SCRATCH_SUFFIX}"]].to_numpy(dtype=float)
            both = both[np.isfinite(both).all(axis=1)]
            if not len(both):
                continue
            tuned, scratch = both.mean(axis=0)
            rows.append(
                {"level": level, "seed": int(seed), "metric": c, "sessions": len(both)}
                | {"finetuned": float(tuned), "scratch": float(scratch), "gain": float(tuned - scratch)}
            )
    return pd.DataFrame(rows, columns=["level", "seed", "metric", "sessions", "finetuned", "scratch", "gain"])


def over_seeds(seeds: pd.DataFrame) -> pd.DataFrame:
    """:func:`per_seed`'s rows -> a row per (level, metric): the mean and s.d. over seeds of the
    fine-tuned and scratch scores and of the gain (``<x>_mean``, ``<x>_sd``; NaN s.d. for one
    seed), ``gain_percent`` (the mean gain in percent of scratch's absolute mean), ``seeds``,
    ``gain_positive_seeds`` (seeds with a gain above 0) and ``sessions`` (the fewest of a seed)."""
    order = {m: i for i, m in enumerate(SELECTION_METRICS)}
    rows = []
    for (level, metric), g in seeds.groupby(["level", "metric"], sort=False):
        row = {"level": level, "metric": metric, "seeds": int(len(g)), "sessions": int(g["sessions"].min())}
        for x in ("finetuned", "scratch", "gain"):
            row.update(options.mean_sd(g[x], x))
        ref = abs(row["scratch_mean"])
        row["gain_percent"] = 100 * row["gain_mean"] / ref if ref > 0 else np.nan
        row["gain_positive_seeds"] = int((g["gain"] > 0).sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_order"] = table["metric"].map(order)
    return table.sort_values(["_order", "level"], ignore_index=True).drop(columns="_order")


def gain_markdown(table: pd.DataFrame, title: str, axis_label: str) -> str:
    """The experiment's page: per metric and amount of data, the fine-tuned and scratch scores and
    the gain (mean ± s.d. over seeds of the mean over held-out sessions, test trials)."""
    lines = [
        f"### Gain of pretraining: {title}",
        "",
        f"Test trials; by {axis_label}: mean ± s.d. over seeds of the mean over held-out sessions. The gain "
        "is fine-tuned minus scratch at the same seed (in brackets, in percent of scratch); the last column "
        "counts the seeds with a positive gain.",
        "",
    ]

    def gain(r):
        cell = options.cell(r["gain_mean"], r["gain_sd"])
        return cell + (f" ({r['gain_percent']:+.1f} %)" if np.isfinite(r["gain_percent"]) else "")

    lines += markdown_table(
        ["metric", axis_label, "fine-tuned", "scratch", "gain", "seeds with gain > 0"],
        (
            [
                METRIC_LABELS.get(r["metric"], r["metric"]),
                f"{r['level']:g}",
                options.cell(r["finetuned_mean"], r["finetuned_sd"]),
                options.cell(r["scratch_mean"], r["scratch_sd"]),
                gain(r),
                f"{r['gain_positive_seeds']} of {r['seeds']}",
            ]
            for _, r in table.iterrows()
        ),
    )
    return "\n".join(lines) + "\n"
