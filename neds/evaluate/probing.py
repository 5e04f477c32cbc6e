"""Brain-region probing of unit embeddings.

A unit's embedding comes from the session-specific layers of a trained model:

* ``output``: its row of the spike output layer, Linear(H -> N): H numbers;
* ``input``: its column of the first spike input layer, Linear(N -> 2N), carried through the
  second, Linear(2N -> H), so that units of sessions with different N share one H-dimensional
  space (the Softsign between them is linearised at 0, where its slope is 1);
* ``both``: the two concatenated.

A linear SVM on standardised embeddings, with stratified 5-fold cross-validation, predicts each
unit's Beryl region among the five repeated-site targets. Its regularisation C is chosen inside
each training fold by an inner stratified cross-validation over :data:`C_GRID` (nested, so the
test fold never informs the choice). Simple unit features are probed the
same way for comparison: the mean rate (log) and the trial-averaged response (PSTH).

The target regions are :data:`neds.vocab.REGION_NAMES`. :func:`probe_regions` probes the units of
trained models (a pretrained model with its sessions, or one fine-tuned model per held-out
session), each session paired with its model and its binned store by its eid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from neds.evaluate.tables import mean_sem
from neds.model.neds import NEDS
from neds.vocab import REGION_NAMES

__all__ = [
    "unit_embeddings",
    "probe",
    "unit_features",
    "probe_regions",
    "FEATURE_SETS",
    "EMBEDDING_SETS",
    "N_FOLDS",
    "C_GRID",
]

_log = logging.getLogger(__name__)

FEATURE_SETS = ("input", "output", "both", "mean_rate", "psth")
EMBEDDING_SETS = ("input", "output", "both")
"""The feature sets that are unit embeddings (the others are simple unit features)."""
N_FOLDS = 5  # cross-validation folds; a region needs at least this many units to be probed
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # SVM regularisation, chosen per training fold by inner cross-validation


def unit_embeddings(model: NEDS) -> list[dict[str, np.ndarray]]:
    """Per session of the model: {'input': (N, H), 'output': (N, H), 'both': (N, 2H)}."""
    out = []
    stitcher, head = model.sessions.spike_stitcher, model.sessions.spike_head
    with np.errstate(all="ignore"):
        for s, n in enumerate(model.n_units.tolist()):
            w1 = stitcher.w1[s, :n, : 2 * n].detach().cpu().numpy()  # (N, 2N): unit n's column of Linear(N, 2N)
            w2 = stitcher.w2[s, : 2 * n].detach().cpu().numpy()  # (2N, H)
            inp = w1 @ w2  # (N, H)
            outp = head.weight[s, :, :n].detach().cpu().numpy().T  # (N, H): unit n's row of Linear(H, N)
            out.append({"input": inp, "output": outp, "both": np.concatenate([inp, outp], axis=1)})
    return out


def probe(features: np.ndarray, regions: np.ndarray, seed: int = 0, n_splits: int = N_FOLDS) -> dict:
    """Cross-validated linear SVM predicting the region of each unit from its features.

    Parameters
    ----------
    features : (U, F) unit features (standardised inside each training fold)
    regions : (U,) region labels, each in :data:`neds.vocab.REGION_NAMES`
    seed : shuffling seed of the folds

    Returns
    -------
    dict: accuracy and balanced_accuracy (mean over folds) with their s.e.m., per-region F1 and
    the confusion matrix (rows true, columns predicted, REGION_NAMES order) of the pooled
    out-of-fold predictions, ``svm_c``, the C chosen in each outer fold, and ``predicted``, each
    unit's out-of-fold predicted region (in the order of ``regions``).
    """
    regions = np.asarray(regions).astype(str)
    features = np.asarray(features, dtype=np.float64)
    present = [r for r in REGION_NAMES if r in set(regions)]
    counts = [int((regions == r).sum()) for r in present]
    if len(present) < 2 or min(counts) < n_splits:
        raise ValueError(f"probing needs >= 2 regions with >= {n_splits} units each, got {dict(zip(present, counts))}")
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    predicted = np.empty(regions.shape, dtype=object)
    acc, bacc = [], []
    chosen_c = []
    for train, test in folds.split(features, regions):
        inner_splits = min(n_splits, min(int((regions[train] == r).sum()) for r in present))
        clf = GridSearchCV(
            make_pipeline(StandardScaler(), LinearSVC(max_iter=20000, dual="auto")),
            {"linearsvc__C": list(C_GRID)},
            cv=StratifiedKFold(n_splits=max(inner_splits, 2), shuffle=True, random_state=seed),
        )
        clf.fit(features[train], regions[train])
        chosen_c.append(float(clf.best_params_["linearsvc__C"]))
        predicted[test] = clf.predict(features[test])
        hit = predicted[test] == regions[test]
        acc.append(hit.mean())
        bacc.append(np.mean([hit[regions[test] == r].mean() for r in np.unique(regions[test])]))
    predicted = predicted.astype(str)
    f1 = f1_score(regions, predicted, labels=list(REGION_NAMES), average=None, zero_division=0)
    acc_mean, acc_sem, _ = mean_sem(acc)
    bacc_mean, bacc_sem, _ = mean_sem(bacc)
    return {
        "accuracy": acc_mean,
        "accuracy_sem": acc_sem,
        "balanced_accuracy": bacc_mean,
        "balanced_accuracy_sem": bacc_sem,
        "f1": {r: float(v) for r, v in zip(REGION_NAMES, f1)},
        "confusion": confusion_matrix(regions, predicted, labels=list(REGION_NAMES)).tolist(),
        "svm_c": chosen_c,
        "predicted": predicted.tolist(),
    }


def unit_features(models: Mapping[str, str | Path], stores: Mapping[str, str | Path]) -> dict:
    """The features of every unit of the given sessions, each session paired with its model and
    its binned store by its eid.

    Parameters
    ----------
    models : eid -> the checkpoint trained on that session (the pretrained model: the same
        checkpoint for each of its sessions; fine-tuned models: one per session)
    stores : eid -> the session's binned store; the same eids as ``models``. Units are stacked in
        the order of its keys.

    Returns
    -------
    dict with, over all units: ``features`` (feature set -> (U, F) array, :data:`FEATURE_SETS`),
    ``region``, ``session`` and ``unit_uuid`` ((U,) text arrays)

    Raises
    ------
    ValueError
        If ``models`` and ``stores`` hold different eids, a store is of another session than its
        eid, or a model was not trained on the session it is given for.
    """
    from neds.io.store import as_str, open_binned
    from neds.train import load_model

    if set(models) != set(stores):
        raise ValueError(
            f"models and stores must be given for the same sessions; models only: "
            f"{sorted(set(models) - set(stores))}, stores only: {sorted(set(stores) - set(models))}"
        )
    loaded: dict[str, tuple[list[dict[str, np.ndarray]], list[str]]] = {}  # checkpoint -> embeddings, its eids
    feats: dict[str, list[np.ndarray]] = {k: [] for k in FEATURE_SETS}
    regions, sessions, uuids = [], [], []
    for eid, store in stores.items():
        ckpt_path = str(models[eid])
        if ckpt_path not in loaded:
            model, ckpt = load_model(ckpt_path)
            loaded[ckpt_path] = (unit_embeddings(model), list(ckpt["vocab"]["eids"]))
        embeddings, vocab = loaded[ckpt_path]
        if eid not in vocab:
            raise ValueError(f"{ckpt_path} was trained on {vocab}, not on session {eid}")
        ds = open_binned(store)
        if ds.attrs["eid"] != eid:
            raise ValueError(f"{store} holds session {ds.attrs['eid']}, not {eid}")
        emb = embeddings[vocab.index(eid)]
        for key in EMBEDDING_SETS:
            feats[key].append(emb[key])
        feats["mean_rate"].append(np.log(ds["unit_firing_rate_hz"].values)[:, None])
        feats["psth"].append(ds["spikes"].values.mean(axis=0).T.astype(np.float64))  # (N, T)
        regions.append(as_str(ds["unit_region"].values))
        sessions.append(np.full(ds.sizes["unit"], eid))
        uuids.append(as_str(ds["unit_uuid"].values))
    return {
        "features": {k: np.concatenate(v) for k, v in feats.items()},
        "region": np.concatenate(regions),
        "session": np.concatenate(sessions),
        "unit_uuid": np.concatenate(uuids),
    }


def probe_regions(
    target: str, models: Mapping[str, str | Path], stores: Mapping[str, str | Path], seed: int = 0
) -> tuple[dict, xr.Dataset]:
    """Brain-region probing of the units of trained models, with every feature set.

    Parameters
    ----------
    target : the name of the probed models ('pretrain', 'finetune'), recorded in the outputs
    models, stores : eid -> checkpoint, eid -> binned store (:func:`unit_features`)
    seed : shuffling seed of the cross-validation folds

    Returns
    -------
    (result, embeddings)
        ``result``: the probe's summary (``results/probing/<target>/probe.json``): units per
        region, chance (the majority region's fraction), and per feature set the metrics of
        :func:`probe` without the per-unit predictions; ``results`` empty and ``skipped`` the
        reason when too few units allow no probing. Units outside the target regions are left
        out (counted), and so are regions with fewer units than :data:`N_FOLDS` (listed).
        ``embeddings``: the standardised input+output embeddings of the probed units (unit,
        feature) with their region, session and uuid, and each unit's out-of-fold predicted
        region per feature set (``predicted_<features>``).
    """
    from neds.io.store import text_array

    units = unit_features(models, stores)
    feats, regions_all = units["features"], units["region"]
    # regions with fewer units than cross-validation folds cannot be probed: left out, and said so
    sizes = {r: int((regions_all == r).sum()) for r in REGION_NAMES}
    probed = [r for r in REGION_NAMES if sizes[r] >= N_FOLDS]
    keep = np.isin(regions_all, probed)
    labels = regions_all[keep]
    counts = {r: int((labels == r).sum()) for r in REGION_NAMES}
    out = {
        "target": target,
        "n_units": int(keep.sum()),
        "n_units_outside_targets": int((~np.isin(regions_all, REGION_NAMES)).sum()),
        "regions_left_out": {
            r: f"{sizes[r]} units, fewer than the {N_FOLDS} folds" for r in REGION_NAMES if r not in probed
        },
        "units_per_region": counts,
        "regions": list(REGION_NAMES),
        "chance": max(counts.values()) / max(1, sum(counts.values())),
    }
    try:
        out["results"] = {name: probe(feats[name][keep], labels, seed=seed) for name in FEATURE_SETS}
    except ValueError as exc:  # too few units per region (tiny runs): recorded, not fatal
        out["skipped"] = str(exc)
        out["results"] = {}
        _log.warning("probing %s skipped: %s", target, exc)
    # per-unit out-of-fold predictions go to the embeddings store, not the summary
    predicted = {name: res.pop("predicted") for name, res in out["results"].items()}
    both = feats["both"][keep]
    both = (both - both.mean(0)) / np.where(both.std(0) > 0, both.std(0), 1.0)
    ds = xr.Dataset(
        {
            "embedding": (("unit", "feature"), both.astype(np.float32)),
            **{f"predicted_{name}": ("unit", text_array(np.asarray(p))) for name, p in predicted.items()},
        },
        coords={
            "region": ("unit", text_array(labels)),
            "session": ("unit", text_array(units["session"][keep])),
            "unit_uuid": ("unit", text_array(units["unit_uuid"][keep])),
        },
        attrs={
            "target": target,
            "description": "standardised input+output layer embeddings (neds.evaluate.probing) "
            "and each unit's out-of-fold predicted region per feature set (predicted_<features>)",
        },
    )
    return out, ds
