"""Trials of many sessions as padded tensors, batched by index (no per-trial Python work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neds.data.binning import fit_to_bins
from neds.io.store import as_str, open_binned
from neds.model.base import Batch

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
    bin_size_s : bin size, s; the trial window is ``T * bin_size_s`` long (:attr:`window_length_s`)
    subjects : (S,) the subject of each session ('' where unknown), or None
    event_offsets : (K + 1,) long, or None (no spike events): trial k's events are
        ``event_offsets[k]:event_offsets[k + 1]`` of the two arrays below
    event_time : (E,) float32, s from the start of the trial window, in ``[0, window_length_s)``;
        within a trial in time order (ties by unit); bin ``floor(time / bin_size_s)`` of an event
        is the bin that counts it in ``spikes``
    event_unit : (E,) long, unit index within the trial's session
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
    bin_size_s: float = 0.02
    subjects: list[str] | None = None
    event_offsets: torch.Tensor | None = None
    event_time: torch.Tensor | None = None
    event_unit: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.unit_mask = torch.arange(self.spikes.shape[2])[None, :] < torch.tensor(self.n_units)[:, None]  # (S, N)
        given = [x is not None for x in (self.event_offsets, self.event_time, self.event_unit)]
        if any(given) and not all(given):
            raise ValueError("event_offsets, event_time and event_unit are given together or not at all")
        if all(given):
            n_trials, n_events = self.spikes.shape[0], self.event_time.shape[0]
            if (
                self.event_offsets.shape != (n_trials + 1,)
                or self.event_unit.shape != (n_events,)
                or int(self.event_offsets[0]) != 0
                or int(self.event_offsets[-1]) != n_events
            ):
                raise ValueError(
                    f"event_offsets {tuple(self.event_offsets.shape)} must run from 0 to the {n_events} events over "
                    f"the {n_trials} trials ({n_trials + 1} entries), and event_unit be as long as event_time"
                )

    @property
    def window_length_s(self) -> float:
        """Length of the trial window, s (bins x bin size)."""
        return self.spikes.shape[1] * self.bin_size_s

    @property
    def has_events(self) -> bool:
        """Whether the spike events are loaded."""
        return self.event_time is not None

    def _event_ranges(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For trials ``idx`` (k,): their event counts (k,), and for each of their events, in order,
        its row in ``idx``, its position within its trial and its index in the event arrays."""
        start = self.event_offsets[idx]
        n = self.event_offsets[idx + 1] - start
        row = torch.repeat_interleave(torch.arange(len(idx)), n)
        pos = torch.arange(row.numel()) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        return n, row, pos, torch.repeat_interleave(start, n) + pos

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
        events = {}
        if self.has_events:
            counts, _, _, src = self._event_ranges(torch.nonzero(sel).reshape(-1))
            events = {
                "event_offsets": _offsets(counts),
                "event_time": self.event_time[src],
                "event_unit": self.event_unit[src],
            }
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
            bin_size_s=self.bin_size_s,
            subjects=[self.subjects[s]] if self.subjects is not None else None,
            **events,
        )

    def batch(self, idx: torch.Tensor) -> Batch:
        """Gather trials ``idx`` (k,) into a :class:`~neds.model.neds.Batch` (float counts).

        With spike events loaded, the batch also holds them: ``event_time`` (k, E) float32,
        ``event_unit`` (k, E) long and ``event_mask`` (k, E) bool, E the largest event count among
        the trials, each row in its trial's event order, padded with time 0, unit 0, mask False.
        """
        idx = torch.as_tensor(idx, dtype=torch.long)
        session = self.session[idx]
        events = {}
        if self.has_events:
            counts, row, pos, src = self._event_ranges(idx)
            shape = (len(idx), int(counts.max()) if len(idx) else 0)
            events = {
                "event_time": torch.zeros(shape, dtype=torch.float32),
                "event_unit": torch.zeros(shape, dtype=torch.long),
                "event_mask": torch.zeros(shape, dtype=torch.bool),
            }
            events["event_time"][row, pos] = self.event_time[src]
            events["event_unit"][row, pos] = self.event_unit[src]
            events["event_mask"][row, pos] = True
        return Batch(
            spikes=self.spikes[idx].float(),
            unit_mask=self.unit_mask[session],
            wheel=self.wheel[idx],
            whisker=self.whisker[idx],
            choice=self.choice[idx],
            block=self.block[idx],
            session=session,
            **events,
        )


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    """(K + 1,) long offsets of K consecutive runs of ``counts`` (K,) items: run k is
    ``offsets[k]:offsets[k + 1]``."""
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.as_tensor(counts, dtype=torch.long), 0)])


def load_sessions(paths: list[str | Path], eids: list[str] | None = None, events: bool = False) -> TrialData:
    """Read binned Zarr stores (one per session) into one :class:`TrialData`.

    Every store is verified as it is read (:func:`neds.io.store.open_binned`): its values must
    match the content fingerprint recorded when it was written and lie in their valid ranges,
    and its spike events, where it holds them, must be the spikes its counts count. The bin size
    is the stores' (``attrs["binning"]["bin_size_s"]``), the subjects their ``attrs["subject"]``.

    Parameters
    ----------
    paths : stores written by ``bin_session``; the order defines the session vocabulary
    eids : expected session ids, checked against the stores' attrs (optional)
    events : also load the spike events (``event_offsets``, ``event_time``, ``event_unit``), for
        the models that read them; every store must then hold them

    Raises
    ------
    neds.io.store.CorruptStoreError
        If a store is corrupt (deleted, altered or truncated chunks), has no fingerprint, or holds
        out-of-range values or spike events that differ from its counts
        (:class:`~neds.io.store.StoreValueError`); the message names the store and how to rebuild it.
    neds.io.store.MissingEventsError
        If ``events`` and a store holds no spike events (binned before neds stored them).
    """
    datasets = [open_binned(p, events=events) for p in paths]
    if eids is not None:
        got = [ds.attrs["eid"] for ds in datasets]
        if got != list(eids):
            raise ValueError(f"stores hold sessions {got}, expected {list(eids)}; pass matching paths")
    n_bins = {ds.sizes["time"] for ds in datasets}
    if len(n_bins) != 1:
        raise ValueError(f"sessions binned with different numbers of bins {sorted(n_bins)}; rebin them alike")
    bin_sizes = {float(b) for ds in datasets if (b := (ds.attrs.get("binning") or {}).get("bin_size_s")) is not None}
    if len(bin_sizes) > 1:
        raise ValueError(f"sessions binned with different bin sizes {sorted(bin_sizes)} s; rebin them alike")
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

    spike_events = {}
    if events:
        counts = cat("n_spike_events", np.int64)
        spike_events = {
            "event_offsets": _offsets(counts),
            "event_time": cat("spike_event_time", np.float32),
            "event_unit": cat("spike_event_unit", np.int64),
        }
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
        bin_size_s=bin_sizes.pop() if bin_sizes else TrialData.bin_size_s,
        subjects=[str(ds.attrs.get("subject") or "") for ds in datasets],
        **spike_events,
    )


def random_trials(
    n_units: list[int],
    trials_per_session: int,
    rate: float = 0.15,
    seed: int = 0,
    splits=(0.7, 0.15, 0.15),
    events: bool = False,
) -> TrialData:
    """Random Poisson spikes and uniform behaviour in the layout of :class:`TrialData`, for tests and
    benchmarks that need the shapes of real data but not its structure.

    With ``events`` the spike events are drawn too, consistent with the counts: each spike at a
    uniform random time inside its 20 ms bin (drawn after everything else, so the counts and
    behaviour are those drawn without events).
    """
    rng = np.random.default_rng(seed)
    s, k, t, n_max = len(n_units), trials_per_session, 100, max(n_units)
    session = np.repeat(np.arange(s), k)
    spikes = rng.poisson(rate, (s * k, t, n_max)).astype(np.uint8)
    spikes *= (np.arange(n_max)[None, None, :] < np.asarray(n_units)[session][:, None, None]).astype(np.uint8)
    n_train, n_val = int(splits[0] * k), int(splits[1] * k)
    split = np.tile(np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (k - n_train - n_val)), s)
    wheel = rng.random((s * k, t), dtype=np.float32)
    whisker = rng.random((s * k, t), dtype=np.float32)
    choice = rng.integers(0, 2, s * k)
    block = rng.integers(0, 3, s * k)
    bin_size = TrialData.bin_size_s
    spike_events = {}
    if events:
        cell = np.flatnonzero(spikes)
        cell = np.repeat(cell, spikes.reshape(-1)[cell])  # one entry per spike: (trial, bin, unit) flat
        trial, bins, unit = cell // (t * n_max), (cell // n_max) % t, cell % n_max
        time = fit_to_bins(((bins + rng.random(cell.size)) * bin_size).astype(np.float32), bins, bin_size, t)
        order = np.lexsort((unit, time, trial))
        spike_events = {
            "event_offsets": _offsets(torch.from_numpy(np.bincount(trial, minlength=s * k))),
            "event_time": torch.from_numpy(time[order]),
            "event_unit": torch.from_numpy(unit[order].astype(np.int64)),
        }
    return TrialData(
        eids=[f"session-{i}" for i in range(s)],
        n_units=list(n_units),
        spikes=torch.from_numpy(spikes),
        wheel=torch.from_numpy(wheel),
        whisker=torch.from_numpy(whisker),
        choice=torch.from_numpy(choice),
        block=torch.from_numpy(block),
        session=torch.from_numpy(session),
        split=split,
        trial=torch.from_numpy(np.tile(np.arange(k), s)),
        bin_size_s=bin_size,
        **spike_events,
    )
