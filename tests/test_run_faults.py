"""Faults of the run as a whole, injected and answered: constant decoding targets, no usable
held-out session, a shared animal, an empty config, the workflow profile."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neds.config import ConfigError, check_no_shared_subjects
from neds.data.dataset import random_trials
from neds.evaluate.evaluation import score, unscorable_targets
from neds.evaluate.tables import collect_rows, pretraining_gain, summarize, summary_html, summary_markdown
from neds.stages import run_summarize_evaluation, run_summarize_sessions, usable_eids

ROOT = Path(__file__).resolve().parent.parent
EIDS = [
    "754b74d5-7a06-4004-ae0c-72a10b6ed2e6",
    "781b35fd-e1f0-4d14-b2bb-95b7263082bb",
    "d23a44ef-1402-4ed7-97f5-47e9a7a504d9",
    "db4df448-e449-4a6f-a0e7-288711e7a75a",
]


def _perfect_prediction(data, split="test"):
    idx = data.indices(split)
    return {
        "choice_prob": torch.nn.functional.one_hot(data.choice[idx], 2).double().numpy(),
        "block_prob": torch.nn.functional.one_hot(data.block[idx], 3).double().numpy(),
        "wheel": data.wheel[idx].numpy(),
        "whisker": data.whisker[idx].numpy(),
    }


def test_a_session_without_blocks_is_not_scored_on_block():
    data = random_trials([5], 60, seed=0)
    data.block[:] = 1  # every trial at probabilityLeft 0.5: no blocks
    assert unscorable_targets(data) == {"block": "block is constant on the test trials (all pLeft 0.5)"}
    row, _ = score(_perfect_prediction(data), data)
    assert np.isnan(row["block_acc"]) and np.isnan(row["block_balanced_acc"])
    assert row["choice_acc"] == 1.0 and row["wheel_r2"] == 1.0
    assert row["not_scored"] == "block_acc, block_balanced_acc: block is constant on the test trials (all pLeft 0.5)"


def test_a_target_constant_on_the_training_trials_only_is_not_scored():
    data = random_trials([5], 60, seed=1)
    train = data.indices("train")
    data.choice[train] = 0  # one-sided choices while training, both sides at test
    row, _ = score(_perfect_prediction(data), data)
    assert np.isnan(row["choice_acc"]) and "choice is constant on the train trials (all choice -1)" in row["not_scored"]
    assert np.isfinite(row["block_acc"])


def test_tables_leave_unscored_sessions_out_of_means_and_gain(tmp_path):
    files = []
    for i, eid in enumerate(EIDS[2:]):
        no_blocks = i == 1
        rows = [
            {
                "method": m,
                "eid": eid,
                "split": "test",
                "bps_unit_mean": 0.2 + 0.01 * j,
                "block_acc": np.nan if no_blocks else 0.6 + 0.1 * j,
                "not_scored": "block_acc: block is constant on the test trials (all pLeft 0.5)" if no_blocks else "",
            }
            for j, m in enumerate(("neds_finetuned", "neds_scratch"))
        ]
        files.append(tmp_path / f"{eid}.json")
        files[-1].write_text(json.dumps({"rows": rows}))
    df = collect_rows(files)
    summary = summarize(df).set_index("method")
    assert summary.loc["neds_finetuned", "block_acc_mean"] == pytest.approx(0.6)
    assert summary.loc["neds_finetuned", "block_acc_n"] == 1 and summary.loc["neds_finetuned", "bps_unit_mean_n"] == 2
    assert EIDS[3] in summary.loc["neds_finetuned", "not_scored"]
    gain = pretraining_gain(df).set_index("metric")
    assert gain.loc["block_acc", "n_sessions"] == 1
    assert gain.loc["block_acc", "gain_percent"] == pytest.approx(100 * (0.6 - 0.7) / 0.7)
    assert "Not scored" in summary_markdown(summarize(df), pretraining_gain(df))
    summarize(df).to_csv(tmp_path / "summary.tsv", sep="\t", index=False)
    pretraining_gain(df).to_csv(tmp_path / "gain.tsv", sep="\t", index=False)
    page = summary_html(tmp_path / "summary.tsv", tmp_path / "gain.tsv")
    assert "Not scored" in page and EIDS[3] in page


def test_no_usable_heldout_session_stops_with_every_reason(tmp_path):
    statuses = [
        {"eid": EIDS[0], "usable": True, "reason": "", "subject": "A"},
        {"eid": EIDS[2], "usable": False, "reason": "no whisker motion energy (leftCamera: missing)", "subject": "B"},
        {
            "eid": EIDS[3],
            "usable": False,
            "reason": "12 usable trials, fewer than binning.min_trials = 50",
            "subject": "C",
        },
    ]
    files = []
    for s in statuses:
        files.append(tmp_path / f"{s['eid']}.json")
        files[-1].write_text(json.dumps(s))
    roles = {EIDS[0]: "pretrain", EIDS[2]: "heldout", EIDS[3]: "heldout"}
    run_summarize_sessions(files, roles, tmp_path / "sessions.tsv")
    assert usable_eids(tmp_path / "sessions.tsv", "pretrain") == [EIDS[0]]
    with pytest.raises(ValueError, match="no usable held-out session") as err:
        usable_eids(tmp_path / "sessions.tsv", "heldout")
    assert "no whisker motion energy" in str(err.value) and "fewer than binning.min_trials" in str(err.value)
    with pytest.raises(ValueError, match="no evaluated held-out session"):
        run_summarize_evaluation([], *(tmp_path / n for n in ("m.tsv", "s.tsv", "g.tsv", "s.md")))


def test_leakage_guard_compares_animals():
    check_no_shared_subjects(
        [
            {"eid": EIDS[0], "role": "pretrain", "subject": "A"},
            {"eid": EIDS[2], "role": "heldout", "subject": "B"},
            {"eid": EIDS[3], "role": "heldout", "subject": ""},
        ]
    )
    sessions = [
        {"eid": EIDS[0], "role": "pretrain", "subject": "A"},
        {"eid": EIDS[1], "role": "pretrain", "subject": "KS023"},
        {"eid": EIDS[2], "role": "heldout", "subject": "KS023"},
    ]
    with pytest.raises(
        ConfigError, match=f"subject KS023 recorded held-out session {EIDS[2]} and pretraining session {EIDS[1]}"
    ):
        check_no_shared_subjects(sessions)


def test_summarize_sessions_refuses_a_shared_animal(tmp_path):
    files = []
    for eid, subject in ((EIDS[0], "KS023"), (EIDS[2], "KS023")):
        files.append(tmp_path / f"{eid}.json")
        files[-1].write_text(json.dumps({"eid": eid, "usable": True, "reason": "", "subject": subject}))
    with pytest.raises(ConfigError, match="KS023"):
        run_summarize_sessions(files, {EIDS[0]: "pretrain", EIDS[2]: "heldout"}, tmp_path / "sessions.tsv")


def test_an_empty_config_file_is_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    proc = subprocess.run(
        [sys.executable, "-m", "neds", "--config", str(empty), "sessions"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode != 0 and "is empty or not a YAML mapping" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "neds", "--config", str(tmp_path / "nope.yaml"), "sessions"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_the_workflow_profile_applies_from_the_repository_root(tmp_path):
    """`snakemake` from the repository root finds workflow/Snakefile and, beside it, the workflow
    profile whose rerun-incomplete rebuilds what a killed job left."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--directory",
            str(tmp_path),
            "-n",
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert "Using workflow specific profile workflow/profiles/default" in proc.stderr + proc.stdout
    profile = (ROOT / "workflow" / "profiles" / "default" / "config.yaml").read_text()
    assert "rerun-incomplete: true" in profile
    # it must not override what a cluster profile sets (workflow profiles take precedence)
    slurm = (ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text()
    keys = {line.split(":")[0] for line in profile.splitlines() if line and not line.startswith(("#", " "))}
    for key in keys:
        value = next(line for line in profile.splitlines() if line.startswith(f"{key}:"))
        assert key not in slurm or value in slurm, f"the workflow profile overrides the SLURM profile's {key}"


def test_sessions_table_reasons_stay_on_one_line(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps({"eid": EIDS[2], "usable": False, "reason": "line one\nline two\tend", "subject": "B"})
    )
    run_summarize_sessions([tmp_path / "a.json"], {EIDS[2]: "heldout"}, tmp_path / "sessions.tsv")
    lines = (tmp_path / "sessions.tsv").read_text().splitlines()
    assert len(lines) == 2
    assert pd.read_csv(tmp_path / "sessions.tsv", sep="\t")["reason"].tolist() == ["line one line two end"]
