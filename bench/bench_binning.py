"""Binning throughput: neds' vectorised binning vs a per-trial implementation, side by side.

A realistic session: 600 units, one hour at ~10 Hz (~21.6 M spikes), 400 trials, windows of 2 s
with 20 ms bins. Throughput is reported in session spikes per second (all spikes of the recording
divided by the time to produce the (trials, bins, units) count array), against

* the per-trial approach of the authors' code: for each trial, select its spikes from the whole
  recording with a boolean mask, then histogram them by (time, unit); run with 2 worker processes;
* the memory-bound floor: one ``np.bincount`` pass over all spike cluster ids.

Spike events (``neds.data.binning.spike_events``, stored beside the counts by ``bin_session``):
the time to make them, the size on disk of a store written with and without them
(``neds.io.store.write_zarr``), and what checking them costs when the store is opened
(``neds.io.store.open_binned``; ``check_spike_events`` alone).

Run:  python bench/bench_binning.py [--out bench/out/binning.json] [--events-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from neds.data.binning import bin_spikes, count_events, spike_events

WINDOW = (-0.5, 1.5)
BIN = 0.02


def make_session(n_units=600, duration=3600.0, mean_rate=10.0, n_trials=400, seed=0):
    """Sorted spike times (s), unit ids and trial alignment times of a synthetic recording."""
    rng = np.random.default_rng(seed)
    rates = rng.lognormal(np.log(mean_rate) - 0.5, 1.0, n_units)
    rates *= mean_rate / rates.mean()
    counts = rng.poisson(rates * duration)
    units = np.repeat(np.arange(n_units, dtype=np.uint32), counts)
    times = rng.uniform(0, duration, units.size)
    order = np.argsort(times, kind="stable")
    align = np.sort(rng.uniform(2.0, duration - 2.0, n_trials))
    return times[order], units[order], align


def _per_trial_worker(args):
    times, units, n_units, starts = args
    n_bins = int(round((WINDOW[1] - WINDOW[0]) / BIN))
    out = np.zeros((len(starts), n_bins, n_units), dtype=np.uint16)
    for k, t0 in enumerate(starts):
        sel = (times >= t0) & (times < t0 + n_bins * BIN)  # the whole recording, every trial
        h, _, _ = np.histogram2d(
            times[sel] - t0, units[sel], bins=(n_bins, n_units), range=((0, n_bins * BIN), (0, n_units))
        )
        out[k] = h
    return out


def per_trial_binning(times, units, n_units, align, workers=2):
    starts = align + WINDOW[0]
    parts = np.array_split(starts, workers)
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_per_trial_worker, [(times, units, n_units, p) for p in parts])))


def best_of(fn, repeats):
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def median_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def binned_dataset(counts, events=None):
    """A store in bin_session's layout: the counts, behaviour, labels, split, and the events if given."""
    import xarray as xr

    from neds.io.store import text_array

    rng = np.random.default_rng(1)
    n_trials, n_bins, n_units = counts.shape
    data_vars = {
        "spikes": (("trial", "time", "unit"), counts),
        "wheel_speed": (("trial", "time"), rng.random((n_trials, n_bins), dtype=np.float32)),
        "whisker_motion_energy": (("trial", "time"), rng.random((n_trials, n_bins), dtype=np.float32)),
        "choice": (("trial",), rng.integers(0, 2, n_trials).astype(np.int8)),
        "block": (("trial",), rng.integers(0, 3, n_trials).astype(np.int8)),
    }
    if events is not None:
        data_vars["n_spike_events"] = (("trial",), events[2])
        data_vars["spike_event_time"] = (("spike_event",), events[0])
        data_vars["spike_event_unit"] = (("spike_event",), events[1])
    coords = {
        "trial": np.arange(n_trials),
        "time": WINDOW[0] + BIN * (np.arange(n_bins) + 0.5),
        "unit": np.arange(n_units),
        "split": ("trial", text_array(rng.choice(["train", "val", "test"], n_trials))),
    }
    attrs = {"eid": "00000000-0000-4000-8000-000000000000", "binning": {"bin_size_s": BIN, "window_s": list(WINDOW)}}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def events_bench(times, units, n_units, align, counts, repeats):
    """Making the events, and a store's size, write and open times with and without them."""
    from neds.io.store import (
        EVENT_VARIABLES,
        check_spike_events,
        content_fingerprint,
        open_binned,
        open_zarr,
        write_zarr,
    )

    t_events, events = best_of(lambda: spike_events(times, units, align, WINDOW, BIN, check_sorted=False), repeats)
    assert np.array_equal(count_events(*events, counts.shape[1], n_units, BIN), counts), "events differ from counts"
    t_counts, t_both = np.inf, np.inf
    for _ in range(repeats):  # alternated, so that both see the same machine state
        t_counts = min(t_counts, best_of(lambda: bin_spikes(times, units, n_units, align, WINDOW, BIN), 1)[0])
        t0 = time.perf_counter()
        bin_spikes(times, units, n_units, align, WINDOW, BIN)
        spike_events(times, units, align, WINDOW, BIN, check_sorted=False)
        t_both = min(t_both, time.perf_counter() - t0)
    tracemalloc.start()
    spike_events(times, units, align, WINDOW, BIN, check_sorted=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tmp = Path(tempfile.mkdtemp(prefix="neds-bench-events-"))
    res = {
        "n_events": int(events[0].size),
        "spike_events_s": t_events,
        "bin_spikes_alternated_s": t_counts,
        "bin_spikes_and_spike_events_s": t_both,
        "spike_events_peak_alloc_MiB": peak / 2**20,
        "events_MiB": sum(a.nbytes for a in events) / 2**20,
    }
    try:
        for label, ds in (("counts_only", binned_dataset(counts)), ("with_events", binned_dataset(counts, events))):
            path = tmp / f"{label}.zarr"
            res[f"write_zarr_{label}_s"] = median_of(
                lambda ds=ds, path=path: write_zarr(ds, path), max(1, repeats // 3)
            )
            res[f"store_MiB_{label}"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
            res[f"read_unverified_{label}_s"] = median_of(lambda path=path: open_zarr(path).load(), repeats)
            res[f"open_binned_{label}_s"] = median_of(lambda path=path: open_binned(path), repeats)
            if label == "with_events":
                loaded = open_binned(path, events=True)
                res["checksums_of_events_s"] = median_of(
                    lambda ds=loaded[list(EVENT_VARIABLES)]: content_fingerprint(ds), repeats
                )
                res["check_spike_events_s"] = median_of(
                    lambda ds=loaded, path=path: check_spike_events(ds, path), repeats
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out/binning.json")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--events-only", action="store_true", help="skip the per-trial reference and pass sweep")
    args = parser.parse_args()

    times, units, align = make_session()
    n_units, n_spikes = 600, times.size
    print(f"session: {n_spikes / 1e6:.1f} M spikes, {n_units} units, {align.size} trials")
    if args.events_only:
        t_ours, counts = best_of(lambda: bin_spikes(times, units, n_units, align, WINDOW, BIN), args.repeats)
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "numpy": np.__version__,
            "n_spikes": int(n_spikes),
            "n_spikes_in_windows": int(counts.sum(dtype=np.int64)),
            "output_shape": list(counts.shape),
            "neds_s": t_ours,
            **events_bench(times, units, n_units, align, counts, args.repeats),
        }
        for key, value in result.items():
            print(f"{key:36s} {value:.4g}" if isinstance(value, float) else f"{key:36s} {value}")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return

    t_floor, _ = best_of(lambda: np.bincount(units, minlength=n_units), args.repeats)
    t_ours, counts = best_of(lambda: bin_spikes(times, units, n_units, align, WINDOW, BIN), args.repeats)
    t_ours_nocheck, _ = best_of(
        lambda: bin_spikes(times, units, n_units, align, WINDOW, BIN, check_sorted=False), args.repeats
    )
    tracemalloc.start()
    bin_spikes(times, units, n_units, align, WINDOW, BIN)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    import neds.data.binning as binning

    default_pass = binning._MAX_CELLS_PER_PASS
    sweep = {}
    for log2 in (16, 18, 20, 22, 24):  # cells per bincount pass: malloc/page-fault behaviour
        binning._MAX_CELLS_PER_PASS = 1 << log2
        sweep[f"2^{log2}"] = best_of(lambda: bin_spikes(times, units, n_units, align, WINDOW, BIN), args.repeats)[0]
    binning._MAX_CELLS_PER_PASS = default_pass
    t_ref, ref = best_of(lambda: per_trial_binning(times, units, n_units, align), 1)
    assert np.array_equal(ref, counts), "per-trial and vectorised binning disagree"

    windowed = int(counts.sum(dtype=np.int64))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "numpy": np.__version__,
        "n_spikes": int(n_spikes),
        "n_spikes_in_windows": windowed,
        "n_units": n_units,
        "n_trials": int(align.size),
        "output_shape": list(counts.shape),
        "bincount_floor_s": t_floor,
        "neds_s": t_ours,
        "neds_no_sort_check_s": t_ours_nocheck,
        "per_trial_2_workers_s": t_ref,
        "bincount_floor_Mspikes_per_s": n_spikes / t_floor / 1e6,
        "neds_Mspikes_per_s": n_spikes / t_ours / 1e6,
        "neds_no_sort_check_Mspikes_per_s": n_spikes / t_ours_nocheck / 1e6,
        "per_trial_Mspikes_per_s": n_spikes / t_ref / 1e6,
        "speedup_vs_per_trial": t_ref / t_ours,
        "fraction_of_bincount_floor": t_floor / t_ours,
        "neds_peak_alloc_MiB": peak / 2**20,
        "pass_size_sweep_s": sweep,
        "output_MiB": counts.nbytes / 2**20,
        "input_MiB": (times.nbytes + units.nbytes) / 2**20,
        **events_bench(times, units, n_units, align, counts, args.repeats),
    }
    for key, value in result.items():
        print(f"{key:36s} {value:.4g}" if isinstance(value, float) else f"{key:36s} {value}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
