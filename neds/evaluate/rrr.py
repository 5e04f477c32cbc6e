"""Multi-session reduced-rank regression baselines.

Encoding: a temporal basis shared across sessions maps a trial's behaviour design x (wheel and
whisker over the T bins, choice and block one-hot; see ``baselines.behaviour_design``) to R
latent time courses, ``z[t, r] = sum_d V[r, t, d] x[d]``; each session reads its units out of them
with its own loadings, ``y[t, n] = b_s[t, n] + sum_r U_s[n, r] z[t, r]``. V, U_s and b_s are
fitted on the pretraining sessions (squared error, Adam); a held-out session keeps V and gets its
own U_s and b_s by least squares on its training trials.

Decoding: each session projects its units to R channels, ``z[t, r] = sum_n W_s[n, r] y[t, n]``;
a readout shared across sessions maps them to wheel and whisker at the same bin with time-varying
weights, ``w[t] = c[t] + sum_r G[r, t] z[t, r]``, and the whole (T x R) channel time courses to
choice and block logits. The readout is fitted with W_s on the
pretraining sessions; a held-out session keeps the readout and fits only its own W_s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neds.data.dataset import TrialData
from neds.evaluate.baselines import RATE_FLOOR, behaviour_design

__all__ = ["RRRConfig", "RRREncoder", "RRRDecoder", "fit_rrr_encoder", "fit_rrr_decoder", "save_rrr", "load_rrr"]


@dataclass(frozen=True)
class RRRConfig:
    rank: int = 4
    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0


def _standardise(x: np.ndarray, mu=None, sd=None):
    mu = x.mean(0) if mu is None else mu
    sd = x.std(0) if sd is None else sd
    return (x - mu) / np.where(sd > 0, sd, 1.0), mu, sd


class RRREncoder:
    """Shared temporal basis V (R, T, D) from the pretraining sessions."""

    def __init__(self, v: np.ndarray, mu: np.ndarray, sd: np.ndarray):
        self.v, self.mu, self.sd = v, mu, sd

    def latents(self, x: np.ndarray) -> np.ndarray:
        """(K, D) behaviour designs -> (K, T, R) latent time courses."""
        xs, _, _ = _standardise(x, self.mu, self.sd)
        return np.einsum("rtd,kd->ktr", self.v, xs)

    def predict_session(self, data: TrialData, split: str = "test") -> dict[str, np.ndarray]:
        """Fit the held-out session's loadings on its train trials; predict ``split`` rates (K, T, N)."""
        tr, te = data.indices("train").numpy(), data.indices(split).numpy()
        n = data.n_units[0]
        y = data.spikes[tr][:, :, :n].numpy().astype(np.float64)  # (K, T, N)
        z = self.latents(behaviour_design(data, tr))  # (K, T, R)
        z_mean, y_mean = z.mean(0), y.mean(0)  # per-bin intercepts
        zc = (z - z_mean).reshape(-1, z.shape[2])
        yc = (y - y_mean).reshape(-1, n)
        u, *_ = np.linalg.lstsq(zc, yc, rcond=None)  # (R, N)
        z_te = self.latents(behaviour_design(data, te))
        pred = y_mean + np.einsum("ktr,rn->ktn", z_te - z_mean, u)
        return {"rate": np.maximum(pred, RATE_FLOOR * np.maximum(y.mean((0, 1)), 1e-6))}


def fit_rrr_encoder(sessions: list[TrialData], cfg: RRRConfig = RRRConfig()) -> RRREncoder:
    """Fit the shared basis and per-session loadings on the train trials of several sessions."""
    torch.manual_seed(cfg.seed)
    xs = [behaviour_design(d, d.indices("train").numpy()) for d in sessions]
    _, mu, sd = _standardise(np.concatenate(xs))
    xs = [torch.tensor(_standardise(x, mu, sd)[0], dtype=torch.float32) for x in xs]
    ys = [d.spikes[d.indices("train")][:, :, : d.n_units[0]].float() for d in sessions]
    t, dim = ys[0].shape[1], xs[0].shape[1]
    v = torch.nn.Parameter(torch.randn(cfg.rank, t, dim) * 0.01)
    us = [torch.nn.Parameter(torch.randn(y.shape[2], cfg.rank) * 0.1) for y in ys]
    bs = [torch.nn.Parameter(y.mean(0).clone()) for y in ys]
    opt = torch.optim.Adam([v, *us, *bs], lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = sum(
            ((torch.einsum("rtd,kd->ktr", v, x) @ u.T + b - y) ** 2).mean() for x, y, u, b in zip(xs, ys, us, bs)
        )
        loss.backward()
        opt.step()
    return RRREncoder(v.detach().numpy().astype(np.float64), mu, sd)


class _Readout(torch.nn.Module):
    def __init__(self, rank: int, t: int):
        super().__init__()
        self.dyn = torch.nn.Parameter(torch.zeros(2, rank, t))  # wheel, whisker: (R, T) time-varying weights
        self.dyn_b = torch.nn.Parameter(torch.full((2, t), 0.5))
        self.choice = torch.nn.Linear(rank * t, 2)
        self.block = torch.nn.Linear(rank * t, 3)

    def forward(self, z: torch.Tensor):  # z (K, T, R)
        dyn = torch.einsum("ktr,mrt->kmt", z, self.dyn) + self.dyn_b
        flat = z.transpose(1, 2).reshape(z.shape[0], -1)
        return dyn[:, 0], dyn[:, 1], self.choice(flat), self.block(flat)


def _decode_loss(readout, z, d: TrialData, idx) -> torch.Tensor:
    wheel, whisker, choice, block = readout(z)
    return (
        ((wheel - d.wheel[idx]) ** 2).mean()
        + ((whisker - d.whisker[idx]) ** 2).mean()
        + torch.nn.functional.cross_entropy(choice, d.choice[idx])
        + torch.nn.functional.cross_entropy(block, d.block[idx])
    )


class RRRDecoder:
    """Shared readout from the pretraining sessions; per-session unit projections."""

    def __init__(self, readout: _Readout, cfg: RRRConfig):
        self.readout, self.cfg = readout, cfg

    def predict_session(self, data: TrialData, split: str = "test") -> dict[str, np.ndarray]:
        """Fit the held-out session's projection on its train trials (readout fixed); predict ``split``."""
        torch.manual_seed(self.cfg.seed)
        n = data.n_units[0]
        tr, te = data.indices("train"), data.indices(split)
        scale = data.spikes[tr][:, :, :n].float().mean().clamp(min=1e-3)
        w = torch.nn.Parameter(torch.randn(n, self.cfg.rank) * 0.1)
        opt = torch.optim.Adam([w], lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        for p in self.readout.parameters():
            p.requires_grad_(False)
        x_tr = data.spikes[tr][:, :, :n].float() / scale
        for _ in range(self.cfg.epochs):
            opt.zero_grad()
            _decode_loss(self.readout, x_tr @ w, data, tr).backward()
            opt.step()
        with torch.no_grad():
            wheel, whisker, choice, block = self.readout((data.spikes[te][:, :, :n].float() / scale) @ w)
        return {
            "wheel": wheel.numpy(),
            "whisker": whisker.numpy(),
            "choice_prob": torch.softmax(choice, -1).numpy(),
            "block_prob": torch.softmax(block, -1).numpy(),
        }


def fit_rrr_decoder(sessions: list[TrialData], cfg: RRRConfig = RRRConfig()) -> RRRDecoder:
    """Fit the shared readout and per-session projections on the train trials of several sessions."""
    torch.manual_seed(cfg.seed)
    t = sessions[0].spikes.shape[1]
    readout = _Readout(cfg.rank, t)
    idxs = [d.indices("train") for d in sessions]
    xs = []
    for d, idx in zip(sessions, idxs):
        x = d.spikes[idx][:, :, : d.n_units[0]].float()
        xs.append(x / x.mean().clamp(min=1e-3))
    ws = [torch.nn.Parameter(torch.randn(x.shape[2], cfg.rank) * 0.1) for x in xs]
    opt = torch.optim.Adam([*readout.parameters(), *ws], lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = sum(_decode_loss(readout, x @ w, d, idx) for x, w, d, idx in zip(xs, ws, sessions, idxs))
        loss.backward()
        opt.step()
    return RRRDecoder(readout, cfg)


def save_rrr(encoder: RRREncoder, decoder: RRRDecoder, path) -> None:
    """Write both fitted models (shared parts only; held-out sessions are fitted at evaluation)."""
    from dataclasses import asdict

    from neds.io.files import atomic_write

    state = {
        "encoder": {"v": encoder.v, "mu": encoder.mu, "sd": encoder.sd},
        "decoder": {"state": decoder.readout.state_dict(), "t": decoder.readout.dyn.shape[2]},
        "config": asdict(decoder.cfg),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_rrr(path) -> tuple[RRREncoder, RRRDecoder]:
    obj = torch.load(path, weights_only=False)
    cfg = RRRConfig(**obj["config"])
    readout = _Readout(cfg.rank, obj["decoder"]["t"])
    readout.load_state_dict(obj["decoder"]["state"])
    enc = obj["encoder"]
    return RRREncoder(enc["v"], enc["mu"], enc["sd"]), RRRDecoder(readout, cfg)
