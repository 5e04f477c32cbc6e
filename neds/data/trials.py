"""Trial exclusion, behaviour targets, scaling and train/val/test splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "REQUIRED_TRIAL_FIELDS",
    "TrialCriteria",
    "trial_exclusion",
    "encode_choice",
    "encode_block",
    "minmax_scale",
    "trial_split",
    "SPLITS",
]

# Trials with NaN in any of these are excluded.
REQUIRED_TRIAL_FIELDS = (
    "stimOn_times",
    "choice",
    "feedback_times",
    "probabilityLeft",
    "firstMovement_times",
    "feedbackType",
)
SPLITS = ("train", "val", "test")
_BLOCK_CLASSES = {0.2: 0, 0.5: 1, 0.8: 2}


@dataclass(frozen=True)
class TrialCriteria:
    """Thresholds of the trial exclusion rules (s)."""

    min_reaction_time_s: float = 0.0
    max_reaction_time_s: float = 10.0
    max_feedback_delay_s: float = 10.0


def trial_exclusion(trials: pd.DataFrame, criteria: TrialCriteria = TrialCriteria()) -> pd.DataFrame:
    """Evaluate every exclusion rule on every trial.

    The rules are combined with a logical OR of the failures (a trial is kept only if it passes
    all of them): the authors' code meant this but applied only the last mask.

    Parameters
    ----------
    trials : DataFrame, K rows
        IBL trials table (``SessionLoader.trials``); needs the REQUIRED_TRIAL_FIELDS and
        ``goCue_times``.
    criteria : TrialCriteria

    Returns
    -------
    DataFrame, K rows, bool columns
        One column per rule, True where the trial FAILS it: ``nan_<field>`` for each required
        field, ``reaction_time`` (firstMovement - stimOn outside [min, max]), ``feedback_delay``
        (feedback - goCue > max), ``no_go`` (choice == 0), ``invalid_probabilityLeft`` (not one
        of 0.2/0.5/0.8).
    """
    missing = [c for c in (*REQUIRED_TRIAL_FIELDS, "goCue_times") if c not in trials.columns]
    if missing:
        raise KeyError(
            f"trials table lacks {missing}; the session's _ibl_trials object is incomplete "
            "(re-download it, or exclude the session)"
        )
    out = pd.DataFrame(index=trials.index)
    for field in REQUIRED_TRIAL_FIELDS:
        out[f"nan_{field}"] = trials[field].isna().to_numpy()
    rt = (trials["firstMovement_times"] - trials["stimOn_times"]).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        out["reaction_time"] = (rt < criteria.min_reaction_time_s) | (rt > criteria.max_reaction_time_s)
        delay = (trials["feedback_times"] - trials["goCue_times"]).to_numpy(dtype=float)
        out["feedback_delay"] = delay > criteria.max_feedback_delay_s
    out["no_go"] = (trials["choice"] == 0).to_numpy()
    p_left = trials["probabilityLeft"].to_numpy(dtype=float)
    valid_p = np.zeros(len(trials), dtype=bool)
    for p in _BLOCK_CLASSES:
        valid_p |= np.isclose(p_left, p)
    out["invalid_probabilityLeft"] = ~valid_p & ~np.isnan(p_left)
    return out


def encode_choice(choice: np.ndarray) -> np.ndarray:
    """IBL choice -1 / +1 -> classes 0 / 1 (int8). Other values raise (exclude no-go first)."""
    choice = np.asarray(choice, dtype=float)
    if not np.all(np.isin(choice, (-1.0, 1.0))):
        raise ValueError("choice must be -1 or +1 on kept trials; exclude no-go (0) and NaN trials first")
    return (choice > 0).astype(np.int8)


def encode_block(probability_left: np.ndarray) -> np.ndarray:
    """probabilityLeft 0.2 / 0.5 / 0.8 -> classes 0 / 1 / 2 (int8)."""
    p = np.asarray(probability_left, dtype=float)
    out = np.full(p.shape, -1, dtype=np.int8)
    for value, cls in _BLOCK_CLASSES.items():
        out[np.isclose(p, value)] = cls
    if np.any(out < 0):
        raise ValueError("probabilityLeft must be 0.2, 0.5 or 0.8 on kept trials; exclude other trials first")
    return out


def minmax_scale(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Scale to [0, 1] with the min and max over all finite values.

    Returns ``(scaled float32, min, max)``. A constant signal scales to zeros (max == min).
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    span = hi - lo
    scaled = (x - lo) / span if span > 0 else np.zeros_like(x)
    return scaled.astype(np.float32), lo, hi


def _session_seed(eid: str, seed: int) -> int:
    digest = hashlib.sha256(f"{eid}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def trial_split(
    eid: str, seed: int, n_trials: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
) -> np.ndarray:
    """Random train/val/test assignment of a session's kept trials.

    Derived from the session id and the seed only (a SHA-256 of both seeds the permutation), so
    it does not depend on the order of any session list and is the same on every machine.

    Parameters
    ----------
    eid : str
        Session id.
    seed : int
    n_trials : int
        Number of kept trials K.
    fractions : (train, val, test), summing to 1

    Returns
    -------
    (K,) array of str, values in SPLITS
        ``round(train * K)`` train trials, ``round(val * K)`` validation trials, the rest test.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions {fractions} must be three non-negative numbers summing to 1")
    n_train = int(round(fractions[0] * n_trials))
    n_val = min(n_trials - n_train, int(round(fractions[1] * n_trials)))
    labels = np.array(["test"] * n_trials, dtype=object)
    order = np.random.default_rng(_session_seed(eid, seed)).permutation(n_trials)
    labels[order[:n_train]] = "train"
    labels[order[n_train : n_train + n_val]] = "val"
    return labels.astype(str)
