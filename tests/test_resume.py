"""Resumption keyed to a run's inputs, end to end through neds.stages.run_training on tiny stores:
an unchanged run resumes bit for bit, a run whose data changed starts over (and says why), and a
finished run started again (as Snakemake does after deleting its outputs) rewrites them all."""

import functools
import json
import logging
import shutil

import numpy as np
import pytest
import torch
import xarray as xr

import neds.train
from neds.io.store import text_array, write_zarr
from neds.stages import run_training
from neds.train import load_checkpoint, load_model

EIDS = ("754b74d5-7a06-4004-ae0c-72a10b6ed2e6", "d23a44ef-1402-4ed7-97f5-47e9a7a504d9")
MODEL = dict(hidden=32, n_heads=4, mlp=64, n_layers=1, dropout=0.1, token_dropout=0.1)
TRAIN = dict(epochs=3, batch_size=8, max_lr=3e-3, val_every=2, progress=False, device="cpu")
OUTPUTS = ("model.pt", "history.jsonl", "summary.json")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def write_store(path, eid: str, n_units: int, split_seed: int, n_trials: int = 20, n_bins: int = 100) -> str:
    """A binned store whose split is drawn with ``split_seed`` (as bin_session draws it)."""
    rng = np.random.default_rng(sum(map(ord, eid)))  # the recording: the same whatever the split
    split = np.random.default_rng(split_seed).permutation(["train"] * (n_trials - 4) + ["val"] * 2 + ["test"] * 2)
    ds = xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), rng.poisson(0.4, (n_trials, n_bins, n_units)).astype(np.uint16)),
            "wheel_speed": (("trial", "time"), rng.random((n_trials, n_bins)).astype(np.float32)),
            "whisker_motion_energy": (("trial", "time"), rng.random((n_trials, n_bins)).astype(np.float32)),
            "choice": (("trial",), rng.integers(0, 2, n_trials).astype(np.int8)),
            "block": (("trial",), rng.integers(0, 3, n_trials).astype(np.int8)),
        },
        coords={"trial": np.arange(n_trials), "split": ("trial", text_array(split))},
        attrs={"eid": eid, "usable": True, "binning": {"bin_size_s": 0.02, "split_seed": split_seed}},
    )
    write_zarr(ds, path)
    return str(path)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_model(run_dir / "model.pt")[0].state_dict()


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def interrupted(monkeypatch, after: int):
    """run_training as if the process were killed after epoch ``after``."""
    monkeypatch.setattr(neds.train, "train", functools.partial(neds.train.train, stop_after_epoch=after))


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Uninterrupted runs on the stores with split seed 0 (old) and split seed 1 (new)."""
    torch.set_num_threads(1)  # as in every test: another thread count sums in another order
    root = tmp_path_factory.mktemp("refs")
    out = {}
    for seed in (0, 1):
        stores = [write_store(root / f"s{seed}" / f"{e}.zarr", e, n, seed) for e, n in zip(EIDS, (5, 9))]
        run_training("pretrain", stores, root / f"run{seed}", MODEL, TRAIN)
        out[seed] = {"stores": stores, "dir": root / f"run{seed}", "weights": weights(root / f"run{seed}")}
    return out


def test_stores_of_another_split_are_other_inputs(refs):
    a, b = (json.loads((refs[s]["dir"] / "summary.json").read_text())["inputs"] for s in (0, 1))
    assert a["digest"] != b["digest"]
    assert {k for k in a["parts"] if a["parts"][k] != b["parts"][k]} == {"stores", "binning"}
    assert a["parts"]["stage"] == "pretrain" and a["parts"]["pretrained"] is None and a["parts"]["code"]
    assert load_checkpoint(refs[0]["dir"] / "model.pt")["inputs"] == a  # every checkpoint records it


def test_interrupted_run_resumes_bit_for_bit(refs, tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as m:
        interrupted(m, 1)
        assert run_training("pretrain", refs[0]["stores"], tmp_path, MODEL, TRAIN) == {"interrupted_at_epoch": 1}
    assert not (tmp_path / "model.pt").exists()
    torch.manual_seed(123)  # a new process
    with caplog.at_level(logging.INFO, logger="neds.train"):
        run_training("pretrain", refs[0]["stores"], tmp_path, MODEL, TRAIN)
    assert "resuming" in caplog.text and "not a checkpoint of this run" not in caplog.text
    assert_same_weights(weights(tmp_path), refs[0]["weights"])
    assert [h["epoch"] for h in history(tmp_path)] == [1, 2, 3]


def test_interrupted_run_whose_split_changed_starts_over(refs, tmp_path, monkeypatch, caplog):
    stores = [write_store(tmp_path / "binned" / f"{e}.zarr", e, n, 0) for e, n in zip(EIDS, (5, 9))]
    with monkeypatch.context() as m:
        interrupted(m, 2)
        run_training("pretrain", stores, tmp_path / "run", MODEL, TRAIN)
    for e, n in zip(EIDS, (5, 9)):  # the sessions are re-binned with another split seed
        write_store(tmp_path / "binned" / f"{e}.zarr", e, n, 1)
    with caplog.at_level(logging.INFO, logger="neds.train"):
        run_training("pretrain", stores, tmp_path / "run", MODEL, TRAIN)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "inputs that differ: binning, stores" in warned[0].getMessage()
    assert "resuming" not in caplog.text
    assert_same_weights(weights(tmp_path / "run"), refs[1]["weights"])  # a fresh run on the new data
    assert history(tmp_path / "run") == history(refs[1]["dir"])


def test_finished_run_started_again_rewrites_its_outputs(refs, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(refs[0]["dir"], run)
    before = {name: (run / name).read_bytes() for name in ("model.pt", "history.jsonl")}
    summary = json.loads((run / "summary.json").read_text())
    for name in OUTPUTS:  # what Snakemake does before it runs the job again
        (run / name).unlink()
    with caplog.at_level(logging.INFO, logger="neds.train"):
        again = run_training("pretrain", refs[0]["stores"], run, MODEL, TRAIN)
    assert "finished all 3 epochs" in caplog.text and "not a checkpoint of this run" not in caplog.text
    assert all((run / name).exists() for name in OUTPUTS)
    assert {name: (run / name).read_bytes() for name in before} == before  # nothing trained again
    assert again["inputs"] == summary["inputs"] and again["best_epoch"] == summary["best_epoch"]
    assert json.loads((run / "summary.json").read_text())["best_val"] == summary["best_val"]


def test_finished_run_whose_data_changed_trains_again(refs, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(refs[0]["dir"], run)
    for name in OUTPUTS:
        (run / name).unlink()
    with caplog.at_level(logging.WARNING, logger="neds.train"):
        run_training("pretrain", refs[1]["stores"], run, MODEL, TRAIN)
    assert "inputs that differ: binning, stores" in caplog.text
    assert all((run / name).exists() for name in OUTPUTS)
    assert_same_weights(weights(run), refs[1]["weights"])
    assert [h["epoch"] for h in history(run)] == [1, 2, 3]


def test_checkpoint_without_fingerprint_is_not_resumed(refs, tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as m:
        interrupted(m, 2)
        run_training("pretrain", refs[0]["stores"], tmp_path, MODEL, TRAIN)
    last = tmp_path / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    del ckpt["inputs"]  # as an older version wrote it
    torch.save(ckpt, last)
    with caplog.at_level(logging.WARNING, logger="neds.train"):
        run_training("pretrain", refs[0]["stores"], tmp_path, MODEL, TRAIN)
    assert "no input fingerprint" in caplog.text
    assert_same_weights(weights(tmp_path), refs[0]["weights"])


def test_finetune_is_keyed_to_the_pretrained_weights(refs, tmp_path, caplog):
    store = [write_store(tmp_path / "new.zarr", "0a3c0d54-9f5e-4a46-8d1a-6d9e5d1f0e21", 7, 0)]
    pretrained = tmp_path / "pretrained.pt"
    shutil.copyfile(refs[0]["dir"] / "model.pt", pretrained)
    one_epoch = {**TRAIN, "epochs": 1}
    first = run_training("finetune", store, tmp_path / "fine", MODEL, one_epoch, pretrained=pretrained)
    assert first["inputs"]["parts"]["pretrained"]
    for name in OUTPUTS:
        (tmp_path / "fine" / name).unlink()
    shutil.copyfile(refs[1]["dir"] / "model.pt", pretrained)  # pretraining ran again on other data
    with caplog.at_level(logging.WARNING, logger="neds.train"):
        second = run_training("finetune", store, tmp_path / "fine", MODEL, one_epoch, pretrained=pretrained)
    assert "inputs that differ: pretrained" in caplog.text
    assert second["inputs"]["digest"] != first["inputs"]["digest"]


def test_the_model_takes_its_time_axis_from_the_binned_trials(tmp_path):
    """A trial window other than the default 2 s (here 40 bins) trains and predicts."""
    store = write_store(tmp_path / "a.zarr", EIDS[0], 5, split_seed=0, n_bins=40)
    run_training("scratch", [store], tmp_path / "run", MODEL, {**TRAIN, "epochs": 1})
    model, ckpt = load_model(tmp_path / "run" / "model.pt")
    assert model.cfg.n_bins == 40 and ckpt["model_config"]["n_bins"] == 40
