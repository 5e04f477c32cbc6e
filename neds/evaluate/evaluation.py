"""Encoding and decoding evaluations of one held-out session.

Every method is reduced to predictions on the session's test trials, in one layout:

* ``rate`` (K, T, N): predicted expected spike counts per bin (encoding, all behaviour visible);
* ``rate_from_<behaviour>`` (K, T, N): encoding from one behaviour, the others masked (Table 1);
* ``wheel``, ``whisker`` (K, T), ``choice_prob`` (K, 2), ``block_prob`` (K, 3): decoding.

:func:`score` turns whatever predictions a method has into the metrics table row, so NEDS, the
unimodal models, the baselines and the oracle are scored by the same code; the oracle's
predictions are the simulator's expected counts (:func:`oracle_rates`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from neds.data.dataset import TrialData
from neds.evaluate.metrics import (
    accuracy,
    balanced_accuracy,
    bits_per_spike,
    poisson_deviance_explained,
    psth_r2,
    r2_score,
    single_trial_r2,
)
from neds.model.base import TrialModel
from neds.model.masking import BEHAVIOURS, eval_masks
from neds.model.neds import NEDS
from neds.vocab import MULTIMODAL_MODE, SELECTION_METRICS

__all__ = [
    "run_model",
    "predict_model",
    "predict_trials",
    "oracle_rates",
    "score",
    "unscorable_targets",
    "conditions",
    "predictions_dataset",
    "SELECTION_KEYS",
]

SELECTION_KEYS = SELECTION_METRICS
"""The model-selection score is the mean of these (bits per spike and the four decoding scores,
as the paper selects models): :data:`neds.vocab.SELECTION_METRICS`, under the name the training
code imports."""


@torch.no_grad()
def run_model(
    model: NEDS, data: TrialData, idx: torch.Tensor, masks_fn, batch_size: int, device, bf16: bool = False
) -> dict[str, np.ndarray]:
    """Raw outputs (spikes log-rates, wheel, whisker, choice and block logits) of ``model`` on
    trials ``idx``, in batches, with the masks ``masks_fn(batch_size)``; bf16 autocast on CUDA."""
    outs: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(idx), batch_size):
        batch = data.batch(idx[start : start + batch_size]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            out = model(batch, masks_fn(batch.spikes.shape[0]).to(device))
        for name in ("spikes", "wheel", "whisker", "choice", "block"):
            outs.setdefault(name, []).append(getattr(out, name).float().cpu())
    return {k: torch.cat(v).numpy() for k, v in outs.items()}


def predict_model(
    model: TrialModel, data: TrialData, split: str = "test", batch_size: int = 64, per_behaviour: bool = True
) -> dict[str, np.ndarray]:
    """Predictions of a model (any architecture and mode) on one session's trials of ``split``.

    The model's session 0 must be the data's session (the per-session stages train one model on
    one held-out session). Encoding outputs only for modes that predict spikes, decoding outputs
    only for modes that predict behaviour; ``per_behaviour`` adds, for a multimodal NEDS model,
    the encoding from each behaviour alone (``rate_from_<behaviour>``, Table 1).
    """
    if len(data.eids) != 1:
        raise ValueError("predict_model evaluates one session at a time; load a single store")
    model.eval()
    device = next(model.parameters()).device
    idx = data.indices(split)
    n, t = data.n_units[0], data.spikes.shape[1]
    pred = predict_trials(model, data, idx, batch_size, device)
    if "rate" in pred:
        pred["rate"] = pred["rate"][:, :, :n]
        if per_behaviour and isinstance(model, NEDS) and model.mode == MULTIMODAL_MODE:
            for beh in BEHAVIOURS:
                out = run_model(
                    model, data, idx, lambda b, k=beh: eval_masks("encoding_from", b, t, keep=k), batch_size, device
                )
                pred[f"rate_from_{beh}"] = np.exp(out["spikes"][:, :, :n])
    return pred


def predict_trials(
    model: TrialModel, data: TrialData, idx: torch.Tensor, batch_size: int, device, bf16: bool = False
) -> dict[str, np.ndarray]:
    """The predictions (layout of this module, :meth:`~neds.model.base.TrialModel.predict`) of
    ``model`` on trials ``idx`` of any sessions, in batches, with bf16 autocast on CUDA when
    ``bf16``; ``rate`` keeps the padded units (N_max). Only the outputs the model's mode predicts."""
    outs: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(idx), batch_size):
        batch = data.batch(idx[start : start + batch_size]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            pred = model.predict(batch)
        for name, value in pred.items():
            outs.setdefault(name, []).append(value.float().cpu())
    return {k: torch.cat(v).numpy() for k, v in outs.items()}


def oracle_rates(truth_path: str | Path, data_store: str | Path, trials: np.ndarray) -> np.ndarray:
    """The simulator's expected counts for the given trials and the binned store's units: the
    oracle's ``rate`` prediction.

    Parameters
    ----------
    truth_path : the session's ground-truth store written by the simulator (``expected_counts``
        (trial, time, unit) over all its trials and units; ``probe``, ``cluster_id`` per unit)
    data_store : the session's binned store (its units: ``unit_probe``, ``unit_cluster_id``)
    trials : ALF trial indices

    Returns
    -------
    numpy.ndarray
        (K, T, N) float64 expected counts per bin, units in the binned store's order.

    Raises
    ------
    ValueError
        If a unit of the binned store is not in the ground truth (the two are of different runs).
    """
    from neds.io.store import open_binned, verify_store

    ds = open_binned(data_store)
    truth = verify_store(truth_path)
    key = {(str(p), int(c)): i for i, (p, c) in enumerate(zip(truth["probe"].values, truth["cluster_id"].values))}
    try:
        units = [key[(str(p), int(c))] for p, c in zip(ds["unit_probe"].values, ds["unit_cluster_id"].values)]
    except KeyError as exc:
        raise ValueError(
            f"unit {exc} of {data_store} is not in the ground truth {truth_path}; regenerate both"
        ) from None
    expected = truth["expected_counts"].values  # (all trials, T, all units)
    return np.asarray(expected[np.asarray(trials)][:, :, units], dtype=np.float64)


def conditions(choice: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Condition label per trial for PSTHs: choice x block (e.g. 'c1-b2')."""
    return np.array([f"c{c}-b{b}" for c, b in zip(np.asarray(choice), np.asarray(block))])


# decoding metrics of each target, and how its values read in a reason
_TARGET_METRICS = {
    "choice": ("choice_acc", "choice_balanced_acc"),
    "block": ("block_acc", "block_balanced_acc"),
    "wheel": ("wheel_r2",),
    "whisker": ("whisker_r2",),
}
_CLASS_NAMES = {"choice": {0: "choice -1", 1: "choice +1"}, "block": {0: "pLeft 0.2", 1: "pLeft 0.5", 2: "pLeft 0.8"}}


def unscorable_targets(data: TrialData, split: str = "test") -> dict[str, str]:
    """Decoding targets that cannot be scored on one session, with the reason: a target that is
    constant on the ``split`` trials or on the training trials (no blocks, one-sided choices, a
    flat trace). An accuracy there says nothing about decoding (always 1.0 for a model that
    learned the one class, 0.0 for one that did not), and R² is undefined.

    Returns
    -------
    dict, target ('choice', 'block', 'wheel', 'whisker') -> one-line reason
    """
    out: dict[str, str] = {}
    values = {"choice": data.choice, "block": data.block, "wheel": data.wheel, "whisker": data.whisker}
    for which in dict.fromkeys((split, "train")):
        idx = data.indices(which)
        if len(idx) == 0:
            continue
        for target, tensor in values.items():
            if target in out:
                continue
            v = tensor[idx].numpy()
            if np.unique(v).size <= 1:
                if target in _CLASS_NAMES:
                    label = _CLASS_NAMES[target].get(int(v.flat[0]), int(v.flat[0]))
                    out[target] = f"{target} is constant on the {which} trials (all {label})"
                else:
                    out[target] = f"{target} is constant on the {which} trials (value {float(v.flat[0]):.3g})"
    return out


def score(
    pred: dict[str, np.ndarray], data: TrialData, split: str = "test"
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of one method's predictions on one session.

    A decoding target that is constant on the session's ``split`` or training trials
    (:func:`unscorable_targets`) is not scored: its metrics are NaN, and ``row["not_scored"]``
    says which and why ('' when everything predicted was scored).

    Returns
    -------
    (row, per_unit): ``row`` maps metric names to floats (encoding:
    :data:`neds.vocab.ENCODING_METRICS`, plus ``bps_from_<behaviour>`` where predicted; decoding:
    :data:`neds.vocab.DECODING_METRICS`) and ``not_scored`` to a
    string; ``per_unit`` maps per-unit metric names to (N,) arrays.
    """
    row, per_unit = _score(pred, data, split)
    reasons = []
    for target, reason in unscorable_targets(data, split).items():
        keys = [k for k in _TARGET_METRICS[target] if k in row]
        if keys:
            row.update({k: float("nan") for k in keys})
            reasons.append(f"{', '.join(keys)}: {reason}")
    row["not_scored"] = "; ".join(reasons)
    return row, per_unit


def _score(pred: dict[str, np.ndarray], data: TrialData, split: str) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    idx = data.indices(split)
    n = data.n_units[0]
    counts = data.spikes[idx][:, :, :n].numpy().astype(np.float64)
    choice, block = data.choice[idx].numpy(), data.block[idx].numpy()
    row: dict[str, float] = {}
    per_unit: dict[str, np.ndarray] = {}
    if "rate" in pred:
        rate = pred["rate"]
        per_unit["bps"] = bits_per_spike(counts, rate)
        per_unit["deviance_explained"] = poisson_deviance_explained(counts, rate)
        per_unit["single_trial_r2"] = single_trial_r2(counts, rate)
        per_unit["psth_r2"] = psth_r2(counts, rate, conditions(choice, block))
        row["bps_unit_mean"] = float(np.nanmean(per_unit["bps"]))
        row["bps_pooled"] = bits_per_spike(counts, rate, pooled=True)
        for key in ("deviance_explained", "single_trial_r2", "psth_r2"):
            row[key] = float(np.nanmean(per_unit[key]))
        for beh in BEHAVIOURS:
            if f"rate_from_{beh}" in pred:
                row[f"bps_from_{beh}"] = float(np.nanmean(bits_per_spike(counts, pred[f"rate_from_{beh}"])))
    if "wheel" in pred:
        row["wheel_r2"] = r2_score(data.wheel[idx].numpy(), pred["wheel"])
        row["whisker_r2"] = r2_score(data.whisker[idx].numpy(), pred["whisker"])
    if "choice_prob" in pred:
        c_hat, b_hat = pred["choice_prob"].argmax(1), pred["block_prob"].argmax(1)
        row["choice_acc"], row["choice_balanced_acc"] = accuracy(choice, c_hat), balanced_accuracy(choice, c_hat)
        row["block_acc"], row["block_balanced_acc"] = accuracy(block, b_hat), balanced_accuracy(block, b_hat)
    return row, per_unit


def predictions_dataset(
    pred: dict[str, np.ndarray], per_unit: dict[str, np.ndarray], data: TrialData, split: str, attrs: dict
) -> xr.Dataset:
    """Predictions and per-unit metrics as an xarray dataset (dims trial, time, unit)."""
    idx = data.indices(split)
    n = data.n_units[0]
    variables = {}
    for key, value in pred.items():
        if value.ndim == 3:
            variables[key] = (("trial", "time", "unit"), value.astype(np.float32))
        elif value.ndim == 2 and value.shape[1] == data.spikes.shape[1]:
            variables[key] = (("trial", "time"), value.astype(np.float32))
        else:
            variables[key] = (("trial", f"{key.split('_')[0]}_class"), value.astype(np.float32))
    for key, value in per_unit.items():
        variables[f"unit_{key}"] = (("unit",), value.astype(np.float64))
    coords = {"trial": data.trial[idx].numpy(), "unit": np.arange(n)}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
