"""Binning throughput: neds' vectorised binning vs a per-trial implementation, side by side.

A realistic session: 600 units, one hour at ~10 Hz (~21.6 M spikes), 400 trials, windows of 2 s
with 20 ms bins. Throughput is reported in session spikes per second (all spikes of the recording
divided by the time to produce the (trials, bins, units) count array), against

* the per-trial approach of the authors' code: for each trial, select its spikes from the whole
  recording with a boolean mask, then histogram them by (time, unit); run with 2 worker processes;
* the memory-bound floor: one ``np.bincount`` pass over all spike cluster ids.

Run:  python bench/bench_binning.py [--out bench/out/binning.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from neds.data.binning import bin_spikes

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out/binning.json")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    times, units, align = make_session()
    n_units, n_spikes = 600, times.size
    print(f"session: {n_spikes / 1e6:.1f} M spikes, {n_units} units, {align.size} trials")

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
    }
    for key, value in result.items():
        print(f"{key:36s} {value:.4g}" if isinstance(value, float) else f"{key:36s} {value}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
