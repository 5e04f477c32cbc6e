"""What verifying a binned store costs: reading it unverified against neds.io.store.open_binned
(content checksums plus range checks), and writing it with xarray against neds.io.store.write_zarr
(fingerprint plus the read-back check).

The store has the default run's shape, or the paper's with --paper: trials x 100 bins x units of
uint16 spike counts, two float32 behaviours, two labels, the split and the unit and trial
coordinates.

Run:  python bench/bench_verify.py [--repeats 20] [--paper] [--out bench/results/verify.json]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from benchio import emit_json


def binned_dataset(n_trials: int, n_units: int, seed: int = 0) -> xr.Dataset:
    from neds.io.store import text_array

    rng = np.random.default_rng(seed)
    split = rng.permutation(np.array(["train"] * n_trials, dtype=object))
    split[: n_trials // 10], split[n_trials // 10 : 3 * n_trials // 10] = "val", "test"
    return xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), rng.poisson(0.1, (n_trials, 100, n_units)).astype(np.uint16)),
            "wheel_speed": (("trial", "time"), rng.random((n_trials, 100), dtype=np.float32)),
            "whisker_motion_energy": (("trial", "time"), rng.random((n_trials, 100), dtype=np.float32)),
            "choice": (("trial",), rng.integers(0, 2, n_trials).astype(np.int8)),
            "block": (("trial",), rng.integers(0, 3, n_trials).astype(np.int8)),
        },
        coords={
            "trial": np.arange(n_trials),
            "time": -0.49 + 0.02 * np.arange(100),
            "split": ("trial", text_array(split)),
            "unit_region": ("unit", text_array(rng.choice(["VISa", "CA1", "DG", "LP", "PO"], n_units))),
            "unit_firing_rate_hz": ("unit", rng.random(n_units) * 20),
        },
        attrs={"eid": "00000000-0000-4000-8000-000000000000", "binning": {"bin_size_s": 0.02}},
    )


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    from neds.io.store import check_binned_values, content_fingerprint, open_binned, open_zarr, write_zarr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--paper", action="store_true", help="a paper-sized session (600 trials x 700 units)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n_trials, n_units = (600, 700) if args.paper else (300, 120)
    ds = binned_dataset(n_trials, n_units)
    tmp = Path(tempfile.mkdtemp(prefix="neds-verify-"))
    try:
        path = tmp / "session.zarr"
        write_zarr(ds, path)
        loaded = open_zarr(path).load()
        res = {
            "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
            "store": f"{n_trials} trials x 100 bins x {n_units} units",
            "store_mb": round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2),
            "repeats": args.repeats,
            # medians in ms
            "read_unverified_ms": median_ms(lambda: open_zarr(path).load(), args.repeats),
            "open_binned_ms": median_ms(lambda: open_binned(path), args.repeats),
            "checksums_ms": median_ms(lambda: content_fingerprint(loaded), args.repeats),
            "range_checks_ms": median_ms(lambda: check_binned_values(loaded, path), args.repeats),
            "write_xarray_ms": median_ms(
                lambda: ds.to_zarr(tmp / "plain.zarr", mode="w", zarr_format=3, consolidated=False),
                max(3, args.repeats // 4),
            ),
            "write_zarr_ms": median_ms(lambda: write_zarr(ds, tmp / "verified.zarr"), max(3, args.repeats // 4)),
        }
        res["verification_overhead_read"] = res["open_binned_ms"] / res["read_unverified_ms"] - 1
        emit_json(res, args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
