"""Loading the simulated sessions through ONE (local mode) with three kinds of cache tables.

* ``make_parquet_db``: ONE's own indexer (random uuid1-based eids, empty hashes, no
  default_revision column);
* neds with md5 sums (as the IBL database stores them; ONE re-hashes every loaded file);
* neds without hashes (the workflow's default, ``simulation.hash_files: false``).

For each: wall time to load every session with ``neds.io.ibl.load_session`` (spike sorting of all
probes, trials, wheel, whisker motion energy) and the number of warnings ONE logs.

Run:  python bench/bench_one_cache.py [--workdir /tmp/neds-one-bench]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
import warnings
from pathlib import Path

import pandas as pd


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


def load_all(cache_dir: Path, eids: list[str]) -> tuple[float, int]:
    from neds.io.ibl import OneSettings, connect, load_session

    handler = _Counter()
    logging.getLogger().addHandler(handler)
    settings = OneSettings(mode="local", cache_dir=str(cache_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        one = connect(settings)
        for eid in eids:
            load_session(one, eid, settings)
        elapsed = time.perf_counter() - t0
    logging.getLogger().removeHandler(handler)
    return elapsed, handler.count + len(caught)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/neds-one-bench")
    args = parser.parse_args()
    from one.alf.cache import make_parquet_db

    from neds.simulate import SimulationConfig, build_one_cache, simulate_sessions

    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    cache = root / "one_cache"
    manifest = simulate_sessions(cache, root / "ground_truth", SimulationConfig(), hash_files=False)
    sessions = dict(zip(manifest["eid"], manifest["session_path"]))
    rows = []

    t, n = load_all(cache, list(sessions))
    rows.append(("neds tables, no hashes (default)", t, n))
    build_one_cache(cache, sessions, hash_files=True)
    t, n = load_all(cache, list(sessions))
    rows.append(("neds tables, md5 sums", t, n))
    make_parquet_db(cache, hash_ids=True, hash_files=False)
    from one.api import One

    eids = One(cache_dir=str(cache), mode="local").search()
    t, n = load_all(cache, [str(e) for e in eids])
    rows.append(("one.alf.cache.make_parquet_db", t, n))
    table = pd.DataFrame(rows, columns=["tables", "load_s", "warnings"])
    print(f"{len(sessions)} sessions, {int(manifest['n_probes'].sum())} probes")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
