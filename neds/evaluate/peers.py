"""The paper's comparison with other large-scale models (NEDS fine-tuned vs POYO+ and NDT2), as
tables: the ``peers`` experiment's rows (every compared model fine-tuned per seed on every
held-out session, :data:`neds.experiments.EXPERIMENTS` ``peers``) beside the main run's other
methods, laid out like the paper's comparison, with the paper's reported gaps quoted beside the
measured ones, and what each model cost to train.

Conventions: a compared model's score on a metric is the mean over held-out sessions of its
seed; the table gives the mean ± s.e.m. of that over seeds. The main run's other methods were
trained with one seed (``training.seed``): their cells are the mean over sessions alone. A
relative gap is ``100 * (NEDS - peer) / |peer|`` of the seed means, as the paper reports gaps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neds.evaluate.tables import format_mean_sem, markdown_table, mean_sem
from neds.vocab import (
    DECODING_METRICS,
    ENCODING_METRICS,
    METHOD_ORDER,
    METRIC_LABELS,
    NDT2,
    NEDS_FINETUNED,
    POYO_PLUS,
    stage_of_method,
)

__all__ = [
    "COMPARED",
    "COMPARISON_METRICS",
    "PAPER_GAPS",
    "per_session_means",
    "comparison",
    "relative_gaps",
    "training_costs",
    "comparison_markdown",
]

COMPARED = (NEDS_FINETUNED, POYO_PLUS, NDT2)
"""The methods trained over seeds by the ``peers`` experiment, NEDS first."""
COMPARISON_METRICS = ("choice_acc", "block_acc", "wheel_r2", "whisker_r2", "bps_unit_mean")
"""The comparison's columns: the four decoding targets, then encoding where a method does it."""
PAPER_GAPS = {POYO_PLUS: (1.0, 13.0), NDT2: (11.0, 37.0)}
"""NEDS's lead on decoding over each peer reported by the paper, as a range over the decoding
targets in percent (the paper's multi-session results: NEDS, POYO+ and NDT2 pretrained on the
same sessions and fine-tuned on the held-out ones)."""


def per_session_means(peers: pd.DataFrame, main: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, held-out session): the compared methods' metrics averaged over seeds
    (the ``peers`` experiment's ``metrics.tsv``, one row per variant, method and session), then
    the main run's other methods (its ``metrics.tsv``), methods in table order. The layout of the
    main ``metrics.tsv``, so the methods figures draw it."""
    metrics = [c for c in (*ENCODING_METRICS, *DECODING_METRICS) if c in peers]
    compared = peers[peers["method"].isin(COMPARED)]
    if compared.empty:
        raise ValueError("the peers experiment's metrics hold none of the compared methods; run `snakemake peers`")
    averaged = compared.groupby(["method", "eid"], sort=False)[metrics].mean().reset_index()
    others = main[~main["method"].isin(COMPARED)]
    out = pd.concat([averaged, others], ignore_index=True)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    out["_order"] = out["method"].map(lambda m: order.get(m, len(order)))
    return out.sort_values(["_order", "eid"]).drop(columns="_order").reset_index(drop=True)


def _seed_means(peers: pd.DataFrame, method: str, metric: str) -> np.ndarray:
    """The mean over held-out sessions of each seed (variant) of ``method``, NaN-free."""
    rows = peers[peers["method"] == method]
    if metric not in rows:
        return np.array([])
    by_seed = rows.groupby("variant", sort=False)[metric].mean()
    return by_seed[np.isfinite(by_seed)].to_numpy()


def comparison(peers: pd.DataFrame, main: pd.DataFrame) -> pd.DataFrame:
    """The comparison table: one row per method (the compared ones, then the main run's others),
    with ``<metric>_mean``, ``_sem`` and ``_n`` for each of :data:`COMPARISON_METRICS`, ``seeds``
    (the number of seeds behind a row) and ``sessions``.

    Compared methods: mean and s.e.m. over seeds of the mean over sessions; other methods: the
    mean over sessions of the main run (one seed; s.e.m. NaN)."""
    rows = []
    for method in COMPARED:
        if not (peers["method"] == method).any():
            continue
        row = {"method": method, "seeds": int(peers.loc[peers["method"] == method, "variant"].nunique())}
        row["sessions"] = int(peers.loc[peers["method"] == method, "eid"].nunique())
        for metric in COMPARISON_METRICS:
            row[f"{metric}_mean"], row[f"{metric}_sem"], row[f"{metric}_n"] = mean_sem(
                _seed_means(peers, method, metric)
            )
        rows.append(row)
    for method in [m for m in METHOD_ORDER if m not in COMPARED and (main["method"] == m).any()]:
        sub = main[main["method"] == method]
        row = {"method": method, "seeds": 1, "sessions": int(sub["eid"].nunique())}
        for metric in COMPARISON_METRICS:
            values = sub[metric].to_numpy(dtype=float) if metric in sub else np.array([])
            mean, _, n = mean_sem(values)
            row[f"{metric}_mean"], row[f"{metric}_sem"], row[f"{metric}_n"] = mean, np.nan, n
        rows.append(row)
    return pd.DataFrame(rows)


def relative_gaps(peers: pd.DataFrame) -> pd.DataFrame:
    """NEDS fine-tuned's lead over each peer per decoding target: the relative gap of the seed
    means (percent of the peer's value), the seeds on which NEDS is ahead, and the paper's range.
    Columns: peer, metric, neds, peer_value, gap_percent, seeds_ahead, seeds, paper_low, paper_high."""
    rows = []
    for peer, (low, high) in PAPER_GAPS.items():
        for metric in COMPARISON_METRICS[:4]:
            neds_rows = peers[peers["method"] == NEDS_FINETUNED].groupby("variant")[metric].mean()
            peer_rows = peers[peers["method"] == peer].groupby("variant")[metric].mean()
            common = [v for v in neds_rows.index if v in peer_rows.index]
            if not common:
                continue
            a, b = neds_rows[common].to_numpy(), peer_rows[common].to_numpy()
            ok = np.isfinite(a) & np.isfinite(b)
            ma, mb = (float(a[ok].mean()), float(b[ok].mean())) if ok.any() else (np.nan, np.nan)
            rows.append(
                {
                    "peer": peer,
                    "metric": metric,
                    "neds": ma,
                    "peer_value": mb,
                    "gap_percent": 100.0 * (ma - mb) / abs(mb) if ok.any() and mb != 0 else np.nan,
                    "seeds_ahead": int((a[ok] > b[ok]).sum()),
                    "seeds": int(ok.sum()),
                    "paper_low": low,
                    "paper_high": high,
                }
            )
    return pd.DataFrame(rows)


def training_costs(summaries: Mapping[str, Mapping[str, Sequence[str | Path]]]) -> pd.DataFrame:
    """What each compared model cost to train, from its runs' ``summary.json`` files.

    summaries : method -> {'pretrain': [its pretrained model's summary.json],
        'finetune': [the summary.json of every fine-tuned model (sessions x seeds)]}
    Returns one row per method: epochs, steps, training trials and minutes of the pretraining
    and the mean per fine-tuned model, the shared and total parameters of the fine-tuned model,
    and the device.
    """
    rows = []
    for method, runs in summaries.items():
        pre = [json.loads(Path(p).read_text()) for p in runs.get("pretrain", [])]
        fine = [json.loads(Path(p).read_text()) for p in runs.get("finetune", [])]
        if not fine:
            raise ValueError(f"no fine-tuned model's summary.json for {method}")
        row = {"method": method, "stage": stage_of_method(method), "n_finetuned": len(fine)}
        for name, group in (("pretrain", pre), ("finetune", fine)):
            row[f"{name}_epochs"] = float(np.mean([s["epochs"] for s in group])) if group else np.nan
            row[f"{name}_steps"] = float(np.mean([s["steps"] for s in group])) if group else np.nan
            row[f"{name}_trials"] = float(np.mean([s["n_train_trials"] for s in group])) if group else np.nan
            row[f"{name}_minutes"] = float(np.mean([s["train_seconds"] for s in group])) / 60 if group else np.nan
        row["n_shared_parameters"] = int(fine[0]["model"]["n_shared_parameters"])
        row["n_parameters"] = int(fine[0]["model"]["n_parameters"])
        row["device"] = fine[0].get("device", "")
        rows.append(row)
    return pd.DataFrame(rows)


def _label(method: str) -> str:
    from neds.vocab import METHODS

    return METHODS[method].label.replace("\n", " ") if method in METHODS else method


def comparison_markdown(table: pd.DataFrame, gaps: pd.DataFrame, costs: pd.DataFrame) -> str:
    """The comparison (:func:`comparison`), the gaps beside the paper's (:func:`relative_gaps`) and
    the training costs (:func:`training_costs`) as one Markdown page."""
    seeds = int(table.loc[table["method"].isin(COMPARED), "seeds"].max()) if len(table) else 0
    lines = [
        "# NEDS and other large-scale models",
        "",
        f"Held-out sessions, test trials. NEDS, POYO+ and NDT2: pretrained on the same sessions, fine-tuned on "
        f"each held-out session with the same training trials, epochs and checkpoint rule; mean ± s.e.m. over "
        f"{seeds} seed(s) of the mean over sessions. Other methods: the main run (one seed), mean over sessions. "
        "– where a method does not produce the metric.",
        "",
    ]
    header = ["method", *(METRIC_LABELS.get(m, m) for m in COMPARISON_METRICS)]
    lines += markdown_table(
        header,
        (
            [_label(r["method"]), *(format_mean_sem(r[f"{m}_mean"], r[f"{m}_sem"]) for m in COMPARISON_METRICS)]
            for _, r in table.iterrows()
        ),
    )
    if len(gaps):
        lines += [
            "",
            "NEDS fine-tuned's lead over each peer (percent of the peer's value, seed means) beside the paper's "
            "reported range over the decoding targets:",
            "",
        ]
        lines += markdown_table(
            ["peer", "target", "NEDS", "peer", "measured gap (%)", "seeds NEDS ahead", "paper (%)"],
            (
                [
                    _label(g.peer),
                    METRIC_LABELS.get(g.metric, g.metric),
                    f"{g.neds:.3f}",
                    f"{g.peer_value:.3f}",
                    f"{g.gap_percent:+.1f}" if np.isfinite(g.gap_percent) else "–",
                    f"{g.seeds_ahead} of {g.seeds}",
                    f"+{g.paper_low:g} to +{g.paper_high:g}",
                ]
                for g in gaps.itertuples()
            ),
        )
    for peer in PAPER_GAPS:
        mine = gaps[gaps["peer"] == peer] if len(gaps) else gaps
        if len(mine):
            ahead = int((mine["gap_percent"] > 0).sum())
            inside = int(mine["gap_percent"].between(mine["paper_low"], mine["paper_high"]).sum())
            lines += [
                "",
                f"Against {_label(peer)}: NEDS is ahead on {ahead} of {len(mine)} decoding targets (the paper: ahead "
                f"on every target); {inside} of the {len(mine)} measured gaps {'lies' if inside == 1 else 'lie'} in the paper's range "
                f"(+{PAPER_GAPS[peer][0]:g} to +{PAPER_GAPS[peer][1]:g} %).",
            ]
    if len(costs):
        lines += ["", "Training budget of each compared model (the same epochs; wall time recorded):", ""]
        lines += markdown_table(
            [
                "method",
                "pretraining epochs",
                "pretraining (min)",
                "fine-tuning epochs",
                "fine-tuning per model (min)",
                "shared / all parameters",
                "device",
            ],
            (
                [
                    _label(c.method),
                    f"{c.pretrain_epochs:g}",
                    f"{c.pretrain_minutes:.1f}",
                    f"{c.finetune_epochs:g}",
                    f"{c.finetune_minutes:.1f}",
                    f"{c.n_shared_parameters:,} / {c.n_parameters:,}",
                    c.device,
                ]
                for c in costs.itertuples()
            ),
        )
    return "\n".join(lines) + "\n"
