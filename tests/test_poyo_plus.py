"""POYO+ (torch_brain's POYOPlus wrapped as a peer model): shapes, padding, bf16, checkpoints,
learning a planted dataset through the training loop, pretraining then fine-tuning on a new animal."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from neds.data.dataset import TrialData, random_trials
from neds.evaluate.evaluation import predict_model, score
from neds.model.base import Batch
from neds.peers.poyo_plus import TASKS, POYOPlusConfig, POYOPlusModel, register_tasks
from neds.train import (
    TrainConfig,
    build_model,
    checkpoint_identity,
    evaluate,
    init_shared_from,
    load_checkpoint,
    load_model,
    param_groups,
    train,
)

TINY = dict(dim=32, depth=1, dim_head=32, cross_heads=2, self_heads=2, latent_step=0.125, num_latents_per_step=4)
FAST = dict(batch_size=8, max_lr=3e-3, progress=False, device="cpu", keep="last")
BIN_S = 0.02


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


# ---------------------------------------------------------------------------------------- events
def with_events(data: TrialData, seed: int = 0) -> TrialData:
    """``data`` with spike events consistent with its counts: each spike at a uniform random time
    inside its bin, in time order within a trial (offsets (K+1,), times (E,) float32, units (E,))."""
    rng = np.random.default_rng(seed)
    counts = data.spikes.numpy().astype(np.int64)
    k, t, n = np.nonzero(counts)
    reps = counts[k, t, n]
    k, t, n = np.repeat(k, reps), np.repeat(t, reps), np.repeat(n, reps)
    times = (t + rng.random(len(t))) * BIN_S
    order = np.lexsort((times, k))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(k, minlength=len(counts)))])
    return replace(
        data,
        event_offsets=torch.from_numpy(offsets),
        event_time=torch.from_numpy(times[order].astype(np.float32)),
        event_unit=torch.from_numpy(n[order]),
    )


def planted(n_units: list[int], trials: int, eids: list[str], seed: int = 0, splits=(0.75, 0.125)) -> TrialData:
    """Sessions whose behaviour the spikes encode: per session, a quarter of the units fire with
    the choice, a quarter with the block, a quarter with the wheel and a quarter with the whisker
    trace (smooth bumps in [0, 1]); spikes are Poisson counts per 20 ms bin, with events."""
    rng = np.random.default_rng(seed)
    s, t, n_max = len(n_units), 100, max(n_units)
    k = s * trials
    choice, block = rng.integers(0, 2, k), rng.integers(0, 3, k)
    bins = np.arange(t)[None, :]

    def bumps():
        return rng.uniform(0.2, 1.0, (k, 1)) * np.exp(-0.5 * ((bins - rng.uniform(20, 80, (k, 1))) / 12) ** 2)

    wheel, whisker = bumps(), bumps()
    session = np.repeat(np.arange(s), trials)
    rate = np.full((k, t, n_max), 0.05)
    for i in range(k):
        q = n_units[session[i]] // 4
        rate[i, :, :q] += 0.5 * choice[i]
        rate[i, :, q : 2 * q] += 0.25 * block[i]
        rate[i, :, 2 * q : 3 * q] += 1.0 * wheel[i][:, None]
        rate[i, :, 3 * q : n_units[session[i]]] += 1.0 * whisker[i][:, None]
        rate[i, :, n_units[session[i]] :] = 0.0
    n_train, n_val = int(splits[0] * trials), int(splits[1] * trials)
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (trials - n_train - n_val))
    data = TrialData(
        eids=list(eids),
        n_units=list(n_units),
        spikes=torch.from_numpy(rng.poisson(rate).astype(np.uint8)),
        wheel=torch.from_numpy(wheel.astype(np.float32)),
        whisker=torch.from_numpy(whisker.astype(np.float32)),
        choice=torch.from_numpy(choice),
        block=torch.from_numpy(block),
        session=torch.from_numpy(session),
        split=np.tile(split, s),
        trial=torch.from_numpy(np.tile(np.arange(trials), s)),
    )
    return with_events(data, seed)


def vocab_words(state: dict, name: str) -> list[str]:
    """The words of a POYO+ vocabulary saved in a state dict (``unit_emb`` or ``session_emb``)."""
    return json.loads(bytes(state[f"poyo.{name}.vocab"].tolist()).decode())


# ---------------------------------------------------------------------------------------- tests
def test_shapes_loss_and_state():
    data = with_events(random_trials([5, 9, 7], 4, rate=0.3))
    model = POYOPlusModel(POYOPlusConfig(**TINY), data.n_units, eids=data.eids)
    batch = data.batch(torch.tensor([0, 5, 9, 11]))  # three sessions in one batch
    assert batch.event_mask.sum() == batch.spikes.sum()
    out = model(batch, model.draw_masks(4, 100, 0.3, torch.Generator(), None))
    assert out.wheel.shape == out.whisker.shape == (4, 100)
    assert out.choice.shape == (4, 2) and out.block.shape == (4, 3)
    loss, parts = model.loss(out, batch, None, {"wheel": 2.0, "spikes": 5.0})
    assert set(parts) == {"wheel", "whisker", "choice", "block"}
    assert torch.allclose(loss, 2 * parts["wheel"] + parts["whisker"] + parts["choice"] + parts["block"])
    assert torch.allclose(parts["wheel"], ((out.wheel - batch.wheel) ** 2).mean())
    loss.backward()
    model.eval()
    pred = model.predict(batch)
    assert pred["wheel"].shape == (4, 100) and pred["block_prob"].shape == (4, 3)
    assert torch.allclose(pred["choice_prob"].sum(1), torch.ones(4))
    # the session vocabulary indexes POYO+'s: unit j of session s is f"{eid}/{j}"
    words = model.poyo.unit_emb.vocab
    assert model.sessions.unit_index[1, 8] == words[f"{data.eids[1]}/8"] and model.sessions.unit_index[0, 5] == 0
    assert model.sessions.session_index.tolist() == model.poyo.session_emb.tokenizer(data.eids)
    # every entry of the state dict is a tensor; the shared state leaves out the unit and session embeddings
    state = model.state_dict()
    assert all(torch.is_tensor(v) for v in state.values())
    assert vocab_words(state, "session_emb") == ["NA", *data.eids]
    shared = model.shared_state_dict()
    assert not any(k.startswith(("poyo.unit_emb.", "poyo.session_emb.", "sessions.")) for k in shared)
    assert "poyo.enc_atn.to_q.weight" in shared and "poyo.readout.projections.neds_block.weight" in shared
    n_embedding = model.poyo.unit_emb.weight.numel() + model.poyo.session_emb.weight.numel()
    assert model.summary()["n_shared_parameters"] == model.summary()["n_parameters"] - n_embedding
    no_decay = {id(p) for p in param_groups(model, 0.1)[1]["params"]}
    assert id(model.poyo.unit_emb.weight) in no_decay and id(model.poyo.latent_emb.weight) in no_decay
    with pytest.raises(ValueError, match="reads spike events"):
        model(random_trials([5, 9, 7], 4).batch(torch.tensor([0])))
    with pytest.raises(ValueError, match="modes"):
        POYOPlusModel(POYOPlusConfig(**TINY), data.n_units, "multimodal")


def test_tasks_register_once_with_local_ids():
    from torch_brain.registry import MODALITY_REGISTRY

    ids = {name: MODALITY_REGISTRY[name].id for name in TASKS.values()}
    specs = register_tasks()  # again: nothing changes, nothing raises
    assert {name: MODALITY_REGISTRY[name].id for name in TASKS.values()} == ids
    assert [spec.id for spec in specs.values()] == [0, 1, 2, 3] and list(specs) == list(TASKS.values())


def test_padding_changes_nothing():
    data = with_events(random_trials([6, 10], 6, rate=0.3))
    model = POYOPlusModel(POYOPlusConfig(**TINY), data.n_units, eids=data.eids).eval()
    idx = torch.tensor([1, 7, 8])
    batch = data.batch(idx)
    ref = model.predict(batch)
    # more padding, holding arbitrary times and units
    pad = 37
    padded = Batch(**vars(batch))
    padded.event_time = torch.cat((batch.event_time, torch.rand(3, pad) * 2), 1)
    padded.event_unit = torch.cat((batch.event_unit, torch.randint(0, 6, (3, pad))), 1)
    padded.event_mask = torch.cat((batch.event_mask, torch.zeros(3, pad, dtype=torch.bool)), 1)
    with_padding = model.predict(padded)
    # each trial alone (no padding) and among others (padded to the longest)
    alone = [model.predict(data.batch(idx[i : i + 1])) for i in range(3)]
    assert batch.event_mask.sum(1).tolist() != [batch.event_mask.shape[1]] * 3  # the batch is padded
    for name in ref:
        assert torch.allclose(with_padding[name], ref[name], atol=1e-5), name
        assert torch.allclose(torch.cat([a[name] for a in alone]), ref[name], atol=1e-5), name
    # and the events do matter
    moved = Batch(**vars(batch))
    moved.event_time = (batch.event_time + 0.5) % 2.0
    assert not torch.allclose(model.predict(moved)["wheel"], ref["wheel"], atol=1e-5)


def test_bf16_autocast():
    data = with_events(random_trials([6, 10], 4, rate=0.3))
    model = POYOPlusModel(POYOPlusConfig(**TINY), data.n_units, eids=data.eids)
    batch = data.batch(torch.arange(8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    loss, parts = model.loss(out, batch, None)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_checkpoint_round_trip(tmp_path):
    data = with_events(random_trials([5, 9], 16, rate=0.3))
    model = build_model(TINY, data.n_units, "decoding", None, "poyo_plus")  # named by the training loop
    summary = train(model, data, TrainConfig(epochs=2, val_every=2, **FAST), tmp_path)
    assert summary["model"]["architecture"] == "poyo_plus" and model.eids == data.eids
    loaded, ckpt = load_model(tmp_path / "model.pt")
    assert isinstance(loaded, POYOPlusModel) and loaded.eids == data.eids and ckpt["mode"] == "decoding"
    assert vocab_words(ckpt["model_state"], "session_emb") == ["NA", *data.eids]  # named after the data
    checkpoint_identity(tmp_path / "model.pt")  # a tensor-only state dict
    model.eval()
    idx = data.indices("test")
    for name, value in model.predict(data.batch(idx)).items():
        assert torch.allclose(loaded.predict(data.batch(idx))[name], value, atol=1e-6), name
    assert set(evaluate(loaded, data, "val")) == {"choice_acc", "block_acc", "wheel_r2", "whisker_r2", "score"}


def test_learns_a_planted_dataset(tmp_path):
    data = planted([16], 64, ["planted"])
    weights = {"wheel": 10.0, "whisker": 10.0}  # the traces' MSE is small beside the cross-entropies
    cfg = TrainConfig(epochs=40, val_every=40, weight_decay=0.0, loss_weights=weights, **{**FAST, "max_lr": 5e-3})
    model = build_model({**TINY, "dropout": 0.0}, data.n_units, "decoding", data.eids, "poyo_plus")
    train(model, data, cfg, tmp_path)  # 240 steps
    metrics = evaluate(model, data, "train")
    assert metrics["choice_acc"] > 0.9 and metrics["block_acc"] > 0.8, metrics  # chance 0.5, 1/3
    assert metrics["wheel_r2"] > 0.2 and metrics["whisker_r2"] > 0.2, metrics  # chance 0


def test_pretrain_then_finetune_on_a_new_animal(tmp_path):
    pre = planted([8, 12], 24, ["A", "B"], seed=1)
    new = planted([10], 24, ["C"], seed=2)
    tcfg = TrainConfig(epochs=2, val_every=2, **FAST)
    torch.manual_seed(0)
    train(build_model(TINY, pre.n_units, "decoding", pre.eids, "poyo_plus"), pre, tcfg, tmp_path / "pre")
    pretrained = load_checkpoint(tmp_path / "pre" / "model.pt")["model_state"]
    pre_units, pre_sessions = vocab_words(pretrained, "unit_emb"), vocab_words(pretrained, "session_emb")
    assert "C" not in pre_sessions and not any(w.startswith("C/") for w in pre_units)

    def fine_tuning_model():
        torch.manual_seed(5)
        model = build_model(TINY, new.n_units, "decoding", new.eids, "poyo_plus")
        return model, init_shared_from(model, tmp_path / "pre" / "model.pt")

    model, copied = fine_tuning_model()
    assert set(copied) == set(model.shared_state_dict())
    for name, value in model.shared_state_dict().items():
        assert torch.equal(value, pretrained[name]), name
    # the vocabularies: the pretrained words with their embeddings, then the new animal's
    units = list(model.poyo.unit_emb.vocab)
    assert units == pre_units + [f"C/{j}" for j in range(10)]
    assert list(model.poyo.session_emb.vocab) == ["NA", "A", "B", "C"]
    assert torch.equal(model.poyo.unit_emb.weight[: len(pre_units)], pretrained["poyo.unit_emb.weight"])
    assert model.sessions.unit_index[0].tolist() == list(range(len(pre_units), len(units)))
    assert model.eids == ["C"] and model.n_units.tolist() == [10]

    train(model, new, tcfg, tmp_path / "fine")
    loaded, ckpt = load_model(tmp_path / "fine" / "model.pt")  # rebuilt with ["C"] alone, then the vocabularies
    assert loaded.eids == ["C"] and list(loaded.poyo.session_emb.vocab) == ["NA", "A", "B", "C"]
    assert torch.equal(loaded.sessions.unit_index, model.sessions.unit_index)
    pred = predict_model(loaded, new, "test")
    assert pred["wheel"].shape == (3, 100) and pred["choice_prob"].shape == (3, 2)
    row, _ = score(pred, new, "test")
    assert {"wheel_r2", "whisker_r2", "choice_acc", "block_acc"} <= set(row)
    model.eval()
    assert np.allclose(predict_model(model, new, "test")["wheel"], pred["wheel"], atol=1e-6)
    # an interrupted fine-tuning run resumes exactly (loading a checkpoint keeps the optimizer's parameters)
    assert train(fine_tuning_model()[0], new, tcfg, tmp_path / "part", stop_after_epoch=1) == {
        "interrupted_at_epoch": 1
    }
    resumed = fine_tuning_model()[0]
    train(resumed, new, tcfg, tmp_path / "part")
    for (name, value), other in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(value, other), name
