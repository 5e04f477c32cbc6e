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
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from neds.model.neds import NEDS

__all__ = ["TARGET_REGIONS", "unit_embeddings", "probe", "FEATURE_SETS", "N_FOLDS", "C_GRID"]

TARGET_REGIONS = ("CA1", "DG", "LP", "PO", "VISa")
FEATURE_SETS = ("input", "output", "both", "mean_rate", "psth")
N_FOLDS = 5  # cross-validation folds; a region needs at least this many units to be probed
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # SVM regularisation, chosen per training fold by inner cross-validation


def unit_embeddings(model: NEDS) -> list[dict[str, np.ndarray]]:
    """Per session of the model: {'input': (N, H), 'output': (N, H), 'both': (N, 2H)}."""
    out = []
    with np.errstate(all="ignore"):
        for s, n in enumerate(model.n_units.tolist()):
            w1 = model.spk_w1[s, :n, : 2 * n].detach().cpu().numpy()  # (N, 2N): unit n's column of Linear(N, 2N)
            w2 = model.spk_w2[s, : 2 * n].detach().cpu().numpy()  # (2N, H)
            inp = w1 @ w2  # (N, H)
            outp = model.spk_out_w[s, :, :n].detach().cpu().numpy().T  # (N, H): unit n's row of Linear(H, N)
            out.append({"input": inp, "output": outp, "both": np.concatenate([inp, outp], axis=1)})
    return out


def probe(features: np.ndarray, regions: np.ndarray, seed: int = 0, n_splits: int = N_FOLDS) -> dict:
    """Cross-validated linear SVM predicting the region of each unit from its features.

    Parameters
    ----------
    features : (U, F) unit features (standardised inside each training fold)
    regions : (U,) region labels, each in TARGET_REGIONS
    seed : shuffling seed of the folds

    Returns
    -------
    dict: accuracy and balanced_accuracy (mean over folds) with their s.e.m., per-region F1 and
    the confusion matrix (rows true, columns predicted, TARGET_REGIONS order) of the pooled
    out-of-fold predictions, ``svm_c``, the C chosen in each outer fold, and ``predicted``, each
    unit's out-of-fold predicted region (in the order of ``regions``).
    """
    regions = np.asarray(regions).astype(str)
    features = np.asarray(features, dtype=np.float64)
    present = [r for r in TARGET_REGIONS if r in set(regions)]
    counts = [int((regions == r).sum()) for r in present]
    if len(present) < 2 or min(counts) < n_splits:
        raise ValueError(
            f"probing needs >= 2 regions with >= {n_splits} units each, got {dict(zip(present, counts))}"
        )
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
    f1 = f1_score(regions, predicted, labels=list(TARGET_REGIONS), average=None, zero_division=0)
    return {
        "accuracy": float(np.mean(acc)),
        "accuracy_sem": float(np.std(acc, ddof=1) / np.sqrt(len(acc))),
        "balanced_accuracy": float(np.mean(bacc)),
        "balanced_accuracy_sem": float(np.std(bacc, ddof=1) / np.sqrt(len(bacc))),
        "f1": {r: float(v) for r, v in zip(TARGET_REGIONS, f1)},
        "confusion": confusion_matrix(regions, predicted, labels=list(TARGET_REGIONS)).tolist(),
        "svm_c": chosen_c,
        "predicted": predicted.tolist(),
    }
