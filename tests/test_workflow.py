"""End-to-end: the data stage of the workflow on a tiny config in a temporary directory."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neds import vocab
from neds.config import session_lists, validate_config
from neds.io.store import is_usable, open_binned, open_zarr

ROOT = Path(__file__).resolve().parent.parent


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(ROOT / "config", workdir / "config")
    shutil.copy(ROOT / "tests" / "config" / "tiny.yaml", workdir / "config" / "config.yaml")
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_data_stage_outputs(run):
    import yaml

    config = validate_config(yaml.safe_load((run / "config" / "config.yaml").read_text()))
    pretrain, heldout = session_lists(config)
    table = pd.read_csv(run / "results" / "binned" / "sessions.tsv", sep="\t")
    assert sorted(table["eid"]) == sorted(pretrain + heldout)
    assert set(table.loc[table["eid"].isin(pretrain), "role"]) == {"pretrain"}
    # the session written without motion energy is skipped with its reason, the others are usable
    skipped = table.loc[table["eid"] == heldout[1]].iloc[0]
    assert not skipped["usable"] and "motion energy" in skipped["reason"]
    assert table.loc[table["eid"] != heldout[1], "usable"].all()
    assert not is_usable(run / "results" / "binned" / f"{heldout[1]}.zarr")

    for eid in pretrain + heldout[:1]:
        ds = open_binned(run / "results" / "binned" / f"{eid}.zarr")
        assert ds["spikes"].dims == ("trial", "time", "unit") and ds.sizes["time"] == 100
        assert ds["spikes"].dtype == np.uint16
        assert set(np.unique(ds["split"].values)) == {"train", "val", "test"}
        assert set(ds["unit_region"].values) <= {"VISa", "CA1", "DG", "LP", "PO"}
        for name in ("wheel_speed", "whisker_motion_energy"):
            v = ds[name].values
            assert np.nanmin(v) == 0.0 and np.nanmax(v) == 1.0 and not np.isnan(v).any()
        assert ds.attrs["eid"] == eid and ds.attrs["neds_version"]
        assert (ds["unit_firing_rate_hz"] > 2.0).all()
        dropped = pd.read_csv(run / "results" / "binned" / "dropped" / f"{eid}.tsv", sep="\t")
        row = table.set_index("eid").loc[eid]
        assert (dropped["kind"] == "trial").sum() == row["n_trials_total"] - row["n_trials_kept"]
        assert (dropped["kind"] == "unit").sum() == row["n_units_total"] - row["n_units_kept"]
        status = json.loads((run / "results" / "binned" / "status" / f"{eid}.json").read_text())
        assert status["usable"] and status["n_units_kept"] == ds.sizes["unit"]

    # binned counts agree with the simulator's ground truth in expectation
    eid = pretrain[0]
    ds = open_binned(run / "results" / "binned" / f"{eid}.zarr")
    truth = open_zarr(run / "resources" / "simulated" / "ground_truth" / f"{eid}.zarr").load()
    truth_units = {(p, c): i for i, (p, c) in enumerate(zip(truth["probe"].values, truth["cluster_id"].values))}
    idx = [truth_units[(p, c)] for p, c in zip(ds["unit_probe"].values, ds["unit_cluster_id"].values)]
    expected = truth["expected_counts"].values[ds["trial"].values][:, :, idx]
    observed = ds["spikes"].values.astype(float)
    total_exp, total_obs = expected.sum(), observed.sum()
    assert abs(total_obs - total_exp) < 5 * np.sqrt(total_exp)
    np.testing.assert_array_equal(ds["unit_region"].values, truth["region"].values[idx])


@pytest.mark.slow
def test_training_stage_outputs(run):
    import yaml

    from neds.train import load_model

    config = validate_config(yaml.safe_load((run / "config" / "config.yaml").read_text()))
    pretrain, heldout = session_lists(config)
    models = run / "results" / "models"
    pre, ckpt = load_model(models / "pretrain" / "model.pt")
    assert ckpt["vocab"]["eids"] == pretrain and pre.mode == "multimodal"
    usable_heldout = heldout[:1]  # heldout[1] lacks motion energy: no models for it
    for kind, mode in (
        ("finetune", "multimodal"),
        ("scratch", "multimodal"),
        ("encoding", "encoding"),
        ("decoding", "decoding"),
    ):
        model, ckpt = load_model(models / kind / usable_heldout[0] / "model.pt")
        assert model.mode == mode and ckpt["vocab"]["eids"] == usable_heldout
        summary = json.loads((models / kind / usable_heldout[0] / "summary.json").read_text())
        assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
        history = (models / kind / usable_heldout[0] / "history.jsonl").read_text().splitlines()
        assert len(history) == 2
        assert not (models / kind / heldout[1]).exists()
    finetuned, _ = load_model(models / "finetune" / usable_heldout[0] / "model.pt")
    assert json.loads((models / "finetune" / usable_heldout[0] / "summary.json").read_text())["extra"]["pretrained"]
    n_units = open_binned(run / "results" / "binned" / f"{usable_heldout[0]}.zarr").sizes["unit"]
    spike_w1 = next(
        v for k, v in finetuned.state_dict().items() if k.endswith("spike_stitcher.w1")
    )  # (sessions, units, 2 units)
    assert finetuned.n_units.tolist() == [n_units] and spike_w1.shape[:2] == (1, n_units)
    for name, value in finetuned.shared_state_dict().items():  # trained on: moved from the pretrained
        if name.startswith("blocks.0.qkv.weight"):
            assert not torch.equal(value, pre.shared_state_dict()[name])


@pytest.mark.slow
def test_evaluation_outputs(run):
    import yaml

    config = validate_config(yaml.safe_load((run / "config" / "config.yaml").read_text()))
    _, heldout = session_lists(config)
    table = pd.read_csv(run / "results" / "tables" / "metrics.tsv", sep="\t")
    assert set(table["eid"]) == {heldout[0]}  # the skipped session is not evaluated
    assert list(table["method"]) == [
        "neds_finetuned",
        "neds_scratch",
        "unimodal_encoding",
        "unimodal_decoding",
        "linear",
        "rrr",
        "oracle",
    ]
    rows = table.set_index("method")
    assert rows.loc["oracle", "bps_unit_mean"] > 0  # the truth beats the mean-rate null
    assert np.isnan(rows.loc["unimodal_encoding", "choice_acc"]) and np.isnan(
        rows.loc["unimodal_decoding", "bps_unit_mean"]
    )
    for method in ("neds_finetuned", "linear"):
        assert 0 <= rows.loc[method, "choice_acc"] <= 1 and np.isfinite(rows.loc[method, "bps_pooled"])
    pred = open_binned(run / "results" / "evaluation" / heldout[0] / "predictions" / "neds_finetuned.zarr")
    store = open_binned(run / "results" / "binned" / f"{heldout[0]}.zarr")
    test_trials = store["trial"].values[np.asarray(store["split"].values, dtype=object).astype(str) == "test"]
    np.testing.assert_array_equal(pred["trial"].values, test_trials)
    assert pred["rate"].shape == (len(test_trials), 100, store.sizes["unit"])
    summary_md = (run / "results" / "summary.md").read_text()
    assert "| neds_finetuned | 1 |" in summary_md and "oracle" in summary_md
    for target in ("pretrain", "finetune"):
        probe = json.loads((run / "results" / "probing" / target / "probe.json").read_text())
        assert probe["n_units"] > 0 and (probe["results"] or probe["skipped"])
    figures = run / "results" / "figures"
    for name in (
        "methods_encoding",
        "methods_decoding",
        "pretraining_gain",
        "training_curves",
        f"examples_{heldout[0]}",
        "probing_pretrain",
        "probing_finetune",
    ):
        for ext in ("png", "svg"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000, name
    assert (figures / "methods_encoding.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table" in (run / "results" / "tables" / "summary.html").read_text()


@pytest.mark.slow
def test_rerun_is_a_no_op_and_lint_is_clean(run):
    proc = snakemake(run, "--cores", "1", "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_experiment_targets(run):
    """seeds, ablation_masking, model_size, scaling, finetune_trials, peers, sweep and table1 on the tiny config."""
    proc = snakemake(run, "--cores", "2", "experiments", timeout=2400)  # about 60 training jobs
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    exp = run / "results" / "experiments"
    expected = {
        "seeds": {"seed_42", "seed_43"},
        "ablation_masking": {"full", "no_cross_modal", "no_cross_no_within"},
        "model_size": {"small", "large"},
        "scaling": {"sessions_1_seed_42", "sessions_1_seed_43", "scratch_seed_42", "scratch_seed_43"},
        "finetune_trials": {f"fraction_{f}_seed_{s}" for f in ("0.5", "1") for s in (42, 43)},
        "peers": {"seed_42", "seed_43"},
        "sweep": {"trial_00", "trial_01", "best"},
    }
    for name, variants in expected.items():
        metrics = pd.read_csv(exp / name / "metrics.tsv", sep="\t")
        assert set(metrics["variant"]) == variants, name
        neds_rows = metrics["method"].isin([vocab.NEDS_FINETUNED, vocab.NEDS_SCRATCH])
        assert metrics.loc[neds_rows, "bps_unit_mean"].notna().all() and neds_rows.any()
        summary = pd.read_csv(exp / name / "summary.tsv", sep="\t")
        assert set(summary["variant"]) == variants
        for ext in ("png", "svg"):
            assert (run / "results" / "figures" / f"experiment_{name}.{ext}").stat().st_size > 0
    seeds = pd.read_csv(exp / "seeds" / "metrics.tsv", sep="\t")
    assert set(seeds["method"]) == {"neds_finetuned", "neds_scratch"}
    # each seed trained its own model: different seeds give different scores
    assert seeds.groupby("variant")["bps_unit_mean"].mean().nunique() == 2
    # the sweep's best trial is the one with the best mean validation score, and is rescored on test
    sweep = pd.read_csv(exp / "sweep" / "metrics.tsv", sep="\t")
    best = json.loads((exp / "sweep" / "best.json").read_text())
    trials = sweep[sweep["variant"] != "best"]
    assert (trials["split"] == "val").all() and (sweep.loc[sweep["variant"] == "best", "split"] == "test").all()
    keys = ["bps_unit_mean", "choice_acc", "block_acc", "wheel_r2", "whisker_r2"]
    mean_score = trials.groupby("variant")[keys].mean().mean(axis=1)
    assert best["variant"] == mean_score.idxmax()
    ckpt = torch.load(exp / "sweep" / "best" / "scratch" / trials["eid"].iloc[0] / "model.pt", weights_only=False)
    assert ckpt["model_config"]["hidden"] == best["settings"]["model"]["hidden"]
    # scaling pretrains on the first k usable pretraining sessions (k = 1 of 2), per seed; its
    # reference, trained from scratch, pretrains nothing
    pre = torch.load(exp / "scaling" / "sessions_1_seed_43" / "pretrain" / "model.pt", weights_only=False)
    assert len(pre["vocab"]["eids"]) == 1 and pre["train_config"]["seed"] == 43
    assert not (exp / "scaling" / "scratch_seed_42" / "pretrain").exists()
    # finetune_trials trains on the nested fraction of the held-out session's training trials
    for stage in ("finetune", "scratch"):
        n = {
            f: json.loads(
                next((exp / "finetune_trials" / f"fraction_{f}_seed_42" / stage).glob("*/summary.json")).read_text()
            )["n_train_trials"]
            for f in ("0.5", "1")
        }
        assert n["0.5"] == round(0.5 * n["1"])
    # the gain of pretraining by amount of data: every level, metric and seed
    for name, levels in (("scaling", {1}), ("finetune_trials", {0.5, 1.0})):
        gain = pd.read_csv(exp / name / "gain.tsv", sep="\t")
        assert set(gain["level"]) == levels and (gain["seeds"] == 2).all()
        assert set(gain["metric"]) >= {"bps_unit_mean", "choice_acc", "block_acc", "wheel_r2"}
        assert np.allclose(gain["gain_mean"], gain["finetuned_mean"] - gain["scratch_mean"])
        assert "Gain of pretraining" in (exp / name / "gain.md").read_text()
        assert (run / "results" / "figures" / f"gain_{name}.png").stat().st_size > 0
    _check_peers(run)
    table1 = pd.read_csv(exp / "table1.tsv", sep="\t")
    assert set(table1["encoding_from"]) == {"all behaviours", "wheel", "whisker", "choice", "block"}


def _check_peers(run: Path) -> None:
    """The peers experiment: POYO+ and NDT2 pretrained on the pretraining sessions alone (never a
    held-out animal), fine-tuned from them, scored beside NEDS, and the comparison written."""
    import yaml

    from neds.train import load_model

    config = validate_config(yaml.safe_load((run / "config" / "config.yaml").read_text()))
    pretrain, heldout = session_lists(config)
    n_seeds = len(config["experiments"]["seeds"])
    exp = run / "results" / "experiments" / "peers"
    metrics = pd.read_csv(exp / "metrics.tsv", sep="\t")
    assert set(metrics["method"]) == {vocab.NEDS_FINETUNED, vocab.POYO_PLUS, vocab.NDT2}
    peers = metrics[metrics["method"] != vocab.NEDS_FINETUNED]
    assert peers[["choice_acc", "block_acc", "wheel_r2", "whisker_r2"]].notna().all().all()
    assert peers["bps_unit_mean"].isna().all()  # the peers decode only
    for stage in ("ndt2_pretrain", "poyo_pretrain"):
        model, ckpt = load_model(run / "results" / "models" / stage / "model.pt")
        assert ckpt["architecture"] == vocab.stage(stage).architecture
        assert set(model.eids) <= set(pretrain) and not set(model.eids) & set(heldout)
    poyo, _ = load_model(run / "results" / "models" / "poyo_pretrain" / "model.pt")
    words = [*poyo.poyo.unit_emb.vocab, *poyo.poyo.session_emb.vocab]
    assert not [w for w in words if any(e in w for e in heldout)]  # no held-out unit or session in its vocabulary
    eid = peers["eid"].iloc[0]
    for stage in ("ndt2_finetune", "poyo_finetune"):
        model, ckpt = load_model(exp / "seed_42" / stage / eid / "model.pt")
        assert model.eids == [eid] and ckpt["extra"]["pretrained"].endswith(f"{vocab.stage(stage).pretrained}/model.pt")
    table = pd.read_csv(exp / "comparison.tsv", sep="\t")
    assert list(table["method"][:3]) == [vocab.NEDS_FINETUNED, vocab.POYO_PLUS, vocab.NDT2]
    assert (table.loc[:2, "seeds"] == n_seeds).all()
    page = (exp / "comparison.md").read_text()
    assert "Against POYO+ fine-tuned" in page and "Against NDT2 fine-tuned" in page
    costs = pd.read_csv(exp / "costs.tsv", sep="\t").set_index("method")
    assert (costs["finetune_epochs"] == 2).all() and (costs["n_finetuned"] == n_seeds).all()  # one held-out session
    for name in ("peers_decoding", "peers_encoding", "training_curves_peers"):
        assert (run / "results" / "figures" / f"{name}.png").stat().st_size > 0


def _bwb_scorer(tmp_path: Path) -> Path:
    """A folder with a ``python`` on which ibl-bwb-eval 0.1.0 imports: this interpreter plus the
    scorer and its pure-Python dependencies installed without dependencies into a target folder
    (its own pins would pull a CUDA torch; the scorer only needs torch, numpy and safetensors)."""
    target = tmp_path / "bwb_packages"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            "ibl-bwb-eval==0.1.0",
            "torchmetrics==1.9.0",
            "lightning-utilities",
            "rich==15.0.0",
            "markdown-it-py",
            "mdurl",
            "pygments",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install ibl-bwb-eval from the package registry: {pip.stderr[-500:]}")
    bin_dir = tmp_path / "bwb_bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nPYTHONPATH="{target}" exec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return bin_dir


@pytest.mark.slow
def test_bwb_export_is_scored_by_the_benchmark_scorer(run, tmp_path):
    """`snakemake bwb` writes the submission layout; the benchmark's own scorer (rule bwb_score)
    reproduces the evaluation's numbers from it."""
    from safetensors.numpy import load_file
    from sklearn.metrics import f1_score

    from neds.io.bwb import COSMOS_LABELS, COSMOS_OF_BERYL, decode_ids

    work = tmp_path / "work"
    shutil.copytree(run, work, symlinks=True)
    proc = snakemake(work, "--cores", "1", "bwb")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    bwb = work / "results" / "bwb"
    manifest = json.loads((bwb / "manifest.json").read_text())
    (eid,) = manifest["sessions"]
    for task in ("ts1-choice", "ts1-wheel_speed", "ts1-whisker_motion_energy", "ts2-co_smoothing"):
        pred = load_file(bwb / "predictions" / "neds" / task / eid / "seed_42.safetensors")
        truth = load_file(bwb / "ground_truth" / task / eid / "ground_truth.safetensors")
        key = "trial_id" if task.startswith("ts1") else "window_timestamps"
        assert np.array_equal(pred[key], truth[key])
    # TS3: one row per probed unit, identified by its uuid, one-hot on the Cosmos parent of its probed region
    emb = open_zarr(work / "results" / "probing" / "finetune" / "embeddings.zarr")
    pred = load_file(bwb / "predictions" / "neds" / "ts3-unit_cosmos" / "seed_42.safetensors")
    assert decode_ids(pred["entity_ids"]).tolist() == [str(u) for u in emb["unit_uuid"].values]
    assert (pred["pred_proba"].sum(axis=1) == 1).all() and manifest["skipped"] == {}
    cosmos_true = [COSMOS_OF_BERYL[str(r)] for r in emb["region"].values]
    cosmos_pred = [COSMOS_OF_BERYL[str(r)] for r in emb["predicted_output"].values]  # bwb.probe_features

    env = {**os.environ, "PATH": f"{_bwb_scorer(tmp_path)}{os.pathsep}{os.environ['PATH']}"}
    proc = snakemake(work, "--cores", "1", "bwb_score", env=env)
    assert proc.returncode == 0, (
        proc.stdout[-3000:] + proc.stderr[-5000:] + (work / "logs" / "bwb" / "score.log").read_text()
    )
    scores = pd.read_csv(bwb / "scores.tsv", sep="\t").set_index(["task", "metric"])["value"]
    ours = next(
        r
        for r in json.loads((work / "results" / "evaluation" / eid / "metrics.json").read_text())["rows"]
        if r["method"] == "neds_finetuned"
    )
    assert scores["ts1-wheel_speed", "r2"] == pytest.approx(ours["wheel_r2"], abs=1e-4)
    assert scores["ts1-whisker_motion_energy", "r2"] == pytest.approx(ours["whisker_r2"], abs=1e-4)
    assert scores["ts1-choice", "bacc"] == pytest.approx(ours["choice_balanced_acc"], abs=1e-6)
    assert scores["ts2-co_smoothing", "bps"] == pytest.approx(ours["bps_pooled"], abs=1e-3)
    macro_f1 = f1_score(cosmos_true, cosmos_pred, labels=list(COSMOS_LABELS), average="macro", zero_division=0)
    assert scores["ts3-unit_cosmos", "macro/f1-score"] == pytest.approx(macro_f1)


def _fake_slurm(tmp_path: Path, expect: int) -> tuple[dict, Path]:
    """The environment in which the SLURM commands are the stand-ins of tests/fake_slurm, and the
    log where sbatch records its calls. Their sacct fails every job once ``expect`` jobs are
    submitted (or after 600 s, however loaded the machine), so no job fails before every job that
    is ready has reached sbatch, however the run is scheduled."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "sacct", "squeue", "sinfo", "sacctmgr", "sshare", "scontrol"):
        (bin_dir / name).symlink_to(ROOT / "tests" / "fake_slurm" / "fake_slurm.py")
    log = tmp_path / "sbatch.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_LOG": str(log),
        "FAKE_SLURM_EXPECT": str(expect),
        "FAKE_SLURM_PATIENCE": "600",
    }
    return env, log


def _sbatch_calls(log: Path) -> list[tuple[str, list[str]]]:
    """(rule, sbatch arguments) of each call the stand-in sbatch recorded in ``log``; the
    executor names the rule in the job's ``--comment`` (rule_<name>[_wildcards_...])."""
    calls = []
    for line in log.read_text().splitlines():
        args = json.loads(line)["args"]
        comment = args[args.index("--comment") + 1]
        calls.append((comment.split("_wildcards")[0].removeprefix("rule_"), args))
    return calls


@pytest.mark.slow
def test_slurm_profile_becomes_the_expected_sbatch_options(run, tmp_path):
    """The SLURM profile through snakemake-executor-plugin-slurm, with stand-in SLURM commands:
    per-rule partitions, memory, runtime and GPUs reach sbatch (nothing is executed)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    work = tmp_path / "work"
    shutil.copytree(run, work, symlinks=True)
    (work / "config" / "gpus.yaml").write_text("training: {pretrain_gpus: 2, gpus: 1}\n")
    # the jobs ready at once: pretraining and every held-out stage but fine-tuning (it waits for pretraining)
    n_ready = len([s for s in vocab.HELDOUT_STAGES if not vocab.stage(s).from_pretrained])
    env, log = _fake_slurm(tmp_path, expect=1 + n_ready)
    proc = snakemake(
        work,
        "--profile",
        str(ROOT / "workflow" / "profiles" / "slurm"),
        "--configfile",
        str(work / "config" / "config.yaml"),
        str(work / "config" / "gpus.yaml"),
        "--forcerun",
        "pretrain_model",
        "train_model",
        "--until",
        "pretrain_model",
        "train_model",
        "--retries",
        "0",
        "--latency-wait",
        "1",
        "--slurm-init-seconds-before-status-checks",
        "1",
        env=env,
    )
    assert proc.returncode != 0  # the stand-in sacct fails every job
    by_rule = {}
    for rule, args in _sbatch_calls(log):
        by_rule.setdefault(rule, []).append(" ".join(args))
    assert set(by_rule) == {"pretrain_model", "train_model"}, by_rule.keys()
    # the tiny config's one usable held-out session, every stage but fine-tuning (it waits for pretraining, failed here)
    assert len(by_rule["train_model"]) == n_ready
    pre = by_rule["pretrain_model"][0]
    for option in ("-p gpu", "-t 2880", "--mem 128000", "--gpus=2", "--cpus-per-gpu=4", "--requeue"):
        assert option in pre, (option, pre)
    for heldout in by_rule["train_model"]:
        for option in ("-p gpu", "-t 240", "--mem 32000", "--gpus=1"):
            assert option in heldout, (option, heldout)


SBATCH_RESOURCES = {
    "partition": r" -p (\S+)",
    "runtime": r" -t (\S+)",
    "mem": r" --mem (\S+)",
    "gpus": r" --gpus=(\S+)",
    "cpus_per_gpu": r" --cpus-per-gpu=(\S+)",
    "cpus_per_task": r" --cpus-per-task=(\S+)",
}


def test_experiment_training_jobs_are_submitted_like_their_main_rules(tmp_path):
    """The SLURM profile through snakemake-executor-plugin-slurm, with stand-in SLURM commands
    (tests/fake_slurm) and placeholder binned stores, so nothing runs: an experiment's own
    pretraining (exp_pretrain) and its per-session training (exp_train) are submitted with the
    partition, GPUs, memory, runtime and CPUs of the main rules they derive from."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import yaml

    work = tmp_path / "work"
    shutil.copytree(ROOT / "config", work / "config")
    tiny = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    tiny["simulation"]["missing_datasets"] = []
    tiny["data"]["require_all_usable"] = True  # a static DAG: no sessions.tsv is read
    tiny["training"].update(pretrain_gpus=2, gpus=1)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(tiny))
    pretrain, heldout = session_lists(validate_config(tiny))
    binned = work / "results" / "binned"
    for eid in pretrain + heldout:
        (binned / f"{eid}.zarr").mkdir(parents=True)
    (binned / "sessions.tsv").write_text("")
    eid = heldout[0]
    targets = {
        "pretrain_model": "results/models/pretrain/summary.json",
        "exp_pretrain": "results/experiments/model_size/small/pretrain/summary.json",
        "train_model": f"results/models/scratch/{eid}/summary.json",
        "exp_train": f"results/experiments/seeds/seed_42/scratch/{eid}/summary.json",
    }
    env, log = _fake_slurm(tmp_path, expect=len(targets))
    proc = snakemake(
        work,
        *targets.values(),
        "--profile",
        str(ROOT / "workflow" / "profiles" / "slurm"),
        "--allowed-rules",
        *targets,
        "--retries",
        "0",
        "--latency-wait",
        "1",
        "--slurm-init-seconds-before-status-checks",
        "1",
        env=env,
    )
    assert proc.returncode != 0  # the stand-in sacct fails every job
    submitted = {}
    for rule, args in _sbatch_calls(log):
        options = " " + " ".join(a for a in args if not a.startswith("--wrap="))
        submitted[rule] = {
            k: (m.group(1) if (m := re.search(p, options)) else None) for k, p in SBATCH_RESOURCES.items()
        }
    missing = set(targets) - set(submitted)
    about = [line for line in proc.stderr.splitlines() if any(rule in line for rule in missing)]
    assert set(submitted) == set(targets), (sorted(submitted), "\n".join(about[:40]))
    assert submitted["pretrain_model"] == {
        "partition": "gpu",
        "runtime": "2880",
        "mem": "128000",
        "gpus": "2",
        "cpus_per_gpu": "4",
        "cpus_per_task": None,
    }
    assert submitted["train_model"] == {
        "partition": "gpu",
        "runtime": "240",
        "mem": "32000",
        "gpus": "1",
        "cpus_per_gpu": None,
        "cpus_per_task": "1",
    }
    assert submitted["exp_pretrain"] == submitted["pretrain_model"]
    assert submitted["exp_train"] == submitted["train_model"]


def test_workflow_refuses_leaky_config(tmp_path):
    """Dry run, no network: a held-out eid in the pretraining list stops the workflow at start-up."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    eid_a, eid_b = "754b74d5-7a06-4004-ae0c-72a10b6ed2e6", "d23a44ef-1402-4ed7-97f5-47e9a7a504d9"
    leaky = {
        "data": {
            "source": "ibl",
            "pretrain_eids": [eid_a, eid_b],
            "heldout_eids": [eid_b],
            "one": {"mode": "remote", "cache_dir": "resources/ibl/one_cache"},
        }
    }
    import yaml

    (tmp_path / "leaky.yaml").write_text(yaml.safe_dump(leaky))
    proc = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "leaky.yaml"))
    assert proc.returncode != 0
    assert "held-out session(s) also appear in the pretraining list" in proc.stdout + proc.stderr
    # the same config without the overlap plans a download and a binning job per session
    leaky["data"]["pretrain_eids"] = [eid_a]
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(leaky))
    proc = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "ok.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "download_session" in proc.stdout and "bin_session" in proc.stdout


def test_paper_config_plans_every_job_offline(tmp_path):
    """The paper configuration dry-runs with no network (no ONE call before a job runs) and,
    with data.require_all_usable, lists every job of the 84 sessions up front."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "sessions", tmp_path / "sessions")
    env = {**os.environ, "HOME": str(tmp_path)}  # no ONE parameters of the user either

    def plan(*target: str) -> tuple[dict[str, int], str]:
        proc = snakemake(
            tmp_path, "-n", *target, "--configfile", str(tmp_path / "config" / "ibl_repeated_site.yaml"), env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        stats = proc.stdout[proc.stdout.rindex("Job stats:") :]
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}, proc.stdout

    counts, _ = plan()
    expected = {
        "download_session": 84,
        "bin_session": 84,
        "summarize_sessions": 1,
        "pretrain_model": 1,
        "train_model": 40,
        "fit_rrr_baseline": 1,
        "evaluate_session": 10,
        "summarize_evaluation": 1,
        "probe_regions": 2,
        "plot_examples": 10,
        "render_summary": 1,
    }
    assert {k: counts.get(k) for k in expected} == expected
    assert not (tmp_path / "resources").exists()  # nothing was downloaded or cached

    # the comparison with POYO+ and NDT2: each pretrained once, then NEDS, POYO+ and NDT2 fine-tuned per seed
    counts, out = plan("peers")
    n_fine_tuned = 3 * 3 * 10  # seeds x compared models x held-out sessions
    expected = {"pretrain_model": 3, "exp_train": n_fine_tuned, "exp_evaluate": 30, "peers_comparison": 1}
    assert {k: counts.get(k) for k in expected} == expected
    for stage in ("ndt2_pretrain", "poyo_pretrain"):
        assert f"results/models/{stage}/model.pt" in out
    for stage in ("ndt2_finetune", "poyo_finetune"):
        assert f"results/experiments/peers/seed_44/{stage}/" in out

    # the balance of the losses: each balance pretrained per seed, then its four per-session models
    counts, out = plan("loss_balance")
    n_variants = len(vocab.LOSS_BALANCES) * 3  # balances x seeds
    expected = {"exp_pretrain": n_variants, "exp_train": n_variants * 10 * 4, "exp_evaluate": n_variants * 10}
    assert {k: counts.get(k) for k in expected} == expected
    assert counts.get("balance_comparison") == 1
    assert "results/experiments/loss_balance/uncertainty_seed_43/pretrain/model.pt" in out

    # the fine-tuning recipes: each fine-tunes the main pretrained model per seed, beside scratch per seed
    counts, out = plan("finetune_recipe")
    n_variants = 5 * 3 + 3  # recipes x seeds, scratch x seeds
    expected = {"pretrain_model": 1, "exp_train": n_variants * 10, "exp_evaluate": n_variants * 10}
    assert {k: counts.get(k) for k in expected} == expected
    assert counts.get("recipe_comparison") == 1
    assert "results/experiments/finetune_recipe/session_frozen_seed_44/finetune/" in out
    assert "results/experiments/finetune_recipe/scratch_seed_42/scratch/" in out
    assert "results/experiments/finetune_recipe/scratch_seed_42/finetune/" not in out
    assert not (tmp_path / "resources").exists()


def test_command_line_lists_sessions():
    proc = subprocess.run(
        [sys.executable, "-m", "neds", "--config", str(ROOT / "config" / "config.yaml"), "sessions"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    roles = [line.split("\t")[1] for line in proc.stdout.splitlines()]
    assert roles == ["pretrain"] * 4 + ["heldout"] * 2


@pytest.mark.slow
def test_no_usable_heldout_session_stops_the_run_early(tmp_path):
    """Both held-out sessions lack whisker motion energy: the run stops right after
    summarize_sessions with every held-out session's reason, before any training."""
    import yaml

    shutil.copytree(ROOT / "config", tmp_path / "config")
    tiny = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    tiny["simulation"]["missing_datasets"] = [
        {"session": 2, "datasets": ["motion_energy"]},
        {"session": 3, "datasets": ["motion_energy"]},
    ]
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny))
    proc = snakemake(tmp_path, "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "no usable held-out session" in out and "no whisker motion energy" in out
    assert (tmp_path / "results" / "binned" / "sessions.tsv").exists()
    assert not (tmp_path / "results" / "models").exists()


@pytest.mark.slow
def test_killed_run_resumes_and_changed_data_retrains(tmp_path):
    """The workflow killed (SIGKILL to Snakemake and its jobs) while pretraining: `--unlock` and the
    same command finish it from the job's last checkpoint (rerun-incomplete comes from the workflow
    profile), with the weights of an uninterrupted run. The finished job forced again rewrites its
    outputs; a new split re-bins the sessions and pretraining starts over and completes."""
    import signal
    import time

    import yaml

    from neds.train import load_model

    shutil.copytree(ROOT / "config", tmp_path / "config")
    tiny = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    epochs = 5  # a few seconds each on the tiny config: the kill lands after the first
    tiny["training"]["pretrain"]["epochs"] = epochs
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny))
    target = "results/models/pretrain/summary.json"
    models = tmp_path / "results" / "models" / "pretrain"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
    ]
    proc = subprocess.Popen(
        [*cmd, target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:  # kill it between two epochs' checkpoints
        history = models / "history.jsonl"
        if history.exists() and 1 <= len(history.read_text().splitlines()) < epochs:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-training"
    assert not (models / "summary.json").exists()

    assert snakemake(tmp_path, "--unlock").returncode == 0
    done = snakemake(tmp_path, "--cores", "1", target)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming" in (tmp_path / "logs" / "pretrain_model" / "pretrain.log").read_text()
    assert len((models / "history.jsonl").read_text().splitlines()) == epochs
    resumed = load_model(models / "model.pt")[0].state_dict()

    ref = subprocess.run(
        [
            sys.executable,
            "-m",
            "neds",
            "--config",
            str(tmp_path / "config" / "config.yaml"),
            "train",
            "--stage",
            "pretrain",
            "--binned",
            str(tmp_path / "results" / "binned"),
            "--models",
            str(tmp_path / "reference"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    uninterrupted = load_model(tmp_path / "reference" / "pretrain" / "model.pt")[0].state_dict()
    for name, value in uninterrupted.items():
        assert torch.equal(resumed[name], value), name

    forced = snakemake(tmp_path, "--cores", "1", target, "--forcerun", "pretrain_model")
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert (
        "finished all" in (tmp_path / "logs" / "pretrain_model" / "pretrain.log").read_text()
    )  # nothing trained again
    assert len((models / "history.jsonl").read_text().splitlines()) == epochs
    for name, value in load_model(models / "model.pt")[0].state_dict().items():
        assert torch.equal(resumed[name], value), name

    tiny["binning"]["split_seed"] = 7
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny))
    changed = snakemake(tmp_path, "--cores", "1", target)
    assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
    log = (tmp_path / "logs" / "pretrain_model" / "pretrain.log").read_text()
    assert "differ" in log and "resuming" not in log
    assert json.loads((models / "summary.json").read_text())["epochs"] == epochs
    assert len((models / "history.jsonl").read_text().splitlines()) == epochs
    retrained = load_model(models / "model.pt")[0].state_dict()
    assert any(not torch.equal(retrained[name], value) for name, value in resumed.items())
