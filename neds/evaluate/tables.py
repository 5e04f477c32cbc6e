"""Tables of the evaluation: one row per (method, session), summaries over sessions, and their
renderings as Markdown (``results/summary.md``) and HTML (the report's summary page).

Every mean ± s.e.m. of the package (tables, reports, figures) comes from :func:`mean_sem` and is
written by :func:`format_mean_sem`, so all follow one rule for missing values and single sessions.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from neds.vocab import (
    BEHAVIOURS,
    DECODING_METRICS,
    ENCODING_METRICS,
    HEADLINE_METRICS,
    METHOD_ORDER,
    NEDS_FINETUNED,
    NEDS_SCRATCH,
)

__all__ = [
    "mean_sem",
    "format_mean_sem",
    "markdown_table",
    "collect_rows",
    "summarize",
    "pretraining_gain",
    "summary_markdown",
    "summary_html",
    "table1",
    "table1_markdown",
    "NOT_SCORED",
]


def mean_sem(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean and number of the values that are not NaN.

    The one rule of every summary in the package:

    * NaN values (a metric not scored on a session, a method that does not produce it) are
      dropped, and ``n`` counts the values kept;
    * ``n == 0``: mean and s.e.m. are NaN;
    * ``n == 1``: the mean is the value and the s.e.m. is NaN (undefined for one value): tables
      show the mean alone (:func:`format_mean_sem`), figures draw no error bar;
    * ``n >= 2``: the s.e.m. is the sample standard deviation (``ddof=1``) over ``sqrt(n)``.

    Parameters
    ----------
    values : numbers (a list, an array, a pandas Series); infinities are kept

    Returns
    -------
    (mean, sem, n) : float, float, int
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return np.nan, np.nan, 0
    sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan
    return float(v.mean()), sem, int(v.size)


def format_mean_sem(mean: float, sem: float, digits: int = 3) -> str:
    """A table cell for a mean and its s.e.m. (:func:`mean_sem`): ``'0.208 ± 0.011'``; the mean
    alone where the s.e.m. is NaN (one value); ``'–'`` where the mean is NaN (no value)."""
    if np.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {sem:.{digits}f}" if not np.isnan(sem) else f"{mean:.{digits}f}"


def markdown_table(header: Iterable[object], rows: Iterable[Iterable[object]]) -> list[str]:
    """The lines of a Markdown table: a header row, the separator and one line per row (cells
    written with ``str``, a ``|`` inside a cell escaped)."""
    header = [str(h) for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _read_table(table: pd.DataFrame | str | Path) -> pd.DataFrame:
    """A table given as a DataFrame or as the path of a TSV file."""
    return table if isinstance(table, pd.DataFrame) else pd.read_csv(table, sep="\t")


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
    """Per group of ``by`` (default: per method): mean, s.e.m. and number of sessions of every
    metric over the sessions where it was scored (``<metric>_mean``, ``_sem``, ``_n``; the rule of
    :func:`mean_sem`), and the sessions' reasons for what was not scored (``not_scored``)."""
    out = []
    for keys, group in df.groupby(list(by), sort=False):
        row = {**dict(zip(by, keys)), "n_sessions": int(group["eid"].nunique())}
        for col in _metric_columns(df, by):
            row[f"{col}_mean"], row[f"{col}_sem"], row[f"{col}_n"] = mean_sem(group[col])
        row[NOT_SCORED] = _not_scored(group)
        out.append(row)
    return pd.DataFrame(out)


def pretraining_gain(df: pd.DataFrame, pretrained: str = NEDS_FINETUNED, scratch: str = NEDS_SCRATCH) -> pd.DataFrame:
    """Gain of pretraining in percent, per metric: 100 * (mean pretrained - mean scratch) / |mean scratch|
    over the sessions both were evaluated on (the relative improvement the paper reports)."""
    a = df[df["method"] == pretrained].set_index("eid")
    b = df[df["method"] == scratch].set_index("eid")
    common = a.index.intersection(b.index)
    rows = []
    for col in (*ENCODING_METRICS, *DECODING_METRICS):
        if col in a and col in b and len(common):
            # only the sessions where both were scored (a target may be unscorable on a session)
            both = [e for e in common if np.isfinite(a.loc[e, col]) and np.isfinite(b.loc[e, col])]
            ma = float(a.loc[both, col].mean()) if both else np.nan
            mb = float(b.loc[both, col].mean()) if both else np.nan
            gain = 100.0 * (ma - mb) / abs(mb) if both and mb != 0 else np.nan
            rows.append({"metric": col, pretrained: ma, scratch: mb, "gain_percent": gain, "n_sessions": len(both)})
    return pd.DataFrame(rows)


def summary_markdown(summary: pd.DataFrame, gain: pd.DataFrame, title: str = "NEDS evaluation") -> str:
    """The headline table (mean ± s.e.m. over held-out sessions) and the pretraining gain, as Markdown."""
    cols = [c for c in HEADLINE_METRICS if f"{c}_mean" in summary]
    lines = [f"# {title}", "", "Held-out sessions, test trials; mean ± s.e.m. over sessions.", ""]
    lines += markdown_table(
        ["method", "sessions", *cols],
        (
            [row["method"], row["n_sessions"], *(format_mean_sem(row[f"{c}_mean"], row[f"{c}_sem"]) for c in cols)]
            for _, row in summary.iterrows()
        ),
    )
    notes = [f"- {row['method']}: {row[NOT_SCORED]}" for _, row in summary.iterrows() if row.get(NOT_SCORED)]
    if notes:
        lines += [
            "",
            "Not scored (a constant target says nothing about decoding; these sessions are left out of "
            "that metric's mean):",
            "",
            *notes,
        ]
    if len(gain):
        lines += [
            "",
            "Gain of pretraining then fine-tuning over training from scratch (percent of the scratch value):",
            "",
        ]
        lines += markdown_table(
            ["metric", "fine-tuned", "scratch", "gain (%)"],
            (
                [
                    g["metric"],
                    f"{g.iloc[1]:.3f}",
                    f"{g.iloc[2]:.3f}",
                    f"{g['gain_percent']:+.1f}" if np.isfinite(g["gain_percent"]) else "– (not scored)",
                ]
                for _, g in gain.iterrows()
            ),
        )
    return "\n".join(lines) + "\n"


def summary_html(
    summary: pd.DataFrame | str | Path, gain: pd.DataFrame | str | Path, title: str = "NEDS evaluation"
) -> str:
    """The summary table (mean ± s.e.m. over held-out sessions, per method; encoding and decoding
    metrics as two tables, each with the methods that produce them) and the pretraining gain, as
    one self-contained HTML page for the Snakemake report.

    Parameters
    ----------
    summary : the output of :func:`summarize` (``results/tables/summary.tsv``) or its path
    gain : the output of :func:`pretraining_gain` (``results/tables/pretraining_gain.tsv``) or its path
    title : the page's title and heading
    """
    summary, gain = _read_table(summary), _read_table(gain)
    metrics = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    groups = {"Encoding": [m for m in metrics if m in ENCODING_METRICS or m.startswith("bps_from_")]}
    groups["Decoding"] = [m for m in metrics if m not in groups["Encoding"]]

    parts = []
    for name, cols in groups.items():
        rows = summary[summary[[f"{m}_mean" for m in cols]].notna().any(axis=1)] if cols else summary.iloc[:0]
        if len(rows):
            cells = {
                m: [format_mean_sem(r[f"{m}_mean"], r.get(f"{m}_sem", np.nan)) for _, r in rows.iterrows()]
                for m in cols
            }
            table = pd.DataFrame({"method": rows["method"], "sessions": rows["n_sessions"], **cells})
            parts.append(f"<h3>{name}</h3>{table.to_html(index=False, border=0)}")
    gain = gain.copy()
    for col in gain.columns:
        if col not in ("metric", "n_sessions"):
            gain[col] = gain[col].map(lambda v, c=col: f"{v:+.1f}" if c == "gain_percent" else f"{v:.3f}")
    not_scored = [(m, n) for m, n in zip(summary["method"], summary.get(NOT_SCORED, [])) if isinstance(n, str) and n]
    notes = (
        (
            "<h3>Not scored</h3><p>A target constant on a session's training or test trials says nothing about "
            "decoding; that session is left out of the metric's mean.</p><ul>"
            + "".join(f"<li>{html.escape(m)}: {html.escape(n)}</li>" for m, n in not_scored)
            + "</ul>"
        )
        if not_scored
        else ""
    )
    style = (
        "<style>body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse;margin-bottom:1.5em}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f0f0f0}</style>"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>{style}</head><body>"
        f"<h2>{title}</h2><p>Held-out sessions, test trials; mean ± s.e.m. over sessions "
        f"(– where a method does not produce the metric).</p>{''.join(parts)}{notes}"
        f"<h3>Gain of pretraining over training from scratch (percent of the scratch value)</h3>"
        f"{gain.to_html(index=False, border=0)}</body></html>\n"
    )


TABLE1_SOURCES = (("all behaviours", "bps_unit_mean"), *((b, f"bps_from_{b}") for b in BEHAVIOURS))
"""Table 1's rows: (encoding from, the metric column)."""


def table1(df: pd.DataFrame, methods: tuple[str, ...] = (NEDS_FINETUNED, NEDS_SCRATCH)) -> pd.DataFrame:
    """The paper's Table 1: encoding (bits per spike, mean over units) from each behaviour alone
    and from all, per NEDS model, mean ± s.e.m. over held-out sessions. ``df``: one row per
    (method, session) as from :func:`collect_rows`. Columns: method, encoding_from, bps_mean,
    bps_sem, n_sessions (sessions with a value)."""
    sub = df[df["method"].isin(methods)]
    sources = [(label, col) for label, col in TABLE1_SOURCES if col in sub]
    summary = summarize(sub[["method", "eid"] + [col for _, col in sources]])
    rows = []
    for _, r in summary.iterrows():
        for label, col in sources:
            rows.append(
                {
                    "method": r["method"],
                    "encoding_from": label,
                    "bps_mean": r[f"{col}_mean"],
                    "bps_sem": r[f"{col}_sem"],
                    "n_sessions": int(r[f"{col}_n"]),
                }
            )
    return pd.DataFrame(rows)


def table1_markdown(table: pd.DataFrame) -> str:
    """The output of :func:`table1` as Markdown (one row per model and behaviour)."""
    lines = [
        "# Encoding from each behaviour alone (Table 1)",
        "",
        "Held-out sessions, test trials; mean ± s.e.m.",
        "",
    ]
    lines += markdown_table(
        ["model", "encoding from", "bits per spike"],
        ([r.method, r.encoding_from, format_mean_sem(r.bps_mean, r.bps_sem)] for r in table.itertuples()),
    )
    return "\n".join(lines) + "\n"
