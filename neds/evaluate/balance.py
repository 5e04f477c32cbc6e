"""The loss-balance experiment's tables (``snakemake loss_balance``): which balance of the
modalities' losses (:mod:`neds.model.balance`) is chosen on the validation trials, and how the
multimodal model compares, on the test trials, with the unimodal models and the linear decoder.

Every variant of the experiment (``<balance>_seed_<seed>``, :func:`neds.experiments.balance_of`)
pretrains its own model with the balance, fine-tunes it and trains the per-session models
(from scratch, encoding-only, decoding-only) with it on each held-out session, and is scored on
the validation and the test trials.

* The **choice** reads validation trials only: per balance, the mean over seeds of the selection
  score (the mean of bits per spike and the four decoding scores) of the fine-tuned and the
  scratch model, averaged over the held-out sessions, and of the pretrained model on the
  pretraining sessions' validation trials.
* The **report** reads test trials: each method's metrics, per seed the mean over the held-out
  sessions, then their mean and standard deviation over seeds.
* The **targets** compare, per balance, the fine-tuned multimodal model with the decoding-only
  model (each decoding metric), the encoding-only model (bits per spike), the main run's
  linear decoder (each decoding metric) and the model trained from scratch with the same balance
  (every metric: the gain of pretraining), on the test trials.
* A unimodal model trained with one balance can be weaker than the same model trained with
  another, and then a target against it reads as met only because the reference is weak. So the
  targets also compare each balance with the **best specialist**: per unimodal model, the
  balance under which it scores highest on the validation trials (:func:`specialists`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from neds.evaluate import options
from neds.evaluate.tables import markdown_table
from neds.experiments import balance_of
from neds.vocab import (
    LINEAR,
    LOSS_BALANCES,
    NEDS_FINETUNED,
    NEDS_SCRATCH,
    SELECTION_METRICS,
    UNIMODAL_DECODING,
    UNIMODAL_ENCODING,
)

__all__ = ["per_seed", "selection", "specialists", "report", "targets", "balance_markdown", "TARGETS"]

DECODING_TARGETS = ("choice_acc", "block_acc", "wheel_r2", "whisker_r2")
TARGETS = (
    *((m, UNIMODAL_DECODING) for m in DECODING_TARGETS),
    ("bps_unit_mean", UNIMODAL_ENCODING),
    *((m, LINEAR) for m in DECODING_TARGETS),
    *((m, NEDS_SCRATCH) for m in SELECTION_METRICS),
)
"""(metric, the method the fine-tuned multimodal model should be at or above): the unimodal
models, the linear decoder, and the same model trained from scratch (a non-negative gain of
pretraining on every metric)."""
PRETRAIN_COLUMN = "pretrain_val_score"
UNIMODAL_METRICS = {UNIMODAL_DECODING: DECODING_TARGETS, UNIMODAL_ENCODING: ("bps_unit_mean",)}
"""The metrics each unimodal model is scored on, whose mean ranks it in :func:`specialists`."""


def per_seed(metrics: pd.DataFrame) -> pd.DataFrame:
    """The experiment's ``metrics.tsv`` -> a row per (balance, seed, split, method)
    (:func:`neds.evaluate.options.per_seed`)."""
    return options.per_seed(metrics, LOSS_BALANCES, "balance")


def selection(seeds: pd.DataFrame, pretrain_scores: Mapping[str, float]) -> pd.DataFrame:
    """A row per balance, best first: the mean over seeds of the validation selection score of the
    fine-tuned and scratch models (``finetuned_val_score``, ``scratch_val_score``) and of the
    pretrained model (``pretrain_val_score``, from ``pretrain_scores``: variant -> its last
    validation score), and their mean, ``val_score``, the criterion."""
    val = seeds[seeds["split"] == "val"]
    rows = []
    for balance in [b for b in LOSS_BALANCES if b in set(val["balance"])]:
        mine = val[val["balance"] == balance]
        row = {"balance": balance, "seeds": int(mine["seed"].nunique())}
        for method, key in ((NEDS_FINETUNED, "finetuned_val_score"), (NEDS_SCRATCH, "scratch_val_score")):
            row[key] = float(mine.loc[mine["method"] == method, "score"].mean())
        wanted = {(balance, s) for s in set(mine["seed"])}
        pre = [score for v, score in pretrain_scores.items() if balance_of(v) in wanted]
        row[PRETRAIN_COLUMN] = float(np.mean(pre)) if pre else np.nan
        parts = [row["finetuned_val_score"], row["scratch_val_score"], row[PRETRAIN_COLUMN]]
        row["val_score"] = float(np.mean(parts)) if all(np.isfinite(parts)) else np.nan
        rows.append(row)
    if not rows:
        raise ValueError("the loss-balance experiment has no validation rows; run `snakemake loss_balance`")
    return pd.DataFrame(rows).sort_values("val_score", ascending=False, na_position="last", ignore_index=True)


def specialists(seeds: pd.DataFrame) -> dict[str, str]:
    """Unimodal method -> the balance whose model of that method has the highest validation
    score (the mean over seeds of the mean of :data:`UNIMODAL_METRICS`; validation trials only).
    A method no balance trained is left out."""
    val = seeds[seeds["split"] == "val"]
    best = {}
    for method, cols in UNIMODAL_METRICS.items():
        mine = val[val["method"] == method]
        scores = mine[list(cols)].mean(axis=1, skipna=False).groupby(mine["balance"]).mean().dropna()
        if len(scores):
            best[method] = str(scores.idxmax())
    return best


def report(seeds: pd.DataFrame, main: pd.DataFrame | None = None) -> pd.DataFrame:
    """Test trials: a row per (balance, method) with each selection metric's mean and standard
    deviation over seeds (``<metric>_mean``, ``<metric>_sd``) and the number of seeds; then the
    main run's linear decoder (``main``, its ``metrics.tsv``; balance '-', one fit)."""
    table = options.over_seeds(seeds, "balance")
    cols = [c for c in SELECTION_METRICS if f"{c}_mean" in table]
    rows = table.to_dict("records")
    if main is not None:
        lin = main[(main["method"] == LINEAR) & (main.get("split", "test") == "test")]
        if len(lin):
            row = {"balance": "-", "method": LINEAR, "seeds": 1}
            for c in cols:
                if c in lin:
                    row[f"{c}_mean"], row[f"{c}_sd"] = float(lin[c].mean()), np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def targets(table: pd.DataFrame, best: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per balance and target of :data:`TARGETS`: the fine-tuned multimodal model's test mean,
    the reference method's, the difference and whether the target is met (at or above).
    ``reference_balance`` is the balance the reference was trained with: the row's own, '-' for
    the linear decoder; and with ``best`` (:func:`specialists`), each unimodal target is also
    set against the best specialist where that was trained with another balance."""
    rows = []
    ref_rows = table.set_index(["balance", "method"])
    best = best or {}
    for balance in [b for b in LOSS_BALANCES if b in set(table["balance"])]:
        refs = [(m, ref, "-" if ref == LINEAR else balance) for m, ref in TARGETS]
        refs += [(m, ref, best[ref]) for m, ref in TARGETS if best.get(ref, balance) != balance]
        for metric, ref, trained_with in refs:
            key = (trained_with, ref)
            if (balance, NEDS_FINETUNED) not in ref_rows.index or key not in ref_rows.index:
                continue
            mine = ref_rows.loc[(balance, NEDS_FINETUNED)].get(f"{metric}_mean", np.nan)
            other = ref_rows.loc[key].get(f"{metric}_mean", np.nan)
            rows.append(
                {
                    "balance": balance,
                    "metric": metric,
                    "reference": ref,
                    "reference_balance": trained_with,
                    NEDS_FINETUNED: mine,
                    "reference_value": other,
                    "difference": mine - other,
                    "met": bool(mine >= other) if np.isfinite(mine) and np.isfinite(other) else None,
                }
            )
    return pd.DataFrame(rows)


def balance_markdown(chosen: pd.DataFrame, table: pd.DataFrame, goals: pd.DataFrame) -> str:
    """The experiment's page: the choice on validation trials, the test comparison, the targets."""
    lines = [
        "### Balance of the modalities' losses",
        "",
        "Chosen on the validation trials (mean over seeds of the selection score: fine-tuned and scratch "
        "models on the held-out sessions, the pretrained model on the pretraining sessions):",
        "",
    ]
    lines += markdown_table(
        ["balance", "seeds", "fine-tuned", "scratch", "pretrained", "mean"],
        (
            [
                r["balance"],
                r["seeds"],
                *(f"{r[k]:.3f}" for k in ("finetuned_val_score", "scratch_val_score", PRETRAIN_COLUMN, "val_score")),
            ]
            for _, r in chosen.iterrows()
        ),
    )
    best = chosen.iloc[0]
    lines += ["", f"Chosen: `{best['balance']}` (mean validation score {best['val_score']:.3f}).", ""]
    cols = [c for c in SELECTION_METRICS if f"{c}_mean" in table]
    lines += ["Test trials, mean ± s.d. over seeds of the mean over held-out sessions:", ""]
    lines += markdown_table(
        ["balance", "method", "seeds", *cols],
        (
            [
                r["balance"],
                r["method"],
                r["seeds"],
                *(options.cell(r[f"{c}_mean"], r.get(f"{c}_sd", np.nan)) for c in cols),
            ]
            for _, r in table.iterrows()
        ),
    )
    lines += [
        "",
        "Targets (test): the fine-tuned multimodal model at or above the reference, trained with the "
        "same balance and, for a unimodal model, with the balance under which it scores highest on the "
        "validation trials (the best specialist):",
        "",
    ]
    lines += markdown_table(
        [
            "balance",
            "metric",
            "reference",
            "reference trained with",
            "multimodal",
            "reference value",
            "difference",
            "met",
        ],
        (
            [
                r["balance"],
                r["metric"],
                r["reference"],
                r["reference_balance"],
                f"{r[NEDS_FINETUNED]:.3f}",
                f"{r['reference_value']:.3f}",
                f"{r['difference']:+.3f}",
                {True: "yes", False: "no"}.get(r["met"], "–"),
            ]
            for _, r in goals.iterrows()
        ),
    )
    return "\n".join(lines) + "\n"
