"""Spike events stored beside the binned counts: exactly the spikes the counts count, verified on
read, loaded on request into TrialData and batched with padding and masks."""

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from neds.data.binning import (
    bin_edges,
    bin_spikes,
    count_events,
    event_bins,
    fit_to_bins,
    mismatched_trials,
    spike_events,
)
from neds.data.dataset import TrialData, load_sessions, random_trials
from neds.data.session import BinningParams, bin_session
from neds.io.ibl import OneSettings, connect, load_session
from neds.io.store import (
    EVENT_VARIABLES,
    CorruptStoreError,
    MissingEventsError,
    StoreValueError,
    as_str,
    check_spike_events,
    open_binned,
    write_zarr,
)
from neds.simulate import SimulationConfig, session_eids, simulate_sessions

SIM = SimulationConfig(
    n_pretrain_sessions=1, n_heldout_sessions=0, n_units=(20, 24), n_trials=(80, 90), n_probes=(2, 2), seed=5
)
PARAMS = BinningParams(min_firing_rate_hz=2.0)
WINDOW, BIN = (-0.5, 1.5), 0.02


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate_sessions(root / "one_cache", root / "ground_truth", SIM, hash_files=False)
    settings = OneSettings(mode="local", cache_dir=str(root / "one_cache"))
    return load_session(connect(settings), session_eids(SIM.seed, 1)[0], settings)


@pytest.fixture(scope="module")
def binned(raw) -> xr.Dataset:
    result = bin_session(raw, PARAMS, source="test")
    assert result.status["usable"], result.status["reason"]
    return result.dataset


@pytest.fixture
def store(binned, tmp_path):
    path = tmp_path / f"{binned.attrs['eid']}.zarr"
    write_zarr(binned, path, trial_chunk=16)
    return path


def offsets_of(n_events) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(n_events)])


# ------------------------------------------------------------------------------------- binning
def test_events_are_the_counted_spikes_of_a_simulated_session(raw, binned):
    time, unit, n = (binned[v].values for v in EVENT_VARIABLES)
    assert time.dtype == np.float32 and unit.dtype == np.int32 and n.dtype == np.int64
    assert binned["spike_event_time"].dims == ("spike_event",) and binned["n_spike_events"].dims == ("trial",)
    counts = binned["spikes"].values
    assert n.sum() == time.size == counts.sum() > 0
    np.testing.assert_array_equal(n, counts.sum(axis=(1, 2)))
    # the histogram over (bin, unit) is the counts, bit for bit
    np.testing.assert_array_equal(count_events(time, unit, n, counts.shape[1], counts.shape[2], BIN), counts)
    assert mismatched_trials(time, unit, n, counts, BIN).size == 0
    assert time.min() >= 0 and time.max() < 100 * BIN and unit.min() >= 0 and unit.max() < counts.shape[2]
    # the counts are bin_spikes' of the kept units, unchanged
    align = raw.trials[PARAMS.align_event].to_numpy(float)[binned["trial"].values]
    full = bin_spikes(raw.spike_times, raw.spike_units, len(raw.units), align, WINDOW, BIN)
    probe, cluster = as_str(binned["unit_probe"].values), binned["unit_cluster_id"].values
    kept = [
        np.flatnonzero((raw.units["probe"] == p) & (raw.units["cluster_id"] == c))[0] for p, c in zip(probe, cluster)
    ]
    np.testing.assert_array_equal(full[:, :, kept], counts)
    # trial by trial: the kept units' spikes inside the window, their times, in (time, unit) order
    remap = np.full(len(raw.units), -1)
    remap[kept] = np.arange(len(kept))
    edges = bin_edges(align, WINDOW, BIN)
    off = offsets_of(n)
    for k in range(0, len(align), 7):
        sel = (raw.spike_times >= edges[k, 0]) & (raw.spike_times < edges[k, -1]) & (remap[raw.spike_units] >= 0)
        ref_t, ref_u = raw.spike_times[sel] - edges[k, 0], remap[raw.spike_units[sel]]
        t, u = time[off[k] : off[k + 1]], unit[off[k] : off[k + 1]]
        order = np.lexsort((ref_u, ref_t))
        np.testing.assert_array_equal(u, ref_u[order])
        np.testing.assert_allclose(t, ref_t[order], rtol=0, atol=1e-6)
        assert np.all(np.lexsort((u, t)) == np.arange(t.size))  # sorted by time, ties by unit


def test_edge_spikes_ties_overlaps_and_dropped_units():
    align = np.array([1.0, 1.3, 7.77])  # two overlapping windows
    edges = bin_edges(align, WINDOW, BIN)
    rng = np.random.default_rng(0)
    times = np.concatenate(
        [
            edges.ravel(),  # on a left edge: in that bin; the window's right edge: outside
            np.nextafter(edges.ravel(), -np.inf),
            np.nextafter(edges.ravel(), np.inf),
            np.round(rng.uniform(0, 10, 3000) * 30000) / 30000,  # sample times: ties across units
        ]
    )
    units = rng.integers(0, 5, times.size)
    order = np.argsort(times, kind="stable")
    times, units = times[order], units[order]
    counts = bin_spikes(times, units, 5, align, WINDOW, BIN)
    t, u, n = spike_events(times, units, align, WINDOW, BIN)
    np.testing.assert_array_equal(count_events(t, u, n, 100, 5, BIN), counts)
    assert t.max() < 2.0 and np.all(event_bins(t, BIN) < 100)
    off = offsets_of(n)
    for k in range(3):
        tk, uk = t[off[k] : off[k + 1]], u[off[k] : off[k + 1]]
        assert np.all(np.lexsort((uk, tk)) == np.arange(tk.size))
    assert np.any((t[1:] == t[:-1]) & (u[1:] > u[:-1]))  # there were ties to order
    # a unit map keeps and renumbers units, and leaves the others out
    unit_map = np.array([-1, 0, -1, 1, 2])
    t2, u2, n2 = spike_events(times, units, align, WINDOW, BIN, unit_map=unit_map)
    np.testing.assert_array_equal(count_events(t2, u2, n2, 100, 3, BIN), counts[:, :, [1, 3, 4]])
    # no spikes, no trials
    t3, u3, n3 = spike_events(np.zeros(0), np.zeros(0, int), align, WINDOW, BIN)
    assert t3.size == u3.size == 0 and n3.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="sorted"):
        spike_events(times[::-1], units, align, WINDOW, BIN)


def test_fit_to_bins_moves_only_times_rounded_across_an_edge():
    bins = np.array([0, 0, 49, 99, 5])
    exact = np.array([0.0, np.nextafter(0.02, 0), np.nextafter(1.0, 0), np.nextafter(2.0, 0), 0.11])
    t = fit_to_bins(exact.astype(np.float32), bins, BIN)
    np.testing.assert_array_equal(event_bins(t, BIN), bins)
    assert t[0] == 0 and t[4] == np.float32(0.11) and t[3] < 2.0
    assert np.all(np.abs(t.astype(np.float64) - exact) < 1e-6)
    # the window's end: below T * bin_size as well as in bin T - 1, whatever the bin size
    for bin_size, n_bins in ((0.1, 3), (0.03, 70), (0.007, 300), (1 / 3, 9)):
        length = n_bins * bin_size
        last = np.nextafter(length, 0) - np.arange(20) * 1e-12
        t = fit_to_bins(last.astype(np.float32), np.full(last.size, n_bins - 1), bin_size, n_bins)
        assert np.all(t < length) and np.all(event_bins(t, bin_size) == n_bins - 1)


# ---------------------------------------------------------------------------- verification on read
def test_store_with_events_round_trips(binned, store):
    back = open_binned(store, events=True)
    for name in EVENT_VARIABLES:
        np.testing.assert_array_equal(back[name].values, binned[name].values)
        assert name in back.attrs["fingerprint"]["variables"]
    data = load_sessions([store], events=True)
    assert data.has_events and data.bin_size_s == BIN and data.window_length_s == pytest.approx(2.0)
    assert data.subjects == [binned.attrs["subject"]] and data.subjects[0]
    np.testing.assert_array_equal(data.event_offsets.numpy(), offsets_of(binned["n_spike_events"].values))
    assert data.event_time.dtype == torch.float32 and data.event_unit.dtype == torch.long
    plain = load_sessions([store])
    assert plain.event_time is None and plain.event_offsets is None and plain.subjects == data.subjects
    assert torch.equal(plain.spikes, data.spikes)


def test_an_altered_event_time_on_disk_is_refused(store):
    array = zarr.open_array(store / "spike_event_time", mode="r+")
    array[3] = array[3] + np.float32(0.001)  # a valid chunk with another value: only the checksum sees it
    for read in (open_binned, lambda p: load_sessions([p]), lambda p: load_sessions([p], events=True)):
        with pytest.raises(CorruptStoreError, match="spike_event_time differ") as err:
            read(store)
        assert str(store) in str(err.value) and "bin_session" in str(err.value)


def _written(ds: xr.Dataset, tmp_path, **changes) -> str:
    """``ds`` with the event variables replaced, written with a matching fingerprint."""
    ds = ds.copy()
    for name, values in changes.items():
        ds[name] = (ds[name].dims, values)
    path = tmp_path / f"{ds.attrs['eid']}.zarr"
    write_zarr(ds, path)
    return path


def _moved_time(binned):
    t = binned["spike_event_time"].values.copy()
    t[10] = (event_bins(t[10:11], BIN)[0] + 1) * BIN + 0.005  # into the next bin
    if t[10] >= 2.0:
        t[10] -= 2 * BIN
    return {"spike_event_time": t}


def _dropped_event(binned):
    off = offsets_of(binned["n_spike_events"].values)
    n = binned["n_spike_events"].values.copy()
    k = int(np.flatnonzero(n)[2])
    n[k] -= 1
    keep = np.ones(off[-1], bool)
    keep[off[k]] = False
    ds = binned.isel(spike_event=keep)
    return ds, {"n_spike_events": n}


@pytest.mark.parametrize(
    "case,message",
    [
        ("moved", r"the spike events of 1 trial\(s\) \(trial \d+\) differ from their spike counts"),
        ("dropped", r"the spike events of 1 trial\(s\) \(trial \d+\) differ from their spike counts"),
        ("dropped_no_count", r"n_spike_events sums to \d+, but spike_event_time holds \d+"),
        ("unit", r"spike_event_unit has 1 value\(s\) outside the unit indices \[0, \d+\)"),
        ("negative_unit", r"spike_event_unit has 1 value\(s\) outside the unit indices"),
        ("time", r"spike_event_time has 2 value\(s\) outside the trial window \[0, 2\) s"),
        ("incomplete", "the spike events are incomplete: spike_event_time, n_spike_events without spike_event_unit"),
    ],
)
def test_events_that_are_not_the_counts_are_refused(binned, tmp_path, case, message):
    ds, changes = binned, {}
    if case == "moved":
        changes = _moved_time(binned)
    elif case == "dropped":
        ds, changes = _dropped_event(binned)
    elif case == "dropped_no_count":
        ds = binned.isel(spike_event=slice(1, None))
    elif case in ("unit", "negative_unit"):
        u = binned["spike_event_unit"].values.copy()
        u[5] = binned.sizes["unit"] if case == "unit" else -1
        changes = {"spike_event_unit": u}
    elif case == "time":
        t = binned["spike_event_time"].values.copy()
        t[[4, 8]] = [2.0, np.nan]
        changes = {"spike_event_time": t}
    elif case == "incomplete":
        ds = binned.drop_vars("spike_event_unit")
    path = _written(ds, tmp_path, **changes)  # the checksum matches: the values were written so
    for read in (open_binned, lambda p: load_sessions([p]), lambda p: load_sessions([p], events=True)):
        with pytest.raises(StoreValueError, match=message) as err:
            read(path)
        assert str(path) in str(err.value) and "re-run bin_session" in str(err.value)
        assert binned.attrs["eid"] in str(err.value)
    with pytest.raises(StoreValueError, match="invalid spike events"):
        check_spike_events(xr.open_zarr(path, consolidated=False).load(), path)


def test_store_binned_before_events_loads_for_counts_only(binned, tmp_path):
    path = _written(binned.drop_vars(list(EVENT_VARIABLES)), tmp_path)
    data = load_sessions([path])
    assert data.event_time is None and data.event_offsets is None and data.event_unit is None
    assert data.subjects == [binned.attrs["subject"]] and data.bin_size_s == BIN
    assert data.batch(torch.arange(4)).event_time is None
    for read in (lambda p: open_binned(p, events=True), lambda p: load_sessions([p], events=True)):
        with pytest.raises(MissingEventsError, match="holds no spike events") as err:
            read(path)
        msg = str(err.value)
        assert str(path) in msg and "binned before neds stored them" in msg and "re-run bin_session" in msg


# ------------------------------------------------------------------------------------ TrialData
def test_random_trials_with_events_match_their_counts():
    plain = random_trials([5, 9], 12, seed=3)
    data = random_trials([5, 9], 12, seed=3, events=True)
    for name in ("spikes", "wheel", "whisker", "choice", "block", "session", "trial"):
        assert torch.equal(getattr(plain, name), getattr(data, name))  # the same draws as without events
    t, u = data.event_time.numpy(), data.event_unit.numpy()
    n = np.diff(data.event_offsets.numpy())
    np.testing.assert_array_equal(count_events(t, u, n, 100, 9, 0.02, np.uint8), data.spikes.numpy())
    off = data.event_offsets.numpy()
    for k in range(len(n)):
        tk, uk = t[off[k] : off[k + 1]], u[off[k] : off[k + 1]]
        assert np.all(np.lexsort((uk, tk)) == np.arange(tk.size))
    assert data.event_time.dtype == torch.float32 and data.event_unit.dtype == torch.long
    # inside their bins, not on the bin starts
    assert np.unique(np.round(t / 0.02 % 1, 3)).size > 100


def test_batch_pads_events_and_masks_them():
    data = random_trials([5, 9], 12, seed=1, events=True)
    idx = torch.tensor([20, 3, 3, 15])
    b = data.batch(idx)
    n = (data.event_offsets[idx + 1] - data.event_offsets[idx]).tolist()
    assert b.event_time.shape == b.event_unit.shape == b.event_mask.shape == (4, max(n))
    assert b.event_time.dtype == torch.float32 and b.event_unit.dtype == torch.long and b.event_mask.dtype == torch.bool
    assert b.event_mask.sum(1).tolist() == n
    for row, (k, m) in enumerate(zip(idx.tolist(), n)):
        a = int(data.event_offsets[k])
        assert torch.equal(b.event_time[row, :m], data.event_time[a : a + m])
        assert torch.equal(b.event_unit[row, :m], data.event_unit[a : a + m])
        assert b.event_mask[row, :m].all() and not b.event_mask[row, m:].any()
        assert (b.event_time[row, m:] == 0).all() and (b.event_unit[row, m:] == 0).all()
        # each row's events add up to the trial's counts
        hist = torch.zeros(100, 9, dtype=torch.long)
        cell = (torch.floor(b.event_time[row, :m].double() / 0.02).long(), b.event_unit[row, :m])
        hist.index_put_(cell, torch.ones(m, dtype=torch.long), accumulate=True)
        assert torch.equal(hist, data.spikes[k].long())
    assert data.batch(torch.zeros(0, dtype=torch.long)).event_time.shape == (0, 0)
    assert random_trials([5, 9], 12).batch(idx).event_mask is None


def test_session_view_keeps_the_events_of_its_trials():
    data = random_trials([5, 9], 12, seed=2, events=True)
    data.subjects = ["mouse-a", "mouse-b"]
    view = data.session_view(1, split="test")
    keep = torch.nonzero((data.session == 1) & torch.from_numpy(data.split == "test")).reshape(-1)
    assert view.subjects == ["mouse-b"] and view.bin_size_s == data.bin_size_s
    assert view.event_offsets[0] == 0 and view.event_offsets.shape == (len(keep) + 1,)
    for j, k in enumerate(keep.tolist()):
        a, b = int(data.event_offsets[k]), int(data.event_offsets[k + 1])
        c, d = int(view.event_offsets[j]), int(view.event_offsets[j + 1])
        assert torch.equal(view.event_time[c:d], data.event_time[a:b])
        assert torch.equal(view.event_unit[c:d], data.event_unit[a:b])
    assert int(view.event_offsets[-1]) == view.event_time.numel() == int(view.spikes.sum())
    b = view.batch(torch.arange(len(keep)))
    assert b.event_mask.sum().item() == int(view.spikes.sum())
    assert random_trials([5, 9], 12).session_view(0).event_time is None


def test_trial_data_refuses_inconsistent_events():
    data = random_trials([4], 6, events=True)
    fields = {k: v for k, v in vars(data).items() if k != "unit_mask"}
    with pytest.raises(ValueError, match="together or not at all"):
        TrialData(**{**fields, "event_unit": None})
    with pytest.raises(ValueError, match="event_offsets"):
        TrialData(**{**fields, "event_offsets": data.event_offsets[:-1]})


def test_passes_do_not_change_the_events(monkeypatch):
    import neds.data.binning as binning

    rng = np.random.default_rng(4)
    times = np.sort(rng.uniform(0, 60, 20000))
    units = rng.integers(0, 9, times.size)
    align = np.sort(rng.uniform(1, 58, 30))
    full = spike_events(times, units, align, WINDOW, BIN)
    monkeypatch.setattr(binning, "_MAX_EVENTS_PER_PASS", 500)  # about one trial a pass
    for a, b in zip(spike_events(times, units, align, WINDOW, BIN), full):
        np.testing.assert_array_equal(a, b)
