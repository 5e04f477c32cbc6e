"""Evaluation tables: per-session rows, mean ± s.e.m., the pretraining gain, Markdown."""

import json

import numpy as np
import pandas as pd
import pytest

from neds.evaluate.tables import collect_rows, pretraining_gain, summarize, summary_markdown


@pytest.fixture
def metric_files(tmp_path):
    files = []
    values = {
        "s1": {"neds_finetuned": 0.3, "neds_scratch": 0.2, "linear": 0.1},
        "s2": {"neds_finetuned": 0.5, "neds_scratch": 0.4, "linear": 0.2},
    }
    for eid, by_method in values.items():
        rows = [
            {
                "method": m,
                "eid": eid,
                "split": "test",
                "n_trials": 10,
                "n_units": 5,
                "bps_unit_mean": v,
                "choice_acc": 0.5 + v,
                "info": {"x": 1},
            }
            for m, v in by_method.items()
        ]
        path = tmp_path / f"{eid}.json"
        path.write_text(json.dumps({"rows": rows}))
        files.append(path)
    return files


def test_summary_and_gain_by_hand(metric_files):
    df = collect_rows(metric_files)
    assert list(df["method"].unique()) == ["neds_finetuned", "neds_scratch", "linear"]  # canonical order
    summary = summarize(df).set_index("method")
    assert summary.loc["neds_finetuned", "bps_unit_mean_mean"] == pytest.approx(0.4)
    assert summary.loc["neds_finetuned", "bps_unit_mean_sem"] == pytest.approx(np.std([0.3, 0.5], ddof=1) / np.sqrt(2))
    gain = pretraining_gain(df).set_index("metric")
    assert gain.loc["bps_unit_mean", "gain_percent"] == pytest.approx(100 * (0.4 - 0.3) / 0.3)
    assert gain.loc["choice_acc", "gain_percent"] == pytest.approx(100 * (0.9 - 0.8) / 0.8)
    md = summary_markdown(summarize(df), pretraining_gain(df))
    assert "| neds_finetuned | 2 | 0.400 ± 0.100 |" in md and "+33.3" in md


def test_mean_sem_edge_cases():
    from neds.evaluate.tables import format_mean_sem, mean_sem

    mean, sem, n = mean_sem([0.3, np.nan, 0.5])  # NaN dropped, and not counted
    assert (mean, n) == (pytest.approx(0.4), 2) and sem == pytest.approx(np.std([0.3, 0.5], ddof=1) / np.sqrt(2))
    mean, sem, n = mean_sem([0.7, np.nan])  # one value: its mean, no s.e.m.
    assert (mean, n) == (0.7, 1) and np.isnan(sem)
    for empty in ([], [np.nan, np.nan]):
        mean, sem, n = mean_sem(empty)
        assert np.isnan(mean) and np.isnan(sem) and n == 0
    assert format_mean_sem(0.4, 0.1) == "0.400 ± 0.100"
    assert format_mean_sem(0.7, np.nan) == "0.700"
    assert format_mean_sem(np.nan, np.nan) == "–"


def test_one_session_has_no_sem_in_every_table(tmp_path):
    """summarize, the Markdown and the HTML summary all follow mean_sem's rule."""
    from neds.evaluate.tables import summary_html, table1

    rows = [
        {"method": "neds_finetuned", "eid": "s1", "bps_unit_mean": 0.2, "bps_from_wheel": 0.05, "choice_acc": 0.8},
        {"method": "neds_finetuned", "eid": "s2", "bps_unit_mean": 0.4, "bps_from_wheel": np.nan, "choice_acc": np.nan},
        {"method": "neds_scratch", "eid": "s1", "bps_unit_mean": 0.1, "bps_from_wheel": 0.01, "choice_acc": 0.7},
    ]
    df = pd.DataFrame(rows)
    summary = summarize(df).set_index("method")
    assert summary.loc["neds_finetuned", "choice_acc_n"] == 1 and np.isnan(
        summary.loc["neds_finetuned", "choice_acc_sem"]
    )
    assert (
        summary.loc["neds_finetuned", "choice_acc_mean"] == 0.8
        and summary.loc["neds_finetuned", "bps_unit_mean_n"] == 2
    )
    md = summary_markdown(summarize(df), pretraining_gain(df))
    assert "| neds_finetuned | 2 | 0.300 ± 0.100 | 0.800 |" in md and "| neds_scratch | 1 | 0.100 | 0.700 |" in md
    page = summary_html(summarize(df), pretraining_gain(df))
    assert "<td>0.300 ± 0.100</td>" in page and "<td>0.800</td>" in page and "<td>0.700</td>" in page
    t1 = table1(df).set_index(["method", "encoding_from"])
    assert t1.loc[("neds_finetuned", "wheel"), "n_sessions"] == 1 and np.isnan(
        t1.loc[("neds_finetuned", "wheel"), "bps_sem"]
    )
