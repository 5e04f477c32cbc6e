"""NDT2 (neds.peers.ndt2): shapes, padding, masked prediction, learning through the real training
loop, pretraining then fine-tuning on a new animal, exact resume."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from neds.data.dataset import TrialData, random_trials
from neds.evaluate.evaluation import predict_model, score
from neds.peers.ndt2 import NDT2, NDT2Config
from neds.train import TrainConfig, build_model, evaluate, init_shared_from, load_model, param_groups, train
from neds.vocab import GRADIENT_BALANCE_FALLBACK, GRADIENT_GROUPS

TINY = dict(
    hidden=32, n_heads=2, mlp=64, n_layers=2, decoder_layers=1, patch_size=4, max_count=8, dropout=0.0, max_patches=8
)
FAST = dict(batch_size=8, max_lr=3e-3, progress=False, device="cpu", keep="last", warmup_fraction=0.1)
BINS = 40  # bins of the planted trials (fewer than the real 100: faster tests)
UNITS = [5, 9]  # 2 and 3 patches of 4 units: session 0's last patch holds one real unit


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def tiny(mode, n_units=UNITS, eids=None, subjects=None, **overrides):
    return build_model({**TINY, **overrides}, n_units, mode, eids, architecture="ndt2", subjects=subjects)


def planted(n_units: list[int], trials: int, seed: int = 0, n_bins: int = BINS, gain: bool = False) -> TrialData:
    """Trials of ``n_bins`` bins whose spikes and behaviour share two slow latents: the first half
    of each session's units fire with the first (wheel), the second half with the second
    (whisker); choice is whether the first latent's mean is above 0.5. ``gain``: every trial's
    rates also scaled by a gain of its own, between 0.2 and 2."""
    data = random_trials(n_units, trials, seed=seed, splits=(0.8, 0.2, 0.0))
    rng = np.random.default_rng(seed)
    k, n_max = len(data.session), data.spikes.shape[2]
    time = np.arange(n_bins) / n_bins
    latents = []
    for _ in range(2):
        freq, phase = rng.uniform(0.5, 1.5, (k, 1)), rng.uniform(0, 2 * np.pi, (k, 1))
        latents.append(0.5 + 0.5 * np.sin(2 * np.pi * freq * time + phase))  # (K, T) in [0, 1]
    n = np.asarray(n_units)[data.session.numpy()]  # units of each trial's session
    first = np.arange(n_max)[None, :] < (n[:, None] + 1) // 2  # (K, N)
    rate = 0.1 + 2.0 * np.where(first[:, None, :], latents[0][:, :, None], latents[1][:, :, None])
    if gain:
        rate = rate * rng.uniform(0.2, 2.0, (k, 1, 1))
    spikes = rng.poisson(rate) * (np.arange(n_max)[None, None, :] < n[:, None, None])
    return dataclasses.replace(
        data,
        spikes=torch.from_numpy(spikes.astype(np.uint8)),
        wheel=torch.from_numpy(latents[0].astype(np.float32)),
        whisker=torch.from_numpy(latents[1].astype(np.float32)),
        choice=torch.from_numpy((latents[0].mean(1) > 0.5).astype(np.int64)),
    )


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


# ---------------------------------------------------------------------------------------- model
def test_config_checks_and_defaults():
    cfg = NDT2Config()
    assert cfg.hidden % cfg.patch_size == 0 and cfg.n_bins == 100
    with pytest.raises(ValueError, match="multiple of ndt2.patch_size"):
        NDT2Config(hidden=30, n_heads=2, patch_size=4)
    with pytest.raises(ValueError, match="folds"):
        NDT2Config(folds=1)
    with pytest.raises(ValueError, match="max_patches"):
        tiny("decoding", [40])  # 40 units > 8 patches of 4
    with pytest.raises(ValueError, match="modes"):
        tiny("multimodal")


@pytest.mark.parametrize("mode", NDT2.modes)
def test_shapes_with_sessions_of_different_sizes(mode):
    data = random_trials(UNITS, 4)
    model = tiny(mode)
    batch = data.batch(torch.tensor([0, 5, 1, 6]))  # both sessions in one batch
    masks = model.draw_masks(4, 100, 0.5, torch.Generator().manual_seed(0), None)
    out = model(batch, masks)
    loss, parts = model.loss(out, batch, masks)
    assert torch.isfinite(loss) and loss.ndim == 0
    loss.backward()
    pred = model.predict(batch)
    if mode == "self_supervised":
        assert out.spikes.shape == out.masked.shape == (4, 100, 9) and set(parts) == {"spikes"}
        assert pred["rate"].shape == (4, 100, 9) and (pred["rate"] > 0).all()
        real = torch.tensor([2, 3, 2, 3]) * 100  # real tokens per trial
        masked_tokens = out.masked.view(4, 100, 9)[:, :, ::4].sum((1, 2))  # first unit of each patch
        assert torch.equal(masked_tokens, (real * 0.5).round().long())  # exactly half of each trial's tokens
    else:
        assert masks is None and set(parts) == {"wheel", "whisker", "choice", "block"}
        assert out.wheel.shape == out.whisker.shape == (4, 100) and pred["wheel"].shape == (4, 100)
        assert out.choice.shape == (4, 2) and out.block.shape == (4, 3)
        assert torch.allclose(pred["choice_prob"].sum(1), torch.ones(4))
        assert torch.allclose(pred["block_prob"].sum(1), torch.ones(4))
    # every parameter takes part (data-parallel training needs it), the embeddings are not decayed
    assert all(p.grad is not None for p in model.parameters())
    no_decay = {id(p) for p in param_groups(model, 0.1)[1]["params"]}
    for name in ("time_emb", "space_emb", "readin.weight", "sessions.session_emb", "sessions.subject_emb"):
        assert id(model.get_parameter(name)) in no_decay, name


@pytest.mark.parametrize("mode", NDT2.modes)
def test_padded_units_never_reach_the_loss(mode):
    data = random_trials(UNITS, 4)
    model = tiny(mode).eval()
    batch = data.batch(torch.tensor([0, 5, 1, 6]))
    masks = model.draw_masks(4, 100, 0.5, torch.Generator().manual_seed(0), None)
    out = model(batch, masks)
    loss, _ = model.loss(out, batch, masks)
    batch.spikes[[0, 2], :, 5:] = 7.0  # session 0's padded units
    out2 = model(batch, masks)
    loss2, _ = model.loss(out2, batch, masks)
    assert torch.equal(loss, loss2)
    if mode == "self_supervised":
        assert not out.masked[[0, 2], :, 5:].any()
        assert torch.equal(out.spikes[:, :, :5], out2.spikes[:, :, :5])
        assert torch.equal(
            model.predict(batch)["rate"][:, :, :5],
            model.predict(data.batch(torch.tensor([0, 5, 1, 6])))["rate"][:, :, :5],
        )
    else:
        assert torch.equal(out.wheel, out2.wheel) and torch.equal(out.choice, out2.choice)


def test_prediction_of_a_patch_never_sees_its_own_counts():
    data = random_trials([12], 2, rate=0.5)
    model = tiny("self_supervised", [12]).eval()
    batch = data.batch(torch.tensor([0, 1]))
    rate = model.predict(batch)["rate"]
    batch.spikes[0, 40, 4:8] += 3  # the counts of one patch token (bin 40, patch 1) of trial 0
    changed = model.predict(batch)["rate"]
    assert torch.equal(rate[0, 40, 4:8], changed[0, 40, 4:8])  # its own prediction is unchanged
    assert not torch.equal(rate[0], changed[0])  # the others, predicted from it, change
    assert torch.equal(rate[1], changed[1])


def test_prediction_of_a_trial_does_not_depend_on_its_batch():
    data = random_trials(UNITS, 3, rate=0.5)
    model = tiny("self_supervised").eval()
    mixed = model.predict(data.batch(torch.tensor([0, 3, 4])))["rate"]  # session 0 padded to session 1's patches
    alone = model.predict(data.batch(torch.tensor([0])))["rate"]
    assert torch.allclose(mixed[0, :, :5], alone[0, :, :5], atol=1e-5)


def test_masks_are_drawn_from_the_generator():
    model = tiny("self_supervised")
    a = model.draw_masks(3, 100, 0.3, torch.Generator().manual_seed(4), None)
    b = model.draw_masks(3, 100, 0.3, torch.Generator().manual_seed(4), None)
    assert torch.equal(a.noise, b.noise) and a.noise.shape == (3, 100, 3) and a.ratio == 0.3
    with pytest.raises(ValueError, match="mask ratio"):
        model.draw_masks(3, 100, 1.0, torch.Generator(), None)


def test_subjects_are_saved_with_the_weights():
    model = tiny("self_supervised", [5, 9, 7], subjects=["mouse-a", "mouse-b", "mouse-a"], eids=None)
    assert model.sessions.subject_emb.shape[0] == 2 and model.sessions.subjects == ["mouse-a", "mouse-b", "mouse-a"]
    state = model.state_dict()
    again = tiny("self_supervised", [5, 9, 7], subjects=["mouse-a", "mouse-b", "mouse-a"])
    again.load_state_dict(state)
    with pytest.raises(ValueError, match="group the sessions"):
        tiny("self_supervised", [5, 9, 7], subjects=["x", "y", "z"]).load_state_dict(state)
    unknown = tiny("self_supervised", [5, 9, 7], subjects=["", "mouse-a", ""])  # '' : unknown, not one animal
    assert unknown.sessions.subject_index.tolist() == [0, 1, 2] and unknown.sessions.subjects == ["", "mouse-a", ""]
    unnamed = tiny("self_supervised", [5, 9])
    assert unnamed.sessions.subjects is None and unnamed.sessions.subject_emb.shape[0] == 2
    unnamed.sessions.eids = ["s0", "s1"]
    assert unnamed.sessions.subjects == ["s0", "s1"]  # no subjects: each session its own


def test_bf16_autocast_runs():
    data = random_trials(UNITS, 4)
    batch = data.batch(torch.tensor([0, 5]))
    for mode in NDT2.modes:
        model = tiny(mode)
        masks = model.draw_masks(2, 100, 0.5, torch.Generator().manual_seed(0), None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch, masks)
            pred = model.predict(batch)
        loss, _ = model.loss(out, batch, masks)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in pred.values())


# ---------------------------------------------------------------------------------------- training
def test_a_gradient_balance_trains_ndt2_with_the_fallback_and_says_so(tmp_path, caplog):
    """NDT2 has no shared per-modality representation for the gradient balances to scale: asked
    for one (the default), it trains with the fallback balance, and the summary records it."""
    assert TrainConfig().loss in GRADIENT_GROUPS and not NDT2.shared_output
    data = planted([8], 40)
    model = tiny("decoding", [8], subjects=["mouse-a"], n_bins=BINS)
    with caplog.at_level("WARNING"):
        summary = train(model, data, TrainConfig(epochs=1, val_every=1, loss="gradnorm_lift", **FAST), tmp_path)
    assert summary["loss"] == GRADIENT_BALANCE_FALLBACK == "uncertainty"
    assert summary["train_config"]["loss"] == "gradnorm_lift"
    assert "trains with 'uncertainty'" in caplog.text
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert "weight_wheel" in history[-1]  # the uncertainty balance's learned weights


def test_decoding_learns_planted_behaviour_and_round_trips(tmp_path):
    data = planted([8], 80)  # 64 training trials: 8 steps an epoch
    model = tiny("decoding", [8], subjects=["mouse-a"], n_bins=BINS)
    summary = train(model, data, TrainConfig(epochs=25, val_every=25, **FAST), tmp_path)
    loaded, ckpt = load_model(tmp_path / "model.pt")
    assert ckpt["architecture"] == "ndt2" and ckpt["vocab"]["subjects"] == ["mouse-a"]
    assert loaded.sessions.subjects == ["mouse-a"] and loaded.mode == "decoding"
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    idx = data.indices("train")
    pred = loaded.predict(data.batch(idx))
    assert r2(data.wheel[idx].numpy(), pred["wheel"].numpy()) > 0.3
    assert r2(data.whisker[idx].numpy(), pred["whisker"].numpy()) > 0.3
    assert summary["best_val"]["val_wheel_r2"] > 0.2  # and on the held-out trials


def test_masked_pretraining_beats_the_mean_rate_null(tmp_path):
    data = planted([12, 8], 30, gain=True)  # 48 training trials: 6 steps an epoch
    model = tiny("self_supervised", [12, 8], subjects=["mouse-a", "mouse-b"], n_bins=BINS)
    tcfg = TrainConfig(epochs=25, val_every=25, mask_ratio=0.3, **FAST)
    summary = train(model, data, tcfg, tmp_path)
    assert {"train_spikes", "val_bps"} <= set(summary["best_val"])
    assert evaluate(model, data, "train")["bps"] > 0.08  # every patch predicted while masked
    assert summary["best_val"]["val_bps"] > 0.05
    # the masked Poisson loss against the null that predicts each unit's mean count
    idx = data.indices("train")
    batch = data.batch(idx)
    masks = model.draw_masks(len(idx), BINS, 0.3, torch.Generator().manual_seed(9), None)
    model.eval()
    with torch.no_grad():
        out = model(batch, masks)
        loss = model.loss(out, batch, masks)[0].item()
    y = batch.spikes
    mean = torch.stack([y[data.session[idx] == s].mean((0, 1)) for s in range(2)])[data.session[idx]][:, None, :]
    null = torch.where(out.masked, mean - y * torch.log(mean.clamp(min=1e-6)), 0.0).sum() / out.masked.sum()
    assert loss < 0.9 * null.item()  # about 0.79 against 0.92


def test_pretrain_then_finetune_on_a_new_animal(tmp_path):
    pre_data = planted([12, 8], 12)
    pre_data.eids = ["session-a", "session-b"]
    pre = tiny("self_supervised", [12, 8], eids=pre_data.eids, subjects=["mouse-a", "mouse-b"], n_bins=BINS)
    train(pre, pre_data, TrainConfig(epochs=1, mask_ratio=0.5, **FAST), tmp_path / "pre")
    pretrained, _ = load_model(tmp_path / "pre" / "model.pt")
    assert pretrained.sessions.subjects == ["mouse-a", "mouse-b"]

    new = planted([10], 20, seed=3)
    new.eids = ["session-c"]
    fine = tiny("decoding", [10], eids=new.eids, subjects=["mouse-c"], n_bins=BINS)
    copied = init_shared_from(fine, tmp_path / "pre" / "model.pt")
    assert {"readin.weight", "time_emb", "space_emb", "encoder.0.qkv.weight", "norm.weight"} <= set(copied)
    assert not any(k.startswith(("sessions.", "spike_decoder.", "behaviour_decoder.")) for k in copied)
    state = fine.state_dict()
    for name in copied:
        assert torch.equal(state[name], pretrained.state_dict()[name]), name
    assert fine.eids == ["session-c"] and fine.sessions.subjects == ["mouse-c"]
    summary = train(fine, new, TrainConfig(epochs=2, val_every=2, **FAST), tmp_path / "fine")
    assert summary["vocab"] == {"eids": ["session-c"], "n_units": [10], "subjects": ["mouse-c"]}
    model, _ = load_model(tmp_path / "fine" / "model.pt")
    pred = predict_model(model, new, "val")
    assert set(pred) == {"wheel", "whisker", "choice_prob", "block_prob"}
    row, _ = score(pred, new, "val")
    assert math.isfinite(row["wheel_r2"]) and math.isfinite(row["whisker_r2"]) and "block_acc" in row
    # a self-supervised model of the same config takes the MAE decoder too; another config is refused
    again = tiny("self_supervised", [10], n_bins=BINS)
    assert any(k.startswith("spike_decoder.") for k in init_shared_from(again, tmp_path / "pre" / "model.pt"))
    with pytest.raises(ValueError, match="does not match the NDT2 model"):
        init_shared_from(tiny("decoding", [10], n_bins=BINS, hidden=64), tmp_path / "pre" / "model.pt")
    with pytest.raises(ValueError, match="head unlike"):
        init_shared_from(tiny("self_supervised", [10], n_bins=BINS, decoder_layers=2), tmp_path / "pre" / "model.pt")


@pytest.mark.parametrize("mode", NDT2.modes)
def test_resume_is_bit_identical(tmp_path, mode):
    data = random_trials(UNITS, 12)
    tcfg = TrainConfig(epochs=2, val_every=1, mask_ratio=0.5, **{**FAST, "keep": "best"})
    torch.manual_seed(1)
    full = tiny(mode, dropout=0.1)
    train(full, data, tcfg, tmp_path / "full")
    torch.manual_seed(1)
    part = tiny(mode, dropout=0.1)
    assert train(part, data, tcfg, tmp_path / "part", stop_after_epoch=1) == {"interrupted_at_epoch": 1}
    torch.manual_seed(123)
    resumed = tiny(mode, dropout=0.1)
    train(resumed, data, tcfg, tmp_path / "part")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
