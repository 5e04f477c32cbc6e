"""Binning of spikes and behaviour into trial-aligned arrays.

All functions are vectorised over spikes, trials and units: there is no Python loop over
trials or units. Bins are half-open, ``[edge_j, edge_{j+1})``, and the edges of trial ``k`` are
``align_times[k] + window[0] + j * bin_size`` for ``j = 0..n_bins``.

Spike events (:func:`spike_events`) are the spikes that :func:`bin_spikes` counts, as float32
times from the start of their trial window and unit indices. A stored event time is placed in
bin ``floor(time / bin_size)`` (:func:`event_bins`, in float64); each time is rounded to the
float32 nearest its exact value that this rule places in the bin that counted it, so the events'
histogram (:func:`count_events`) equals the counts exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "bin_edges",
    "bin_centres",
    "bin_spikes",
    "spike_events",
    "event_bins",
    "fit_to_bins",
    "count_events",
    "mismatched_trials",
    "sample_behaviour",
    "n_bins_for",
    "is_sorted",
    "split_at_gaps",
    "join_segments",
    "TraceGaps",
]

# Upper bound on the cells (trials x bins x units) of one bincount pass: 2 MiB of int64 scratch.
# Small, equal-sized passes stay in cache and let malloc reuse the same blocks; passes of tens of
# MiB are mmapped and page-faulted anew each time, which costs more than the counting itself
# (measured in bench/README.md).
_MAX_CELLS_PER_PASS = 1 << 18


def n_bins_for(window: tuple[float, float], bin_size: float) -> int:
    """Number of bins that tile ``window`` (s) with bins of ``bin_size`` (s).

    Raises
    ------
    ValueError
        If the window is empty or not an integer multiple of the bin size.
    """
    length = float(window[1]) - float(window[0])
    if bin_size <= 0 or length <= 0:
        raise ValueError(
            f"window {tuple(window)} and bin_size {bin_size} must be positive; set binning.window_s "
            "to [start, stop] with start < stop and binning.bin_size_s > 0"
        )
    n = int(round(length / bin_size))
    if abs(n * bin_size - length) > 1e-9 * max(1.0, length):
        raise ValueError(
            f"window length {length} s is not a multiple of bin_size {bin_size} s; "
            "choose binning.window_s and binning.bin_size_s so that they tile exactly"
        )
    return n


def bin_edges(align_times: np.ndarray, window: tuple[float, float], bin_size: float) -> np.ndarray:
    """Bin edges of every trial window.

    Parameters
    ----------
    align_times : (K,) float, s
        Alignment event of each trial (e.g. ``stimOn_times``).
    window : (start, stop), s
        Window relative to the alignment event.
    bin_size : float, s

    Returns
    -------
    (K, T + 1) float64, s
        Absolute edge times.
    """
    n_bins = n_bins_for(window, bin_size)
    offsets = float(window[0]) + np.arange(n_bins + 1, dtype=np.float64) * float(bin_size)
    return np.asarray(align_times, dtype=np.float64)[:, None] + offsets[None, :]


def bin_centres(window: tuple[float, float], bin_size: float) -> np.ndarray:
    """(T,) bin centres relative to the alignment event, s."""
    n_bins = n_bins_for(window, bin_size)
    return float(window[0]) + (np.arange(n_bins, dtype=np.float64) + 0.5) * float(bin_size)


def bin_spikes(
    spike_times: np.ndarray,
    spike_units: np.ndarray,
    n_units: int,
    align_times: np.ndarray,
    window: tuple[float, float],
    bin_size: float,
    dtype: np.dtype = np.uint16,
    check_sorted: bool = True,
) -> np.ndarray:
    """Count the spikes of every unit in every bin of every trial window.

    Windows may overlap (a spike then counts in each window that holds it). Spikes outside all
    windows cost nothing beyond two binary searches per window.

    Parameters
    ----------
    spike_times : (S,) float, s
        Spike times, sorted ascending (ALF ``spikes.times`` is; merged probes must be re-sorted).
    spike_units : (S,) int
        Unit index of each spike, in ``[0, n_units)``.
    n_units : int
        Number of units U.
    align_times : (K,) float, s
        Alignment event per trial; must be finite.
    window : (start, stop), s
    bin_size : float, s
    dtype : numpy integer dtype of the result
    check_sorted : verify that ``spike_times`` is sorted (one pass over all spikes); callers that
        guarantee it (``neds.io.ibl.load_session`` does) may skip the check

    Returns
    -------
    (K, T, U) ``dtype``
        Spike counts.
    """
    spike_times = np.asarray(spike_times)
    spike_units = np.asarray(spike_units)
    align_times = np.asarray(align_times, dtype=np.float64)
    _check_spike_inputs(spike_times, spike_units, align_times, check_sorted)
    edges = bin_edges(align_times, window, bin_size)  # (K, T+1)
    n_trials, n_bins = edges.shape[0], edges.shape[1] - 1
    counts = np.zeros((n_trials, n_bins, n_units), dtype=dtype)
    if n_trials == 0 or n_units == 0 or spike_times.size == 0:
        return counts
    # index of the first spike >= each edge: bin j of trial k holds spikes [idx[k, j], idx[k, j+1])
    idx = np.searchsorted(spike_times, edges.ravel(), side="left").reshape(edges.shape)
    per_bin = np.diff(idx, axis=1)  # (K, T)
    chunk = max(1, _MAX_CELLS_PER_PASS // max(1, n_bins * n_units))
    for k0 in range(0, n_trials, chunk):  # a handful of passes over trial blocks, not a loop over trials
        k1 = min(n_trials, k0 + chunk)
        counts[k0:k1] = _count_block(spike_units, idx[k0:k1], per_bin[k0:k1], n_units, dtype)
    return counts


def _check_spike_inputs(
    spike_times: np.ndarray, spike_units: np.ndarray, align_times: np.ndarray, check_sorted: bool
) -> None:
    if spike_times.shape != spike_units.shape or spike_times.ndim != 1:
        raise ValueError(
            f"spike_times {spike_times.shape} and spike_units {spike_units.shape} must be 1-D and of equal length"
        )
    if not np.all(np.isfinite(align_times)):
        raise ValueError("align_times contains NaN or inf; exclude those trials before binning")
    if check_sorted and not is_sorted(spike_times):
        raise ValueError("spike_times must be sorted ascending; sort them (np.argsort, kind='stable')")


def is_sorted(x: np.ndarray, block: int = 1 << 20) -> bool:
    """Whether a 1-D array is non-decreasing, checked in cache-sized blocks (no full-size temporaries)."""
    for i in range(0, max(0, x.size - 1), block):  # ~20 blocks for a one-hour recording
        a = x[i : i + block + 1]
        if np.any(a[1:] < a[:-1]):
            return False
    return True


def _count_block(
    spike_units: np.ndarray, idx: np.ndarray, per_bin: np.ndarray, n_units: int, dtype: np.dtype
) -> np.ndarray:
    """Counts for a block of trials. idx: (k, T+1) spike index edges, per_bin: (k, T)."""
    k, n_bins = per_bin.shape
    lengths = per_bin.sum(axis=1)  # (k,) spikes per window
    total = int(lengths.sum())
    if total == 0:
        return np.zeros((k, n_bins, n_units), dtype=dtype)
    # indices of the spikes of every window, concatenated: window w covers [idx[w, 0], idx[w, T])
    starts = np.repeat(idx[:, 0] - (np.cumsum(lengths) - lengths), lengths)
    spike_index = np.arange(total, dtype=np.int64) + starts
    cell = np.repeat(np.arange(k * n_bins, dtype=np.int64), per_bin.ravel())  # (trial, bin) of each
    flat = cell * n_units + spike_units[spike_index]
    out = np.bincount(flat, minlength=k * n_bins * n_units)
    if out.size and out.max() > np.iinfo(dtype).max:
        raise OverflowError(f"a bin holds more than {np.iinfo(dtype).max} spikes; use a wider dtype")
    return out.astype(dtype, copy=False).reshape(k, n_bins, n_units)


# Spikes per pass of spike_events (whole trials; a trial with more is a pass of its own).
_MAX_EVENTS_PER_PASS = 1 << 18

# Most one-ulp steps a float32 event time is moved by to land in its bin (in practice 0 or 1).
_MAX_NUDGES = 64


def event_bins(event_time: np.ndarray, bin_size: float) -> np.ndarray:
    """The bin of each event time: ``floor(time / bin_size)`` in float64.

    Parameters
    ----------
    event_time : (E,) float, s from the start of the trial window (finite)
    bin_size : float, s

    Returns
    -------
    (E,) int64
    """
    x = np.array(event_time, dtype=np.float64)  # a copy, divided and floored in place
    np.divide(x, float(bin_size), out=x)
    np.floor(x, out=x)
    with np.errstate(invalid="ignore"):
        return x.astype(np.int64)


def fit_to_bins(event_time: np.ndarray, bins: np.ndarray, bin_size: float, n_bins: int | None = None) -> np.ndarray:
    """Float32 event times moved by the fewest float32 steps that put each in its bin.

    Rounding a time near a bin edge to float32 may carry it across the edge (or to the end of the
    window); such a time is moved back to the nearest float32 that :func:`event_bins` places in
    ``bins``. The others are returned unchanged.

    Parameters
    ----------
    event_time : (E,) float32, s from the start of the trial window
    bins : (E,) int, the bin each event belongs to
    bin_size : float, s
    n_bins : bins of the window, T, optional: a time at or past the window's end,
        ``T * bin_size`` (in float64), is first moved to the float32 below it

    Returns
    -------
    (E,) float32 (a copy)

    Raises
    ------
    ValueError
        If a bin holds no float32 time near the given one (a window far too long for float32).
    """
    t = np.array(event_time, dtype=np.float32)
    bins = np.asarray(bins, dtype=np.int64)
    if n_bins is not None:
        length = n_bins * float(bin_size)
        below = np.float32(length)
        if below >= length:
            below = np.nextafter(below, np.float32(0))
        np.minimum(t, below, out=t)
    bad = np.flatnonzero(event_bins(t, bin_size) != bins)
    for _ in range(_MAX_NUDGES):
        if not bad.size:
            return t
        towards = np.where(event_bins(t[bad], bin_size) > bins[bad], -np.inf, np.inf).astype(np.float32)
        t[bad] = np.nextafter(t[bad], towards)
        bad = bad[event_bins(t[bad], bin_size) != bins[bad]]
    if not bad.size:
        return t
    raise ValueError(
        f"{bad.size} event time(s) cannot be placed in their {bin_size} s bins as float32; "
        "shorten binning.window_s or widen binning.bin_size_s"
    )


def spike_events(
    spike_times: np.ndarray,
    spike_units: np.ndarray,
    align_times: np.ndarray,
    window: tuple[float, float],
    bin_size: float,
    unit_map: np.ndarray | None = None,
    check_sorted: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spikes that :func:`bin_spikes` counts, as events: time and unit, trial by trial.

    Same bins (half-open, the same edges), so :func:`count_events` of the result equals
    ``bin_spikes(...)`` (restricted to the units kept by ``unit_map``, renumbered). Overlapping
    windows each hold their own copy of a shared spike.

    Parameters
    ----------
    spike_times : (S,) float, s, sorted ascending
    spike_units : (S,) int, unit index of each spike
    align_times : (K,) float, s, finite
    window : (start, stop), s
    bin_size : float, s
    unit_map : (U,) int, optional
        The output index of each input unit, negative for a unit whose spikes are left out
        (default: every unit keeps its index).
    check_sorted : verify that ``spike_times`` is sorted (skip it when the caller has)

    Returns
    -------
    time : (E,) float32
        Seconds from the start of the trial window, in ``[0, T * bin_size)``; within
        ``[k * bin_size, (k + 1) * bin_size)`` by :func:`event_bins` for an event of bin k.
    unit : (E,) int32
        Unit index (after ``unit_map``).
    n_events : (K,) int64
        Events per trial. The events are the trials' concatenated in trial order, and within a
        trial sorted by time, ties by unit.
    """
    spike_times = np.asarray(spike_times)
    spike_units = np.asarray(spike_units)
    align_times = np.asarray(align_times, dtype=np.float64)
    _check_spike_inputs(spike_times, spike_units, align_times, check_sorted)
    edges = bin_edges(align_times, window, bin_size)  # (K, T+1)
    n_trials = edges.shape[0]
    empty = (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(n_trials, np.int64))
    if n_trials == 0 or spike_times.size == 0:
        return empty
    idx = np.searchsorted(spike_times, edges.ravel(), side="left").reshape(edges.shape)
    per_bin = np.diff(idx, axis=1)  # (K, T)
    lengths = per_bin.sum(axis=1)
    if not lengths.any():
        return empty
    unit_map = None if unit_map is None else np.asarray(unit_map, dtype=np.int64)
    # blocks of whole trials of about _MAX_EVENTS_PER_PASS spikes: small temporaries, reused by malloc
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(_MAX_EVENTS_PER_PASS, int(ends[-1]), _MAX_EVENTS_PER_PASS), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [n_trials]]))
    times_out, units_out, n_events = [], [], np.zeros(n_trials, dtype=np.int64)
    for k0, k1 in zip(bounds[:-1], bounds[1:]):  # a handful of passes over trial blocks, not a loop over trials
        time, unit, n = _events_block(
            spike_times, spike_units, edges[k0:k1, 0], idx[k0:k1], per_bin[k0:k1], bin_size, unit_map
        )
        times_out.append(time)
        units_out.append(unit)
        n_events[k0:k1] = n
    return np.concatenate(times_out), np.concatenate(units_out), n_events


def _events_block(
    spike_times: np.ndarray,
    spike_units: np.ndarray,
    starts: np.ndarray,
    idx: np.ndarray,
    per_bin: np.ndarray,
    bin_size: float,
    unit_map: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of a block of trials. starts: (k,) window starts, s; idx: (k, T+1) spike index edges;
    per_bin: (k, T)."""
    k, n_bins = per_bin.shape
    lengths = per_bin.sum(axis=1)
    total = int(lengths.sum())
    # the spikes of every window, concatenated (as in _count_block), with their trial and bin
    spike_index = np.arange(total, dtype=np.int64) + np.repeat(idx[:, 0] - (np.cumsum(lengths) - lengths), lengths)
    trial = np.repeat(np.arange(k, dtype=np.int64), lengths)
    bins = np.repeat(np.tile(np.arange(n_bins, dtype=np.int64), k), per_bin.ravel())
    units = spike_units[spike_index].astype(np.int64, copy=False)
    if unit_map is not None:
        units = unit_map[units]
        keep = units >= 0
        spike_index, trial, bins, units = spike_index[keep], trial[keep], bins[keep], units[keep]
    time = fit_to_bins((spike_times[spike_index] - starts[trial]).astype(np.float32), bins, bin_size, n_bins)
    units = _sort_events(time, units, trial)
    return time, units.astype(np.int32), np.bincount(trial, minlength=k).astype(np.int64)


def _sort_events(time: np.ndarray, unit: np.ndarray, trial: np.ndarray) -> np.ndarray:
    """Put events sorted by (trial, time) in (trial, time, unit) order; returns the units.

    ``time`` and ``unit`` are sorted in place when they were not in (trial, time) order (never
    for sorted spike times: float32 rounding and :func:`fit_to_bins` keep the order), otherwise
    only the units of events sharing a trial and a time are sorted.
    """
    if time.size < 2:
        return unit
    same_trial = trial[1:] == trial[:-1]
    if np.any((time[1:] < time[:-1]) & same_trial):
        order = np.lexsort((unit, time, trial))
        time[:] = time[order]
        return unit[order]
    new = np.ones(time.size, dtype=bool)  # the first event of each run of equal (trial, time)
    new[1:] = (time[1:] != time[:-1]) | ~same_trial
    tied = ~new
    tied[:-1] |= ~new[1:]
    sub = np.flatnonzero(tied)
    if sub.size:
        group = np.cumsum(new)[sub]
        unit = unit.copy()
        unit[sub] = unit[sub][np.lexsort((unit[sub], group))]
    return unit


def _event_count_blocks(bins: np.ndarray, event_unit: np.ndarray, n_events: np.ndarray, n_bins: int, n_units: int):
    """Yield ``(k0, k1, counts)`` over blocks of trials, counts (k1 - k0, T, U) int64 of the events
    of trials k0..k1-1 (``bins`` from :func:`event_bins`, in range), in passes of at most
    ``_MAX_CELLS_PER_PASS`` cells."""
    offsets = np.concatenate([[0], np.cumsum(n_events)])
    n_trials = n_events.size
    chunk = max(1, _MAX_CELLS_PER_PASS // max(1, n_bins * n_units))
    for k0 in range(0, n_trials, chunk):  # a handful of passes over trial blocks
        k1 = min(n_trials, k0 + chunk)
        a, b = offsets[k0], offsets[k1]
        trial = np.repeat(np.arange(k1 - k0, dtype=np.int64), n_events[k0:k1])
        flat = (trial * n_bins + bins[a:b]) * n_units + event_unit[a:b]
        yield k0, k1, np.bincount(flat, minlength=(k1 - k0) * n_bins * n_units).reshape(k1 - k0, n_bins, n_units)


def _binned_events(event_time, event_unit, n_events, n_bins: int, n_units: int, bin_size: float):
    """(bins, units, n_events) of events checked to be in range, for :func:`_event_count_blocks`.

    Raises
    ------
    ValueError
        If the lengths disagree, or a time lies outside the window or a unit outside ``[0, U)``.
    """
    event_time = np.asarray(event_time)
    event_unit = np.asarray(event_unit)
    n_events = np.asarray(n_events, dtype=np.int64)
    if n_events.sum() != event_time.size or event_time.size != event_unit.size:
        raise ValueError(
            f"n_events sums to {int(n_events.sum())}, but there are {event_time.size} event times "
            f"and {event_unit.size} event units"
        )
    if np.any(n_events < 0):
        raise ValueError("n_events holds negative counts")
    bins = event_bins(event_time, bin_size)
    with np.errstate(invalid="ignore"):
        if bins.size and (not np.all(event_time >= 0) or bins.min() < 0 or bins.max() >= n_bins):
            raise ValueError(f"event times outside the window [0, {n_bins} x {bin_size} s)")
    if event_unit.size and (event_unit.min() < 0 or event_unit.max() >= n_units):
        raise ValueError(f"event units outside [0, {n_units})")
    return bins, event_unit, n_events


def count_events(
    event_time: np.ndarray,
    event_unit: np.ndarray,
    n_events: np.ndarray,
    n_bins: int,
    n_units: int,
    bin_size: float,
    dtype: np.dtype = np.uint16,
) -> np.ndarray:
    """Histogram of each trial's events over (bin, unit): the counts the events stand for.

    Parameters
    ----------
    event_time : (E,) float, s from the start of the trial window
    event_unit : (E,) int, in ``[0, n_units)``
    n_events : (K,) int, events per trial (trial k's follow those of trials < k)
    n_bins, n_units : T, U
    bin_size : float, s
    dtype : numpy integer dtype of the result

    Returns
    -------
    (K, T, U) ``dtype``

    Raises
    ------
    ValueError
        If the lengths disagree, or a time lies outside the window or a unit outside ``[0, U)``.
    """
    binned = _binned_events(event_time, event_unit, n_events, n_bins, n_units, bin_size)
    out = np.zeros((binned[2].size, n_bins, n_units), dtype=dtype)
    for k0, k1, block in _event_count_blocks(*binned, n_bins, n_units):
        if block.size and block.max() > np.iinfo(dtype).max:
            raise OverflowError(f"a bin holds more than {np.iinfo(dtype).max} events; use a wider dtype")
        out[k0:k1] = block
    return out


def mismatched_trials(
    event_time: np.ndarray, event_unit: np.ndarray, n_events: np.ndarray, counts: np.ndarray, bin_size: float
) -> np.ndarray:
    """The trials whose events' histogram over (bin, unit) differs from their counts.

    Parameters
    ----------
    event_time, event_unit, n_events : as for :func:`count_events` (in range; it raises otherwise)
    counts : (K, T, U) int, the binned counts
    bin_size : float, s

    Returns
    -------
    (m,) int64, positions along the trial axis (empty when every trial agrees)
    """
    n_trials, n_bins, n_units = counts.shape
    if len(n_events) != n_trials:
        raise ValueError(f"{len(n_events)} event counts for {n_trials} trials")
    binned = _binned_events(event_time, event_unit, n_events, n_bins, n_units, bin_size)
    bad = [np.zeros(0, np.int64)]
    for k0, k1, block in _event_count_blocks(*binned, n_bins, n_units):
        bad.append(k0 + np.flatnonzero((block != counts[k0:k1]).reshape(k1 - k0, -1).any(axis=1)))
    return np.concatenate(bad)


def sample_behaviour(
    times: np.ndarray,
    values: np.ndarray,
    align_times: np.ndarray,
    window: tuple[float, float],
    bin_size: float,
) -> np.ndarray:
    """Sample a continuous behaviour trace at the bin centres of every trial, linearly.

    A bin centre outside the recorded span ``[times[0], times[-1]]`` or between two samples of
    which one is NaN gives NaN, so missing behaviour is never filled in silently.

    Parameters
    ----------
    times : (M,) float, s
        Sample times (NaN times are discarded; unsorted times are sorted).
    values : (M,) float
        Behaviour samples (any unit).
    align_times : (K,) float, s
    window : (start, stop), s
    bin_size : float, s

    Returns
    -------
    (K, T) float64
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if times.shape != values.shape or times.ndim != 1:
        raise ValueError(f"times {times.shape} and values {values.shape} must be 1-D, equal length")
    keep = np.isfinite(times)
    times, values = times[keep], values[keep]
    if times.size and np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
    query = np.asarray(align_times, dtype=np.float64)[:, None] + bin_centres(window, bin_size)[None, :]
    if times.size < 2:
        return np.full(query.shape, np.nan)
    out = np.interp(query, times, values)  # NaN neighbours propagate to NaN
    out[(query < times[0]) | (query > times[-1]) | ~np.isfinite(query)] = np.nan
    return out


@dataclass
class TraceGaps:
    """The NaN stretches of one raw behaviour trace, as :func:`split_at_gaps` treated them.

    filled : (start, stop) s of each stretch no longer than the limit, bridged linearly
    kept : (start, stop) s of each longer stretch, left as a gap (NaN); a stretch before the
        first or after the last valid sample has an open end (-inf / inf)
    n_invalid : number of NaN samples (NaN value or NaN time)
    too_short : (start, stop) s of each run of valid samples between gaps that was too short
        for what is computed from it (e.g. the wheel velocity filter) and is left out too
    """

    max_gap_s: float
    filled: list[tuple[float, float]] = field(default_factory=list)
    kept: list[tuple[float, float]] = field(default_factory=list)
    n_invalid: int = 0
    too_short: list[tuple[float, float]] = field(default_factory=list)

    def note(self) -> str:
        """One line for the session status ('' when the trace has no NaN)."""
        if not self.n_invalid and not self.too_short:
            return ""
        parts = [f"{self.n_invalid} NaN samples"] if self.n_invalid else []
        if self.filled:
            parts.append(f"{len(self.filled)} stretch(es) <= {self.max_gap_s:g} s interpolated")
        if self.kept:
            finite = [(a, b) for a, b in self.kept if np.isfinite(a) and np.isfinite(b)]
            total = sum(b - a for a, b in finite)
            edges = len(self.kept) - len(finite)
            text = f"{len(self.kept)} longer stretch(es) left as gaps"
            if finite:
                text += f" ({total:.3g} s in all"
                text += f", plus {edges} at the ends of the recording)" if edges else ")"
            elif edges:
                text += " (at the ends of the recording)"
            parts.append(text)
        if self.too_short:
            parts.append(f"{len(self.too_short)} valid run(s) between gaps too short to use, left out")
        return ", ".join(parts)


def split_at_gaps(times: np.ndarray, values: np.ndarray, max_gap_s: float) -> tuple[list[np.ndarray], TraceGaps]:
    """Split a raw behaviour trace into runs of valid samples at its long NaN stretches.

    A sample is invalid when its time or its value is NaN (or infinite). A stretch of invalid
    samples spans the time between the valid samples on either side of it. A stretch no longer
    than ``max_gap_s`` is bridged: its samples are left out and the two neighbours stay in one
    segment, so linear interpolation fills it. A longer stretch ends one segment and starts the
    next, so that whatever is computed from the trace (a filtered velocity, samples at bin
    centres) stays NaN over it and does not reach the valid samples around it. Intervals between
    two valid samples with no invalid sample in between are not gaps, however long: they are
    what the recording holds (e.g. a still wheel emits no encoder events).

    Parameters
    ----------
    times : (M,) float, s, in recorded order (ascending apart from NaN)
    values : (M,) float
    max_gap_s : float, s; 0 splits at every NaN stretch

    Returns
    -------
    segments : list of int arrays, the indices of the valid samples of each segment, in order
    gaps : :class:`TraceGaps`
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if times.shape != values.shape or times.ndim != 1:
        raise ValueError(f"times {times.shape} and values {values.shape} must be 1-D, equal length")
    if not max_gap_s >= 0:
        raise ValueError(f"max_gap_s={max_gap_s} must be >= 0; set binning.max_behaviour_gap_s")
    valid = np.isfinite(times) & np.isfinite(values)
    gaps = TraceGaps(max_gap_s=float(max_gap_s), n_invalid=int((~valid).sum()))
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        if times.size:
            gaps.kept.append((-np.inf, np.inf))
        return [], gaps
    if idx[0] > 0:
        gaps.kept.append((-np.inf, float(times[idx[0]])))
    if idx[-1] < times.size - 1:
        gaps.kept.append((float(times[idx[-1]]), np.inf))
    # pairs of consecutive valid samples with invalid samples between them
    holes = np.flatnonzero(np.diff(idx) > 1)
    start, stop = times[idx[holes]], times[idx[holes + 1]]
    long = (stop - start) > max_gap_s
    gaps.filled += [(float(a), float(b)) for a, b in zip(start[~long], stop[~long])]
    gaps.kept += [(float(a), float(b)) for a, b in zip(start[long], stop[long])]
    gaps.kept.sort()
    segments = np.split(idx, holes[long] + 1)
    return segments, gaps


def join_segments(times: list[np.ndarray], values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate trace segments with one NaN sample between consecutive segments.

    The NaN sample sits half-way between the end of one segment and the start of the next, so
    :func:`sample_behaviour` gives NaN at every bin centre between two segments.
    """
    out_t: list[np.ndarray] = []
    out_v: list[np.ndarray] = []
    for t, v in zip(times, values):
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        if not t.size:
            continue
        if out_t:
            out_t.append(np.array([0.5 * (out_t[-1][-1] + t[0])]))
            out_v.append(np.array([np.nan]))
        out_t.append(t)
        out_v.append(v)
    if not out_t:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(out_t), np.concatenate(out_v)
