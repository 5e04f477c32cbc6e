"""Linear per-session baselines.

Encoding: ridge regression from the behaviour design of a trial (wheel speed and whisker motion
energy over its T bins, choice and block one-hot) to every unit's counts in every bin.
Decoding: ridge regression from the trial's spike counts (all units x bins) to wheel speed and
whisker motion energy over its bins, logistic regression to choice and block. Features are
z-scored with the training trials' statistics; the regularisation is chosen on the validation
trials, then the model is refitted on training trials only and predicts the test trials.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from neds.data.dataset import TrialData
from neds.evaluate.metrics import bits_per_spike, r2_score
from neds.vocab import DYNAMIC_BEHAVIOURS, N_CLASSES

__all__ = ["RidgePath", "behaviour_design", "spike_design", "linear_encoding", "linear_decoding", "ALPHAS", "CS"]

ALPHAS = tuple(10.0 ** np.arange(-1, 6))  # ridge penalties tried
CS = tuple(10.0 ** np.arange(-4, 2))  # inverse logistic penalties tried
RATE_FLOOR = 0.01  # linear rates are clipped below at this fraction of the unit's mean count


class RidgePath:
    """Ridge regression for many penalties from one SVD: W(alpha) = V diag(s / (s^2 + alpha)) U^T Y.

    X (K, D) and Y (K, M) are centred with their training means (the intercept is not penalised).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x_mean, self.y_mean = x.mean(0), y.mean(0)
        u, self.s, self.vt = np.linalg.svd(x - self.x_mean, full_matrices=False)
        self.uty = u.T @ (y - self.y_mean)  # (r, M)

    def predict(self, x: np.ndarray, alpha: float) -> np.ndarray:
        coef = self.vt.T @ ((self.s / (self.s**2 + alpha))[:, None] * self.uty)  # (D, M)
        return (x - self.x_mean) @ coef + self.y_mean


def _zscore(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


def behaviour_design(data: TrialData, idx) -> np.ndarray:
    """(K, 2T + 5): wheel and whisker over the bins, choice one-hot (2), block one-hot (3)."""
    idx = np.asarray(idx)
    return np.concatenate(
        [
            data.wheel[idx].numpy(),
            data.whisker[idx].numpy(),
            np.eye(N_CLASSES["choice"])[data.choice[idx].numpy()],
            np.eye(N_CLASSES["block"])[data.block[idx].numpy()],
        ],
        axis=1,
    ).astype(np.float64)


def spike_design(data: TrialData, idx) -> np.ndarray:
    """(K, T * N): the trial's spike counts of the session's real units, flattened."""
    n = data.n_units[int(data.session[int(np.asarray(idx)[0])])]
    return data.spikes[np.asarray(idx)][:, :, :n].numpy().reshape(len(idx), -1).astype(np.float64)


def _rate(pred: np.ndarray, mean_count: np.ndarray) -> np.ndarray:
    return np.maximum(pred, RATE_FLOOR * np.maximum(mean_count, 1e-6))


def linear_encoding(data: TrialData, split: str = "test") -> tuple[dict[str, np.ndarray], dict]:
    """Ridge encoding model of one session; returns (predictions {'rate': (K, T, N)}, fit info)."""
    tr, va, te = (data.indices(s).numpy() for s in ("train", "val", split))
    n, t = data.n_units[0], data.spikes.shape[1]
    x_tr, x_va, x_te = _zscore(behaviour_design(data, tr), behaviour_design(data, va), behaviour_design(data, te))
    y_tr = data.spikes[tr][:, :, :n].numpy().reshape(len(tr), -1).astype(np.float64)
    y_va = data.spikes[va][:, :, :n].numpy().astype(np.float64)
    mean_count = y_tr.reshape(len(tr), t, n).mean(axis=(0, 1))
    path = RidgePath(x_tr, y_tr)
    scores = {}
    for alpha in ALPHAS:
        rate = _rate(path.predict(x_va, alpha).reshape(len(va), t, n), mean_count)
        scores[alpha] = float(np.nanmean(bits_per_spike(y_va, rate)))
    best = max(scores, key=scores.get)
    rate = _rate(path.predict(x_te, best).reshape(len(te), t, n), mean_count)
    return {"rate": rate}, {"encoding_alpha": best, "encoding_val_bps": scores[best]}


def linear_decoding(data: TrialData, split: str = "test") -> tuple[dict[str, np.ndarray], dict]:
    """Ridge (wheel, whisker) and logistic (choice, block) decoders of one session."""
    tr, va, te = (data.indices(s).numpy() for s in ("train", "val", split))
    x_tr, x_va, x_te = _zscore(spike_design(data, tr), spike_design(data, va), spike_design(data, te))
    pred: dict[str, np.ndarray] = {}
    info: dict = {}
    for name in DYNAMIC_BEHAVIOURS:
        y = getattr(data, name).numpy().astype(np.float64)
        path = RidgePath(x_tr, y[tr])
        scores = {a: r2_score(y[va], path.predict(x_va, a)) for a in ALPHAS}
        best = max(scores, key=lambda a: -np.inf if np.isnan(scores[a]) else scores[a])
        pred[name] = path.predict(x_te, best)
        info[f"{name}_alpha"] = best
    for name, n_classes in N_CLASSES.items():
        y = getattr(data, name).numpy()
        prob = np.zeros((len(te), n_classes))
        if len(np.unique(y[tr])) < 2:  # one class only: predict it
            prob[:, int(y[tr][0])] = 1.0
            pred[f"{name}_prob"] = prob
            info[f"{name}_C"] = None
            continue
        scores, fits = {}, {}
        for c in CS:
            fits[c] = LogisticRegression(C=c, max_iter=2000).fit(x_tr, y[tr])
            scores[c] = float((fits[c].predict(x_va) == y[va]).mean()) if len(va) else 0.0
        best = max(scores, key=scores.get)
        prob[:, fits[best].classes_] = fits[best].predict_proba(x_te)
        pred[f"{name}_prob"] = prob
        info[f"{name}_C"] = best
    return pred, info
