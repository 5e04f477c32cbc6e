"""The fine-tuning-recipe experiment's tables (``snakemake finetune_recipe``): which recipe of
``experiments.finetune_recipes`` is chosen on the validation trials, and how each fine-tuned
model compares with the model trained from scratch on the test trials.

Every recipe variant (``<recipe>_seed_<seed>``) fine-tunes the main pretrained model on each
held-out session with the recipe; the ``scratch_seed_<seed>`` variants train the same model
from random weights with the same budget. All are scored on the validation and the test trials.

* The **choice** reads validation trials only: per recipe, the mean over seeds of the fine-tuned
  model's selection score (the mean of bits per spike and the four decoding scores), averaged
  over the held-out sessions.
* The **comparison** reads test trials: per recipe, each metric's mean and standard deviation
  over seeds (of the mean over held-out sessions), the scratch model's, and the gain of
  pretraining (fine-tuned minus scratch, and in percent of scratch).
* The **sessions** table checks each held-out session: per recipe and metric, the mean over seeds
  of the paired (same seed) difference fine-tuned minus scratch, its standard deviation over
  seeds, and whether the fine-tuned model is worse by more than that spread.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from neds.evaluate import options
from neds.evaluate.tables import markdown_table
from neds.experiments import SCRATCH_VARIANT
from neds.vocab import NEDS_FINETUNED, NEDS_SCRATCH, SELECTION_METRICS

__all__ = ["per_seed", "selection", "comparison", "sessions", "recipe_markdown"]

KEY = "recipe"


def per_seed(metrics: pd.DataFrame, recipes: Iterable[str]) -> pd.DataFrame:
    """``metrics.tsv`` -> a row per (recipe, seed, split, method), ``scratch`` among the recipes."""
    return options.per_seed(metrics, [*recipes, SCRATCH_VARIANT], KEY)


def selection(seeds: pd.DataFrame) -> pd.DataFrame:
    """A row per recipe, best first: the mean over seeds of the fine-tuned model's validation
    metrics and selection score (``val_score``, the criterion)."""
    val = seeds[(seeds["split"] == "val") & (seeds["method"] == NEDS_FINETUNED)]
    if val.empty:
        raise ValueError("the fine-tuning-recipe experiment has no validation rows; run `snakemake finetune_recipe`")
    cols = [c for c in (*SELECTION_METRICS, "score") if c in val]
    out = val.groupby(KEY, sort=False).agg(seeds=("seed", "nunique"), **{c: (c, "mean") for c in cols})
    out = out.rename(columns={"score": "val_score"}).reset_index()
    return out.sort_values("val_score", ascending=False, na_position="last", ignore_index=True)


def comparison(seeds: pd.DataFrame) -> pd.DataFrame:
    """Test trials: a row per recipe (fine-tuned) and one for ``scratch``, each metric's mean and
    s.d. over seeds; the recipes' rows add ``<metric>_gain`` (minus scratch) and
    ``<metric>_gain_percent`` (of scratch's absolute mean)."""
    table = options.over_seeds(seeds, KEY)
    table = table[(table["method"] == NEDS_FINETUNED) | (table[KEY] == SCRATCH_VARIANT)].reset_index(drop=True)
    scratch = table[table[KEY] == SCRATCH_VARIANT]
    for c in (c for c in SELECTION_METRICS if f"{c}_mean" in table):
        ref = float(scratch[f"{c}_mean"].iloc[0]) if len(scratch) else np.nan
        gain = table[f"{c}_mean"] - ref
        table[f"{c}_gain"] = gain.where(table[KEY] != SCRATCH_VARIANT)
        table[f"{c}_gain_percent"] = (100 * gain / abs(ref)).where(table[KEY] != SCRATCH_VARIANT) if ref else np.nan
    return table


def sessions(metrics: pd.DataFrame, recipes: Iterable[str]) -> pd.DataFrame:
    """Test trials, per recipe, held-out session and metric: the mean over seeds of the paired
    difference fine-tuned minus scratch (``difference``), its s.d. over seeds (``spread``) and
    ``worse_than_spread`` (the difference below minus the spread; None with one seed)."""
    recipes = list(recipes)
    df = options.tagged(metrics[metrics["split"] == "test"], [*recipes, SCRATCH_VARIANT], KEY)
    cols = [c for c in SELECTION_METRICS if c in df]
    scratch = df[(df[KEY] == SCRATCH_VARIANT) & (df["method"] == NEDS_SCRATCH)]
    tuned = df[df[KEY].isin(recipes) & (df["method"] == NEDS_FINETUNED)]
    paired = tuned.merge(scratch[["seed", "eid", *cols]], on=["seed", "eid"], suffixes=("", "_scratch"))
    rows = []
    for recipe in recipes:
        mine = paired[paired[KEY] == recipe]
        for eid, g in sorted(mine.groupby("eid"), key=lambda item: item[0]):
            for c in cols:
                diffs = (g[c] - g[f"{c}_scratch"]).to_numpy(dtype=float)
                diffs = diffs[np.isfinite(diffs)]
                if diffs.size == 0:
                    continue
                spread = float(diffs.std(ddof=1)) if diffs.size > 1 else np.nan
                mean = float(diffs.mean())
                rows.append(
                    {KEY: recipe, "eid": eid, "metric": c, "seeds": int(diffs.size), "difference": mean}
                    | {"spread": spread, "worse_than_spread": bool(mean < -spread) if np.isfinite(spread) else None}
                )
    return pd.DataFrame(rows)


def recipe_markdown(chosen: pd.DataFrame, table: pd.DataFrame, per_session: pd.DataFrame) -> str:
    """The experiment's page: the choice on validation trials, the test comparison with scratch,
    and the held-out sessions where fine-tuning is worse than scratch by more than the seeds' spread."""
    cols = [c for c in SELECTION_METRICS if c in chosen]
    lines = [
        "### Fine-tuning recipe",
        "",
        "Chosen on the validation trials (fine-tuned model, mean over seeds of the mean over held-out sessions):",
        "",
    ]
    lines += markdown_table(
        [KEY, "seeds", *cols, "score"],
        (
            [r[KEY], r["seeds"], *(options.cell(r[c]) for c in cols), options.cell(r["val_score"])]
            for _, r in chosen.iterrows()
        ),
    )
    lines += ["", f"Chosen: `{chosen.iloc[0][KEY]}` (mean validation score {chosen.iloc[0]['val_score']:.3f}).", ""]
    cols = [c for c in SELECTION_METRICS if f"{c}_mean" in table]
    lines += [
        "Test trials, mean ± s.d. over seeds of the mean over held-out sessions; in brackets the gain of "
        "pretraining over the model trained from scratch, in percent:",
        "",
    ]

    def gain(r, c):
        pct = r.get(f"{c}_gain_percent", np.nan)
        return options.cell(r[f"{c}_mean"], r.get(f"{c}_sd", np.nan)) + (f" ({pct:+.1f} %)" if np.isfinite(pct) else "")

    lines += markdown_table(
        [KEY, "seeds", *cols], ([r[KEY], r["seeds"], *(gain(r, c) for c in cols)] for _, r in table.iterrows())
    )
    worse = per_session[per_session["worse_than_spread"] == True] if len(per_session) else per_session  # noqa: E712
    lines += [
        "",
        "Held-out sessions where fine-tuning is worse than scratch by more than the seeds' spread (test):",
        "",
    ]
    if len(worse):
        lines += markdown_table(
            [KEY, "session", "metric", "fine-tuned − scratch", "s.d. over seeds"],
            (
                [r[KEY], r["eid"], r["metric"], f"{r['difference']:+.3f}", f"{r['spread']:.3f}"]
                for _, r in worse.iterrows()
            ),
        )
    else:
        lines.append("none.")
    return "\n".join(lines) + "\n"
