"""Evaluation tables: per-session rows, mean ± s.e.m., the pretraining gain, Markdown."""

import json

import numpy as np
import pytest

from neds.evaluate.tables import collect_rows, pretraining_gain, summarize, summary_markdown


@pytest.fixture
def metric_files(tmp_path):
    files = []
    values = {"s1": {"neds_finetuned": 0.3, "neds_scratch": 0.2, "linear": 0.1},
              "s2": {"neds_finetuned": 0.5, "neds_scratch": 0.4, "linear": 0.2}}
    for eid, by_method in values.items():
        rows = [{"method": m, "eid": eid, "split": "test", "n_trials": 10, "n_units": 5, "bps_unit_mean": v,
                 "choice_acc": 0.5 + v, "info": {"x": 1}} for m, v in by_method.items()]
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
