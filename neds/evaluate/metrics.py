"""Encoding and decoding metrics (pure numpy functions).

Shapes: K trials, T bins, N units. Counts are spikes per bin; rates are expected counts per bin
(the exponential of a model's log-rate output), so no bin width enters any formula.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "bits_per_spike",
    "poisson_deviance_explained",
    "r2_score",
    "single_trial_r2",
    "psth_r2",
    "accuracy",
    "balanced_accuracy",
]

_MIN_RATE = 1e-9  # predicted rates are clipped here so that log(rate) stays finite


def _check_kt_n(counts: np.ndarray, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    if counts.shape != rate.shape or counts.ndim != 3:
        raise ValueError(f"counts {counts.shape} and rate {rate.shape} must both be (K, T, N)")
    return counts, rate


def _poisson_ll(counts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Poisson log-likelihood summed over trials and bins, per unit, without the log(k!) term
    (it cancels between any two models of the same counts). (K, T, N) -> (N,)."""
    rate = np.maximum(rate, _MIN_RATE)
    return (counts * np.log(rate) - rate).sum(axis=(0, 1))


def bits_per_spike(counts: np.ndarray, rate: np.ndarray, pooled: bool = False) -> np.ndarray | float:
    """Bits per spike of predicted rates against each unit's mean-rate null model.

    bps_n = (LL(model) - LL(null)) / (n_spikes_n * ln 2), with Poisson LL and the null predicting
    unit n's mean count per bin over the given trials.

    Parameters
    ----------
    counts : (K, T, N) observed spike counts
    rate : (K, T, N) predicted expected counts per bin, >= 0 (clipped at 1e-9)
    pooled : False -> (N,) per-unit values (NEDS reports their mean: ``bps_unit_mean``);
        True -> one float, the total LL gain over all units divided by all spikes (Neural Latents
        Benchmark and IBL BrainWideBench: ``bps_pooled``)

    Returns
    -------
    (N,) float, NaN for a unit without spikes in these trials (undefined); or a float, NaN if
    there are no spikes at all. Units without spikes contribute nothing to the pooled value.
    """
    counts, rate = _check_kt_n(counts, rate)
    null = np.broadcast_to(counts.mean(axis=(0, 1), keepdims=True), counts.shape)
    gain = _poisson_ll(counts, rate) - _poisson_ll(counts, null)  # (N,)
    n_spikes = counts.sum(axis=(0, 1))
    if pooled:
        total = n_spikes.sum()
        return float(gain[n_spikes > 0].sum() / (total * np.log(2))) if total > 0 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_spikes > 0, gain / (n_spikes * np.log(2)), np.nan)


def poisson_deviance_explained(counts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Per unit, 1 - D(model) / D(null) with Poisson deviance and the mean-rate null.

    D(mu) = 2 * sum[y log(y / mu) - (y - mu)] (y log y = 0 at y = 0). (K, T, N) -> (N,);
    NaN for a unit without spikes (its null deviance is 0).
    """
    counts, rate = _check_kt_n(counts, rate)
    rate = np.maximum(rate, _MIN_RATE)
    null = np.broadcast_to(counts.mean(axis=(0, 1), keepdims=True), counts.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0)), 0.0)
        dev_model = 2 * (ylogy - counts * np.log(rate) - (counts - rate)).sum(axis=(0, 1))
        dev_null = 2 * (ylogy - counts * np.log(np.maximum(null, _MIN_RATE)) - (counts - null)).sum(axis=(0, 1))
        return np.where(dev_null > 0, 1.0 - dev_model / dev_null, np.nan)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination over all elements (e.g. trials x bins), 1 - SSE / SST.

    A constant target (SST = 0) gives NaN: R² is undefined there.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in size")
    sst = ((y_true - y_true.mean()) ** 2).sum()
    if sst == 0:
        return float("nan")
    return float(1.0 - ((y_true - y_pred) ** 2).sum() / sst)


def single_trial_r2(counts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Per unit, R² of the predicted rate against the single-trial counts over trials x bins.

    (K, T, N) -> (N,); NaN for a unit whose counts are constant (e.g. no spikes).
    """
    counts, rate = _check_kt_n(counts, rate)
    return np.array([r2_score(counts[:, :, n], rate[:, :, n]) for n in range(counts.shape[2])])


def psth_r2(counts: np.ndarray, rate: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """Per unit, R² of the predicted PSTH against the observed PSTH, per condition.

    The PSTH of a condition is the mean over its trials, per bin; the R² pools all conditions'
    bins (observed vs predicted). Conditions: e.g. choice x block, one label per trial.

    Parameters
    ----------
    counts, rate : (K, T, N)
    conditions : (K,) hashable labels

    Returns
    -------
    (N,) float; NaN for a unit whose observed PSTHs are constant.
    """
    counts, rate = _check_kt_n(counts, rate)
    conditions = np.asarray(conditions)
    if conditions.shape != (counts.shape[0],):
        raise ValueError(f"conditions {conditions.shape} must have one label per trial ({counts.shape[0]})")
    labels = np.unique(conditions)
    obs = np.stack([counts[conditions == c].mean(axis=0) for c in labels])  # (C, T, N)
    pred = np.stack([rate[conditions == c].mean(axis=0) for c in labels])
    return np.array([r2_score(obs[:, :, n], pred[:, :, n]) for n in range(counts.shape[2])])


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct class predictions (NaN for no trials)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of the per-class recall (NaN for no trials)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))
