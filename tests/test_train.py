"""Training: overfitting, exact resume, fine-tuning, evaluation and the two-process gloo run."""

import json
import logging
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from neds.data.dataset import random_trials
from neds.model.masking import draw_masks
from neds.model.neds import NEDS, ModelConfig
from neds.train import TrainConfig, build_model, evaluate, init_shared_from, load_model, train, training_trials

TINY = ModelConfig(hidden=32, n_heads=4, mlp=64, n_layers=2, dropout=0.1, token_dropout=0.1)
FAST = dict(batch_size=8, max_lr=3e-3, val_every=2, progress=False, device="cpu")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def test_tiny_model_overfits_a_few_trials():
    data = random_trials([6], 8, rate=0.5, splits=(1.0, 0.0, 0.0))
    model = NEDS(ModelConfig(hidden=32, n_heads=4, mlp=64, n_layers=2, dropout=0.0, token_dropout=0.0), [6])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = data.batch(torch.arange(8))
    masks = draw_masks(8, 100, 0.3, torch.Generator().manual_seed(0))
    y = batch.spikes
    sel = (masks.spikes[:, :, None] & batch.unit_mask[:, None, :]).float()
    floor = ((y - torch.xlogy(y, y)) * sel).sum() / masks.spikes.sum()  # Poisson NLL at the perfect rate, per token

    def excess():
        out = model(batch, masks)
        loss, parts = model.loss(out, batch, masks)
        return loss, loss - parts["spikes"] + (parts["spikes"] - floor)

    first = excess()[1].item()
    for _ in range(200):
        loss, _ = excess()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert excess()[1].item() < first / 10  # loss above its floor falls by an order of magnitude


def test_resume_after_interruption_is_bit_identical(tmp_path, caplog):
    data = random_trials([5, 9], 20)
    cfg = TrainConfig(epochs=4, **FAST)
    torch.manual_seed(1)
    full = build_model(TINY, data.n_units)
    train(full, data, cfg, tmp_path / "full")
    torch.manual_seed(1)
    part = build_model(TINY, data.n_units)
    assert train(part, data, cfg, tmp_path / "part", stop_after_epoch=2) == {"interrupted_at_epoch": 2}
    assert not (tmp_path / "part" / "model.pt").exists()
    torch.manual_seed(123)  # a new process: whatever state, the run must continue from its checkpoint
    resumed = build_model(TINY, data.n_units)
    train(resumed, data, cfg, tmp_path / "part")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    hist = [json.loads(line) for line in (tmp_path / "part" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    # a checkpoint of another run is not mixed in: the run starts over, and the log says why
    with caplog.at_level(logging.WARNING, logger="neds.train"):
        train(build_model(TINY, data.n_units), data, TrainConfig(epochs=1, **FAST), tmp_path / "part")
    assert "inputs that differ: train_config" in caplog.text
    hist = [json.loads(line) for line in (tmp_path / "part" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1]


def test_outputs_and_evaluation(tmp_path):
    data = random_trials([5, 9], 20)
    summary = train(build_model(TINY, data.n_units), data, TrainConfig(epochs=2, **FAST), tmp_path)
    assert (tmp_path / "model.pt").exists() and (tmp_path / "summary.json").exists()
    assert summary["best_epoch"] == 2 and summary["vocab"]["n_units"] == [5, 9]
    model, ckpt = load_model(tmp_path / "model.pt")
    assert ckpt["vocab"]["eids"] == data.eids and model.eids == data.eids  # the vocabulary is saved with the weights
    other = torch.load(tmp_path / "model.pt", weights_only=False)
    other["vocab"]["eids"] = other["vocab"]["eids"][::-1]
    torch.save(other, tmp_path / "inconsistent.pt")
    with pytest.raises(ValueError, match="indexed by the sessions"):
        load_model(tmp_path / "inconsistent.pt")
    with pytest.raises(ValueError, match="not the data's"):
        train(build_model(TINY, data.n_units, eids=["x", "y"]), data, TrainConfig(epochs=1, **FAST), tmp_path / "x")
    metrics = evaluate(model, data, "val")
    assert set(metrics) == {"bps", "choice_acc", "block_acc", "wheel_r2", "whisker_r2", "score"}
    enc = build_model(TINY, data.n_units, "encoding")
    assert set(evaluate(enc, data, "val")) == {"bps", "score"}


def test_session_view_holds_one_sessions_trials_of_a_split():
    data = random_trials([5, 9], 20)  # 14 train, 3 val, 3 test trials a session
    view = data.session_view(1, "val")
    rows = np.flatnonzero((data.session.numpy() == 1) & (data.split == "val"))
    assert view.eids == [data.eids[1]] and list(view.n_units) == [9] and len(rows) == 3
    assert torch.equal(view.spikes, data.spikes[rows][:, :, :9]) and torch.equal(view.trial, data.trial[rows])
    assert torch.equal(view.wheel, data.wheel[rows]) and torch.equal(view.block, data.block[rows])
    assert view.split.tolist() == ["val"] * 3 and view.session.tolist() == [0, 0, 0]
    assert len(data.session_view(1).split) == 20


def test_training_trials_are_a_nested_subset_per_session():
    data = random_trials([5, 9, 7], 40)  # 28 training trials a session
    assert torch.equal(training_trials(data, 1.0), data.indices("train"))
    half, quarter = training_trials(data, 0.5), training_trials(data, 0.25)
    for sub, n in ((half, 14), (quarter, 7)):
        assert set(sub.tolist()) <= set(data.indices("train").tolist())
        assert np.bincount(data.session[sub].numpy(), minlength=3).tolist() == [n, n, n]
    assert set(quarter.tolist()) <= set(half.tolist())
    assert len(training_trials(data, 0.001)) == 3  # at least one trial a session
    with pytest.raises(ValueError, match="train_fraction"):
        TrainConfig(train_fraction=0.0)


def test_keep_last_and_train_fraction(tmp_path):
    data = random_trials([5, 9], 20)
    summary = train(
        build_model(TINY, data.n_units), data, TrainConfig(epochs=3, keep="last", train_fraction=0.5, **FAST), tmp_path
    )
    assert summary["kept"] == "last" and summary["kept_epoch"] == 3 and summary["n_train_trials"] == 14
    kept = torch.load(tmp_path / "model.pt", weights_only=False)
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    for name, value in kept["model_state"].items():
        assert torch.equal(value, last["model_state"][name]), name
    with pytest.raises(ValueError, match="keep"):
        TrainConfig(keep="first")


def test_finetune_keeps_shared_weights_and_adds_the_session(tmp_path):
    pre_data = random_trials([5, 9], 12)
    pre = build_model(TINY, pre_data.n_units)
    train(pre, pre_data, TrainConfig(epochs=1, **FAST), tmp_path / "pre")
    pretrained, _ = load_model(tmp_path / "pre" / "model.pt")
    new_data = random_trials([11], 12, seed=5)
    new_data.eids = ["new-animal"]
    fine = build_model(TINY, new_data.n_units)
    copied = init_shared_from(fine, tmp_path / "pre" / "model.pt")
    assert "blocks.0.qkv.weight" in copied and "mask_token" in copied
    assert not any(name.startswith("sessions.") for name in copied)  # no session layer, no session vocabulary
    for name, value in pretrained.shared_state_dict().items():
        assert torch.equal(fine.state_dict()[name], value), name
    assert fine.sessions.spike_stitcher.w1.shape[1] == 11 and fine.sessions.embedding.weight.shape[0] == 1  # new ones
    summary = train(fine, new_data, TrainConfig(epochs=1, **FAST), tmp_path / "fine")
    assert summary["vocab"] == {"eids": ["new-animal"], "n_units": [11]}
    assert fine.eids == ["new-animal"]  # built unnamed, named after the data it is fine-tuned on
    # a checkpoint of another model size cannot be loaded into this one
    other = build_model(ModelConfig(hidden=16, n_heads=2, mlp=32, n_layers=1), [4])
    with pytest.raises(ValueError, match="does not match"):
        init_shared_from(other, tmp_path / "pre" / "model.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)  # same initial weights on both ranks (DDP also broadcasts rank 0's)
    data = random_trials([5, 9], 16)
    model = build_model(TINY, data.n_units)
    train(model, data, TrainConfig(epochs=2, **FAST), out_dir)
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_two_process_gloo_run_keeps_ranks_identical(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    # the ranks trained: weights moved away from the initialisation
    torch.manual_seed(0)
    init = build_model(TINY, [5, 9]).state_dict()
    assert not torch.equal(init["blocks.0.qkv.weight"], a["blocks.0.qkv.weight"])


def _toy_store(path, eid, n_units, n_trials, seed):
    """A minimal binned store (the variables load_sessions reads)."""
    import xarray as xr

    from neds.io.store import text_array, write_zarr

    rng = np.random.default_rng(seed)
    split = np.array(["train"] * (n_trials - 4) + ["val"] * 2 + ["test"] * 2)
    ds = xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), rng.poisson(0.3, (n_trials, 100, n_units)).astype(np.uint16)),
            "wheel_speed": (("trial", "time"), rng.random((n_trials, 100)).astype(np.float32)),
            "whisker_motion_energy": (("trial", "time"), rng.random((n_trials, 100)).astype(np.float32)),
            "choice": (("trial",), rng.integers(0, 2, n_trials).astype(np.int8)),
            "block": (("trial",), rng.integers(0, 3, n_trials).astype(np.int8)),
        },
        coords={"trial": np.arange(n_trials), "split": (("trial",), text_array(split))},
        attrs={"eid": eid, "usable": True},
    )
    write_zarr(ds, path)
    return path


def test_launch_training_runs_torchrun_with_gloo(tmp_path):
    """The pretraining rule's distributed path: torchrun, 2 processes, gloo on CPU."""
    from neds.stages import launch_training

    stores = [
        _toy_store(tmp_path / "a.zarr", "754b74d5-7a06-4004-ae0c-72a10b6ed2e6", 5, 20, 0),
        _toy_store(tmp_path / "b.zarr", "d23a44ef-1402-4ed7-97f5-47e9a7a504d9", 9, 20, 1),
    ]
    model = {k: getattr(TINY, k) for k in ("hidden", "n_heads", "mlp", "n_layers", "dropout", "token_dropout")}
    log = tmp_path / "pretrain.log"
    summary = launch_training(
        "pretrain", stores, tmp_path / "out", model, {"epochs": 2, **FAST}, threads=1, nproc=2, log=log
    )
    assert summary["world_size"] == 2 and summary["epochs"] == 2
    assert (tmp_path / "out" / "model.pt").exists() and (tmp_path / "out" / "launch_spec.json").exists()
    # a failing run names its log
    with pytest.raises(RuntimeError, match="pretrain.log"):
        launch_training(
            "pretrain", [tmp_path / "missing.zarr"], tmp_path / "bad", model, {"epochs": 1, **FAST}, nproc=2, log=log
        )


def test_run_training_is_reproducible_across_processes(tmp_path):
    """Same stores and settings -> the same weights, whatever the process's RNG state before."""
    from neds.stages import run_training

    store = _toy_store(tmp_path / "a.zarr", "754b74d5-7a06-4004-ae0c-72a10b6ed2e6", 5, 20, 0)
    model = {k: getattr(TINY, k) for k in ("hidden", "n_heads", "mlp", "n_layers", "dropout", "token_dropout")}
    states = []
    for i, noise in enumerate((1, 2)):
        torch.manual_seed(noise)  # a fresh process starts from a random seed
        torch.rand(noise)
        run_training("scratch", [store], tmp_path / f"run{i}", model, {"epochs": 2, **FAST})
        states.append(load_model(tmp_path / f"run{i}" / "model.pt")[0].state_dict())
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
