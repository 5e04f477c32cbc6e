"""Tables of the experiments that compare options over seeds (the loss balances, the fine-tuning
recipes): each variant ``<option>_seed_<seed>`` is scored per held-out session on the
validation and the test trials; per seed, the scores are averaged over the sessions, then
summarised over seeds."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from neds.experiments import option_seed
from neds.vocab import SELECTION_METRICS

__all__ = ["tagged", "per_seed", "over_seeds", "mean_sd", "cell"]


def tagged(metrics: pd.DataFrame, options: Iterable[str], key: str) -> pd.DataFrame:
    """A copy of ``metrics`` (a row per variant, ...) with each variant's option in column ``key``
    and its seed in ``seed`` (:func:`neds.experiments.option_seed`; ValueError for a variant not
    named ``<option>_seed_<seed>`` with an option of ``options``)."""
    options = list(options)
    df = metrics.copy()
    parsed = [option_seed(v, options) for v in df["variant"]]
    df[key], df["seed"] = [o for o, _ in parsed], [s for _, s in parsed]
    return df


def per_seed(metrics: pd.DataFrame, options: Iterable[str], key: str) -> pd.DataFrame:
    """An experiment's ``metrics.tsv`` (a row per variant, method, split and session) -> a row per
    (option, seed, split, method), the option in column ``key``: each selection metric's mean
    over the held-out sessions, and their mean, ``score``."""
    df = tagged(metrics, options, key)
    cols = [c for c in SELECTION_METRICS if c in df]
    out = df.groupby([key, "seed", "split", "method"], sort=False)[cols].mean().reset_index()
    out["score"] = out[cols].mean(axis=1, skipna=False)  # a method lacking a metric has no score
    return out


def over_seeds(seeds: pd.DataFrame, key: str, split: str = "test") -> pd.DataFrame:
    """A row per (option, method) of :func:`per_seed`'s ``split`` rows: each selection metric's
    mean and standard deviation over seeds (``<metric>_mean``, ``<metric>_sd``; NaN for one
    seed) and the number of seeds."""
    rows = []
    test = seeds[seeds["split"] == split]
    cols = [c for c in SELECTION_METRICS if c in test]
    for (option, method), g in test.groupby([key, "method"], sort=False):
        row = {key: option, "method": method, "seeds": int(g["seed"].nunique())}
        for c in cols:
            row.update(mean_sd(g[c], c))
        rows.append(row)
    return pd.DataFrame(rows)


def mean_sd(values: pd.Series, name: str) -> dict[str, float]:
    """``{<name>_mean, <name>_sd}`` of ``values`` (one per seed): the mean and the sample standard
    deviation, NaN for a single value."""
    return {
        f"{name}_mean": float(values.mean()),
        f"{name}_sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
    }


def cell(mean: float, sd: float = np.nan) -> str:
    """A table cell: mean ± s.d. ('–' without a mean, the mean alone without an s.d.)."""
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else "")
