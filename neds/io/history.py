"""Reading a training run's history (``history.jsonl``, one JSON record per epoch, written by
:mod:`neds.train`). Torch-free, so figures and reports read histories without importing torch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["read_history"]


def read_history(path: str | Path) -> pd.DataFrame:
    """A training run's ``history.jsonl`` as a table, one row per epoch (validation columns NaN on
    epochs without validation).

    Parameters
    ----------
    path : the run's ``history.jsonl`` (blank lines are skipped)

    Returns
    -------
    pandas.DataFrame
        One row per record, one column per key of any record.
    """
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return pd.DataFrame(rows)
