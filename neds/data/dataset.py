"""Trials of many sessions as padded tensors, batched by index (no per-trial Python work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neds.io.store import as_str, open_binned
from neds.model.neds import Batch

__all__ = ["TrialData", "load_sessions", "random_trials"]


@dataclass
class TrialData:
    """All trials of a set of sessions, padded to the largest unit count.

    eids : session vocabulary (index = session index of the model)
    n_units : (S,) units per session
    spikes : (K, T, N_max) uint8 or int16 counts, zero on padded units
    wheel, whisker : (K, T) float32 in [0, 1]
    choice, block : (K,) long
    session : (K,) long
    split : (K,) array of 'train' / 'val' / 'test'
    trial : (K,) long, the trial's index in its session's ALF trials table
    """

    eids: list[str]
    n_units: list[int]
    spikes: torch.Tensor
    wheel: torch.Tensor
    whisker: torch.Tensor
    choice: torch.Tensor
    block: torch.Tensor
    session: torch.Tensor
    split: np.ndarray
    trial: torch.Tensor

    def __post_init__(self) -> None:
        self.unit_mask = torch.arange(self.spikes.shape[2])[None, :] < torch.tensor(self.n_units)[:, None]  # (S, N)

    def indices(self, split: str) -> torch.Tensor:
        """(k,) indices of the trials of one split, in session order."""
        return torch.from_numpy(np.flatnonzero(self.split == split))

    def session_view(self, s: int, split: str | None = None) -> TrialData:
        """The trials of session ``s`` alone (those of ``split`` alone, if given), as a one-session
        :class:`TrialData` (copies them)."""
        sel = self.session == s
        if split is not None:
            sel &= torch.from_numpy(self.split == split)
        n = self.n_units[s]
        return TrialData(
            eids=[self.eids[s]],
            n_units=[n],
            spikes=self.spikes[sel][:, :, :n],
            wheel=self.wheel[sel],
            whisker=self.whisker[sel],
            choice=self.choice[sel],
            block=self.block[sel],
            session=torch.zeros(int(sel.sum()), dtype=torch.long),
            split=self.split[sel.numpy()],
            trial=self.trial[sel],
        )

    def batch(self, idx: torch.Tensor) -> Batch:
        """Gather trials ``idx`` (k,) into a :class:`~neds.model.neds.Batch` (float counts)."""
        session = self.session[idx]
        return Batch(
            spikes=self.spikes[idx].float(),
            unit_mask=self.unit_mask[session],
            wheel=self.wheel[idx],
            whisker=self.whisker[idx],
            choice=self.choice[idx],
            block=self.block[idx],
            session=session,
        )


def load_sessions(paths: list[str | Path], eids: list[str] | None = None) -> TrialData:
    """Read binned Zarr stores (one per session) into one :class:`TrialData`.

    Every store is verified as it is read (:func:`neds.io.store.open_binned`): its values must
    match the content fingerprint recorded when it was written and lie in their valid ranges.

    Parameters
    ----------
    paths : stores written by ``bin_session``; the order defines the session vocabulary
    eids : expected session ids, checked against the stores' attrs (optional)

    Raises
    ------
    neds.io.store.CorruptStoreError
        If a store is corrupt (deleted, altered or truncated chunks), has no fingerprint, or holds
        out-of-range values (:class:`~neds.io.store.StoreValueError`); the message names the store
        and how to rebuild it.
    """
    datasets = [open_binned(p) for p in paths]
    if eids is not None:
        got = [ds.attrs["eid"] for ds in datasets]
        if got != list(eids):
            raise ValueError(f"stores hold sessions {got}, expected {list(eids)}; pass matching paths")
    n_bins = {ds.sizes["time"] for ds in datasets}
    if len(n_bins) != 1:
        raise ValueError(f"sessions binned with different numbers of bins {sorted(n_bins)}; rebin them alike")
    n_units = [int(ds.sizes["unit"]) for ds in datasets]
    n_max, t = max(n_units), n_bins.pop()
    k_total = sum(int(ds.sizes["trial"]) for ds in datasets)
    tops = [int(ds["spikes"].max()) for ds in datasets]
    top = max(tops)
    if top > torch.iinfo(torch.int16).max:  # would wrap around in the int16 tensor
        path = paths[tops.index(top)]
        raise ValueError(
            f"{path} holds a count of {top} spikes in one bin, more than the loader's int16 holds; such a count "
            f"is not a recording: check the session's spike sorting and binning, then re-run bin_session for it"
        )
    dtype = torch.uint8 if top <= 255 else torch.int16
    spikes = torch.zeros((k_total, t, n_max), dtype=dtype)
    start = 0
    for ds in datasets:  # one copy per session at load time
        k, n = ds.sizes["trial"], ds.sizes["unit"]
        spikes[start : start + k, :, :n] = torch.from_numpy(ds["spikes"].values.astype(np.int16)).to(dtype)
        start += k

    def cat(name, dt):
        return torch.from_numpy(np.concatenate([ds[name].values for ds in datasets]).astype(dt))

    return TrialData(
        eids=[ds.attrs["eid"] for ds in datasets],
        n_units=n_units,
        spikes=spikes,
        wheel=cat("wheel_speed", np.float32),
        whisker=cat("whisker_motion_energy", np.float32),
        choice=cat("choice", np.int64),
        block=cat("block", np.int64),
        session=torch.from_numpy(np.repeat(np.arange(len(datasets)), [ds.sizes["trial"] for ds in datasets])),
        split=np.concatenate([as_str(ds["split"].values) for ds in datasets]),
        trial=cat("trial", np.int64),
    )


def random_trials(
    n_units: list[int], trials_per_session: int, rate: float = 0.15, seed: int = 0, splits=(0.7, 0.15, 0.15)
) -> TrialData:
    """Random Poisson spikes and uniform behaviour in the layout of :class:`TrialData`, for tests and
    benchmarks that need the shapes of real data but not its structure."""
    rng = np.random.default_rng(seed)
    s, k, t, n_max = len(n_units), trials_per_session, 100, max(n_units)
    session = np.repeat(np.arange(s), k)
    spikes = rng.poisson(rate, (s * k, t, n_max)).astype(np.uint8)
    spikes *= (np.arange(n_max)[None, None, :] < np.asarray(n_units)[session][:, None, None]).astype(np.uint8)
    n_train, n_val = int(splits[0] * k), int(splits[1] * k)
    split = np.tile(np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (k - n_train - n_val)), s)
    return TrialData(
        eids=[f"session-{i}" for i in range(s)],
        n_units=list(n_units),
        spikes=torch.from_numpy(spikes),
        wheel=torch.from_numpy(rng.random((s * k, t), dtype=np.float32)),
        whisker=torch.from_numpy(rng.random((s * k, t), dtype=np.float32)),
        choice=torch.from_numpy(rng.integers(0, 2, s * k)),
        block=torch.from_numpy(rng.integers(0, 3, s * k)),
        session=torch.from_numpy(session),
        split=split,
        trial=torch.from_numpy(np.tile(np.arange(k), s)),
    )
