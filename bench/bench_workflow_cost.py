"""What a finished run's jobs cost, from the benchmark files Snakemake wrote for them.

Every training, evaluation and data rule of the workflow has a ``benchmark:`` file (one TSV row:
wall seconds ``s``, peak resident memory ``max_rss`` in MB, ``cpu_time``, ...). This script
groups them by what they did (the main run's rules by rule and stage; an experiment's jobs by
experiment, option and stage, a variant ``<option>_seed_<seed>`` counting under its option) and
reports, per group, the number of jobs, their summed and mean wall and CPU time and their peak
memory. The sum over groups is the machine time a run needs; divided by the cores it ran on,
the wall clock it needs when the scheduler keeps them busy.

    python bench/bench_workflow_cost.py --run /path/to/run --experiment loss_balance \\
        --out bench/results/loss_balance_cost.json
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from benchio import emit_json  # bench/, the folder of this script

from neds.experiments import SEED_SEPARATOR


def read_benchmark(path: Path) -> dict[str, float]:
    """The one row of a Snakemake benchmark file, as numbers (``h:m:s`` left out)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if len(rows) != 1:
        raise ValueError(
            f"{path}: expected one benchmark row, found {len(rows)} (was the job run with --benchmark-repeats?)"
        )
    return {k: float(v) for k, v in rows[0].items() if k != "h:m:s" and v not in ("", "NA", "-")}


def group_of(path: Path, benchmarks: Path) -> tuple[str, ...]:
    """(where, what, stage) of a benchmark file below ``benchmarks``: ``('main', rule, stage)`` for
    the main run's rules, ``(experiment, option, stage)`` for an experiment's jobs."""
    parts = path.relative_to(benchmarks).with_suffix("").parts
    if parts[0] == "experiments" and len(parts) >= 4:
        experiment, variant, stage = parts[1], parts[2], parts[3]
        option = variant.rpartition(SEED_SEPARATOR)[0] or variant
        return experiment, option, stage
    if parts[0] == "experiments":
        return parts[1], "-", parts[-1]
    if len(parts) == 1:
        return "main", parts[0], "-"
    stage = parts[1] if parts[0] == "train_model" else "-"
    return "main", parts[0], stage


def summarise(run: Path, experiment: str | None = None) -> dict:
    """The cost table of a run folder's ``benchmarks/`` (only ``experiment``'s jobs when given)."""
    benchmarks = run / "benchmarks"
    if not benchmarks.is_dir():
        raise SystemExit(f"{benchmarks} does not exist: give --run the folder a finished run was made in")
    groups: dict[tuple[str, ...], list[dict[str, float]]] = defaultdict(list)
    for path in sorted(benchmarks.rglob("*.tsv")):
        key = group_of(path, benchmarks)
        if experiment is None or key[0] == experiment:
            groups[key].append(read_benchmark(path))
    if not groups:
        raise SystemExit(f"no benchmark files of {experiment or 'any job'} under {benchmarks}")
    rows = []
    for (where, what, stage), jobs in sorted(groups.items()):
        wall = [j["s"] for j in jobs]
        rows.append(
            {
                "where": where,
                "what": what,
                "stage": stage,
                "jobs": len(jobs),
                "wall_s_sum": round(sum(wall), 1),
                "wall_s_mean": round(sum(wall) / len(wall), 1),
                "wall_s_min": round(min(wall), 1),
                "wall_s_max": round(max(wall), 1),
                "cpu_s_sum": round(sum(j.get("cpu_time", float("nan")) for j in jobs), 1),
                "max_rss_mb": round(max(j.get("max_rss", float("nan")) for j in jobs), 1),
            }
        )
    total = sum(r["wall_s_sum"] for r in rows)
    return {"run": str(run), "experiment": experiment, "groups": rows, "wall_s_total": round(total, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("."), help="the folder the run was made in (holds benchmarks/)")
    ap.add_argument("--experiment", help="only this experiment's jobs (e.g. loss_balance); 'main' for the main run")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    emit_json(summarise(args.run, args.experiment), args.out)


if __name__ == "__main__":
    main()
