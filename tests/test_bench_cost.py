"""bench/bench_workflow_cost.py: a run's Snakemake benchmark files grouped and summed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_workflow_cost import group_of, summarise

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path: Path, seconds: float, rss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t1\t1\t99\t{seconds - 1}\n")


def test_jobs_are_grouped_by_experiment_option_and_stage(tmp_path):
    b = tmp_path / "benchmarks"
    _bench(b / "pretrain_model" / "pretrain.tsv", 300, 800)
    _bench(b / "train_model" / "finetune" / "eid1.tsv", 100, 600)
    _bench(b / "train_model" / "finetune" / "eid2.tsv", 140, 650)
    for seed, seconds in ((42, 400), (43, 500)):
        _bench(b / "experiments" / "loss_balance" / f"paper_seed_{seed}" / "pretrain.tsv", seconds, 810)
        _bench(b / "experiments" / "loss_balance" / f"paper_seed_{seed}" / "scratch" / "eid1.tsv", 200, 700)
    _bench(b / "experiments" / "seeds" / "seed_42" / "finetune" / "eid1.tsv", 90, 600)
    assert group_of(b / "train_model" / "finetune" / "eid1.tsv", b) == ("main", "train_model", "finetune")
    assert group_of(b / "experiments" / "seeds" / "seed_42" / "finetune" / "eid1.tsv", b) == (
        "seeds",
        "seed_42",
        "finetune",
    )

    main = {(r["what"], r["stage"]): r for r in summarise(tmp_path, "main")["groups"]}
    assert main["train_model", "finetune"]["jobs"] == 2
    assert main["train_model", "finetune"]["wall_s_sum"] == 240 and main["train_model", "finetune"]["wall_s_max"] == 140
    assert main["train_model", "finetune"]["max_rss_mb"] == 650
    balance = summarise(tmp_path, "loss_balance")
    rows = {(r["what"], r["stage"]): r for r in balance["groups"]}
    assert set(rows) == {("paper", "pretrain"), ("paper", "scratch")}  # the seeds count under their option
    assert rows["paper", "pretrain"]["wall_s_mean"] == 450 and rows["paper", "pretrain"]["cpu_s_sum"] == 898
    assert balance["wall_s_total"] == 1300
    assert summarise(tmp_path)["wall_s_total"] == 300 + 240 + 1300 + 90


def test_a_missing_or_repeated_benchmark_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="benchmarks"):
        summarise(tmp_path)
    path = tmp_path / "benchmarks" / "pretrain_model" / "pretrain.tsv"
    _bench(path, 300, 800)
    with pytest.raises(SystemExit, match="no benchmark files of peers"):
        summarise(tmp_path, "peers")
    path.write_text(path.read_text() + path.read_text().splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="expected one benchmark row, found 2"):
        summarise(tmp_path)
