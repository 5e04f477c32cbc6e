"""Tables of the evaluation: one row per (method, session), summaries over sessions, Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neds.evaluate.evaluation import DECODING_KEYS, ENCODING_KEYS

__all__ = ["collect_rows", "summarize", "pretraining_gain", "summary_markdown", "table1", "table1_markdown", "METHOD_ORDER", "HEADLINE", "NOT_SCORED"]

METHOD_ORDER = ("neds_finetuned", "neds_scratch", "unimodal_encoding", "unimodal_decoding", "linear", "rrr", "oracle")
HEADLINE = ("bps_unit_mean", "bps_pooled", "choice_acc", "block_acc", "wheel_r2", "whisker_r2")


def collect_rows(metric_files: list[str | Path]) -> pd.DataFrame:
    """All rows of the per-session metrics files, one per (method, session), methods in order.

    Raises
    ------
    ValueError
        If there are no files or no rows: no held-out session was evaluated.
    """
    if not metric_files:
        raise ValueError(
            "no evaluated held-out session to summarise: no session of data.heldout_eids is usable "
            "(their reasons are in results/binned/sessions.tsv); list usable held-out sessions and rerun"
        )
    rows = []
    for path in metric_files:
        for row in json.loads(Path(path).read_text())["rows"]:
            rows.append({k: v for k, v in row.items() if k != "info"})
    if not rows:
        raise ValueError(f"the metrics files {[str(p) for p in metric_files][:3]} hold no rows; rerun evaluate_session")
    df = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    df["_order"] = df["method"].map(lambda m: order.get(m, len(order)))
    return df.sort_values(["_order", "eid"]).drop(columns="_order").reset_index(drop=True)


NOT_SCORED = "not_scored"  # per row: the metrics left unscored on that session, and why ('' if none)


def _metric_columns(df: pd.DataFrame, by: tuple[str, ...] = ("method",)) -> list[str]:
    return [c for c in df.columns if c not in (*by, "method", "eid", "split", "n_trials", "n_units", NOT_SCORED)]


def _not_scored(group: pd.DataFrame) -> str:
    """'eid: reason' of each session of ``group`` with metrics left unscored, joined by ' | '."""
    if NOT_SCORED not in group:
        return ""
    notes = group[NOT_SCORED].fillna("").astype(str)
    return " | ".join(f"{eid}: {note}" for eid, note in zip(group["eid"], notes) if note)


def summarize(df: pd.DataFrame, by: tuple[str, ...] = ("method",)) -> pd.DataFrame:
    """Per group of ``by`` (default: per method): mean, s.e.m. (ddof 1) and number of sessions of
    every metric, over the sessions where it was scored (``<metric>_n``), and the sessions'
    reasons for what was not scored (``not_scored``)."""
    out = []
    for keys, group in df.groupby(list(by), sort=False):
        row = {**dict(zip(by, keys)), "n_sessions": int(group["eid"].nunique())}
        for col in _metric_columns(df, by):
            values = group[col].dropna().to_numpy(dtype=float)
            row[f"{col}_mean"] = float(values.mean()) if values.size else np.nan
            row[f"{col}_sem"] = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else np.nan
            row[f"{col}_n"] = int(values.size)
        row[NOT_SCORED] = _not_scored(group)
        out.append(row)
    return pd.DataFrame(out)


def pretraining_gain(df: pd.DataFrame, pretrained: str = "neds_finetuned", scratch: str = "neds_scratch") -> pd.DataFrame:
    """Gain of pretraining in percent, per metric: 100 * (mean pretrained - mean scratch) / |mean scratch|
    over the sessions both were evaluated on (the relative improvement the paper reports)."""
    a = df[df["method"] == pretrained].set_index("eid")
    b = df[df["method"] == scratch].set_index("eid")
    common = a.index.intersection(b.index)
    rows = []
    for col in (*ENCODING_KEYS, *DECODING_KEYS):
        if col in a and col in b and len(common):
            # only the sessions where both were scored (a target may be unscorable on a session)
            both = [e for e in common if np.isfinite(a.loc[e, col]) and np.isfinite(b.loc[e, col])]
            ma = float(a.loc[both, col].mean()) if both else np.nan
            mb = float(b.loc[both, col].mean()) if both else np.nan
            gain = 100.0 * (ma - mb) / abs(mb) if both and mb != 0 else np.nan
            rows.append({"metric": col, pretrained: ma, scratch: mb, "gain_percent": gain, "n_sessions": len(both)})
    return pd.DataFrame(rows)


def _fmt(mean: float, sem: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.3f} ± {sem:.3f}" if not np.isnan(sem) else f"{mean:.3f}"


def summary_markdown(summary: pd.DataFrame, gain: pd.DataFrame, title: str = "NEDS evaluation") -> str:
    """The headline table (mean ± s.e.m. over held-out sessions) and the pretraining gain, as Markdown."""
    cols = [c for c in HEADLINE if f"{c}_mean" in summary]
    lines = [f"# {title}", "", "Held-out sessions, test trials; mean ± s.e.m. over sessions.", ""]
    lines.append("| method | sessions | " + " | ".join(cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    for _, row in summary.iterrows():
        cells = [_fmt(row[f"{c}_mean"], row[f"{c}_sem"]) for c in cols]
        lines.append(f"| {row['method']} | {row['n_sessions']} | " + " | ".join(cells) + " |")
    notes = [f"- {row['method']}: {row[NOT_SCORED]}" for _, row in summary.iterrows() if row.get(NOT_SCORED)]
    if notes:
        lines += ["", "Not scored (a constant target says nothing about decoding; these sessions are left out of "
                  "that metric's mean):", "", *notes]
    if len(gain):
        lines += ["", "Gain of pretraining then fine-tuning over training from scratch (percent of the scratch value):", ""]
        lines.append("| metric | fine-tuned | scratch | gain (%) |")
        lines.append("|---|---|---|---|")
        for _, g in gain.iterrows():
            gain_cell = f"{g['gain_percent']:+.1f}" if np.isfinite(g["gain_percent"]) else "– (not scored)"
            lines.append(f"| {g['metric']} | {g.iloc[1]:.3f} | {g.iloc[2]:.3f} | {gain_cell} |")
    return "\n".join(lines) + "\n"


TABLE1_SOURCES = (("all behaviours", "bps_unit_mean"), ("wheel", "bps_from_wheel"), ("whisker", "bps_from_whisker"),
                  ("choice", "bps_from_choice"), ("block", "bps_from_block"))  # fmt: skip


def table1(df: pd.DataFrame, methods: tuple[str, ...] = ("neds_finetuned", "neds_scratch")) -> pd.DataFrame:
    """The paper's Table 1: encoding (bits per spike, mean over units) from each behaviour alone
    and from all, per NEDS model, mean ± s.e.m. over held-out sessions. ``df``: one row per
    (method, session) as from :func:`collect_rows`. Columns: method, encoding_from, bps_mean,
    bps_sem, n_sessions (sessions with a value)."""
    sub = df[df["method"].isin(methods)]
    sources = [(label, col) for label, col in TABLE1_SOURCES if col in sub]
    summary = summarize(sub[["method", "eid"] + [col for _, col in sources]])
    rows = []
    for _, r in summary.iterrows():
        values = sub[sub["method"] == r["method"]]
        for label, col in sources:
            rows.append({"method": r["method"], "encoding_from": label, "bps_mean": r[f"{col}_mean"],
                         "bps_sem": r[f"{col}_sem"], "n_sessions": int(values[col].notna().sum())})  # fmt: skip
    return pd.DataFrame(rows)


def table1_markdown(table: pd.DataFrame) -> str:
    lines = ["# Encoding from each behaviour alone (Table 1)", "", "Held-out sessions, test trials; mean ± s.e.m.", "",
             "| model | encoding from | bits per spike |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {r.method} | {r.encoding_from} | {_fmt(r.bps_mean, r.bps_sem)} |" for r in table.itertuples()]
    return "\n".join(lines) + "\n"
