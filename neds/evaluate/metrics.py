"""Encoding and decoding metrics (pure numpy functions).

Shapes: K trials, T bins, N units. Counts are spikes per bin; rates are expected counts per bin.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bits_per_spike", "r2_score", "accuracy", "balanced_accuracy"]


def _poisson_ll(counts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Poisson log-likelihood summed over trials and bins, per unit, without the log(k!) term
    (it cancels between model and null). counts, rate: (K, T, N) -> (N,)."""
    rate = np.maximum(rate, 1e-12)
    return (counts * np.log(rate) - rate).sum(axis=(0, 1))


def bits_per_spike(counts: np.ndarray, rate: np.ndarray, pooled: bool = False) -> np.ndarray | float:
    """Bits per spike of predicted rates against each unit's mean-rate null model.

    bps_n = (LL(model) - LL(null)) / (n_spikes_n * ln 2), with Poisson LL and the null predicting
    unit n's mean count per bin over the given trials.

    Parameters
    ----------
    counts : (K, T, N) observed spike counts
    rate : (K, T, N) predicted expected counts per bin (exp of the log-rate output), > 0
    pooled : False -> (N,) per-unit values (NEDS reports their mean, ``bps_unit_mean``);
        True -> one float, total LL gain over total spikes (NLB / IBL BrainWideBench, ``bps_pooled``)

    Returns
    -------
    (N,) float, NaN for a unit without spikes in the trials (its bps is undefined), or a float.
    """
    counts = np.asarray(counts, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    if counts.shape != rate.shape or counts.ndim != 3:
        raise ValueError(f"counts {counts.shape} and rate {rate.shape} must both be (K, T, N)")
    null = np.broadcast_to(counts.mean(axis=(0, 1), keepdims=True), counts.shape)
    gain = _poisson_ll(counts, rate) - _poisson_ll(counts, null)  # (N,)
    n_spikes = counts.sum(axis=(0, 1))
    if pooled:
        total = n_spikes.sum()
        return float(gain[n_spikes > 0].sum() / (total * np.log(2))) if total > 0 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_spikes > 0, gain / (n_spikes * np.log(2)), np.nan)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination over all elements (trials x bins), 1 - SSE / SST.

    A constant target (SST = 0) gives NaN: R² is undefined there.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    sst = ((y_true - y_true.mean()) ** 2).sum()
    if sst == 0:
        return float("nan")
    return float(1.0 - ((y_true - y_pred) ** 2).sum() / sst)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct class predictions (NaN for no trials)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of the per-class recall."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))
