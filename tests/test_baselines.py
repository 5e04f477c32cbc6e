"""Linear baselines recover known structure; the evaluation scores every method alike."""

import numpy as np
import torch

from neds.data.dataset import TrialData
from neds.evaluate.baselines import RidgePath, behaviour_design, linear_decoding, linear_encoding
from neds.evaluate.evaluation import conditions, predict_model, score
from neds.model.neds import NEDS, ModelConfig


def test_ridge_path_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    w = rng.normal(size=(6, 3))
    y = x @ w + 2.0 + 0.01 * rng.normal(size=(400, 3))
    path = RidgePath(x, y)
    x_new = rng.normal(size=(5, 6))
    np.testing.assert_allclose(path.predict(x_new, 1e-8), x_new @ w + 2.0, atol=0.01)
    # a huge penalty shrinks to the mean
    np.testing.assert_allclose(path.predict(x_new, 1e12), np.broadcast_to(y.mean(0), (5, 3)), atol=1e-3)


def planted_session(k=300, n=8, seed=0):
    """Spikes driven linearly by wheel speed; choice readable from unit 0; whisker = spikes of unit 1 / 4."""
    rng = np.random.default_rng(seed)
    t = 100
    bump = np.exp(-0.5 * ((np.arange(t) - 50) / 10.0) ** 2)
    wheel = (rng.random((k, 1)) * bump[None, :]).astype(np.float32)  # a movement of random size per trial
    choice = rng.integers(0, 2, k)
    gain = rng.uniform(0.5, 2.0, n)
    rate = 0.05 + 0.4 * wheel[:, :, None] * gain[None, None, :]
    rate[:, :, 0] += 0.5 * choice[:, None]
    spikes = rng.poisson(rate).astype(np.uint8)
    whisker = (spikes[:, :, 1] / 4.0).astype(np.float32)
    split = np.array(["train"] * int(0.7 * k) + ["val"] * int(0.1 * k) + ["test"] * (k - int(0.7 * k) - int(0.1 * k)))
    data = TrialData(
        eids=["planted"],
        n_units=[n],
        spikes=torch.from_numpy(spikes),
        wheel=torch.from_numpy(wheel),
        whisker=torch.from_numpy(whisker),
        choice=torch.from_numpy(choice),
        block=torch.from_numpy(rng.integers(0, 3, k)),
        session=torch.zeros(k, dtype=torch.long),
        split=split,
        trial=torch.arange(k),
    )
    return data, rate


def test_linear_encoding_finds_the_planted_tuning():
    data, rate = planted_session(k=1000)
    pred, info = linear_encoding(data)
    row, per_unit = score(pred, data)
    te = data.indices("test").numpy()
    oracle, _ = score({"rate": rate[te]}, data)
    assert row["bps_unit_mean"] > 0.5 * oracle["bps_unit_mean"] > 0  # most of the oracle's information
    assert (per_unit["bps"] > 0).all()
    assert info["encoding_alpha"] in (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
    assert behaviour_design(data, te).shape == (len(te), 2 * 100 + 5)


def test_linear_decoding_reads_planted_signals():
    data, _ = planted_session(k=1000)
    pred, _ = linear_decoding(data)
    row, _ = score(pred, data)
    assert row["whisker_r2"] > 0.8  # whisker is a linear function of unit 1's counts (p ~ n: some shrinkage)
    assert row["choice_acc"] > 0.8  # unit 0 fires more on choice 1
    assert 0.2 < row["block_acc"] < 0.55  # block is not in the spikes: chance


def test_score_and_predict_model_layout():
    data, _ = planted_session(k=40)
    model = NEDS(ModelConfig(hidden=16, n_heads=2, mlp=32, n_layers=1), [8], "multimodal")
    pred = predict_model(model, data)
    n_test = len(data.indices("test"))
    assert pred["rate"].shape == (n_test, 100, 8) and (pred["rate"] > 0).all()
    assert {"rate_from_wheel", "rate_from_block", "wheel", "whisker", "choice_prob", "block_prob"} <= set(pred)
    np.testing.assert_allclose(pred["choice_prob"].sum(1), 1.0, rtol=1e-5)
    row, _ = score(pred, data)
    assert {"bps_unit_mean", "bps_pooled", "bps_from_wheel", "choice_balanced_acc", "whisker_r2"} <= set(row)
    enc_only, _ = score(predict_model(NEDS(model.cfg, [8], "encoding"), data), data)
    assert "choice_acc" not in enc_only and "bps_unit_mean" in enc_only
    assert list(conditions(np.array([0, 1]), np.array([2, 0]))) == ["c0-b2", "c1-b0"]


def shared_structure_sessions(n_sessions=4, k=200, seed=1):
    """Sessions whose units all read one wheel-driven latent with their own loadings."""
    rng = np.random.default_rng(seed)
    t = 100
    bump = np.exp(-0.5 * ((np.arange(t) - 50) / 10.0) ** 2)
    out = []
    for s in range(n_sessions):
        n = int(rng.integers(6, 10))
        wheel = (rng.random((k, 1)) * bump[None, :]).astype(np.float32)
        loading = rng.uniform(0.2, 1.0, n)
        rate = 0.1 + 0.8 * wheel[:, :, None] * loading[None, None, :]
        choice = rng.integers(0, 2, k)
        rate[:, :, 0] += 0.6 * choice[:, None]
        split = np.array(["train"] * 140 + ["val"] * 20 + ["test"] * (k - 160))
        out.append(
            TrialData(
                eids=[f"s{s}"],
                n_units=[n],
                spikes=torch.from_numpy(rng.poisson(rate).astype(np.uint8)),
                wheel=torch.from_numpy(wheel),
                whisker=torch.from_numpy(rng.random((k, t), dtype=np.float32)),
                choice=torch.from_numpy(choice),
                block=torch.from_numpy(rng.integers(0, 3, k)),
                session=torch.zeros(k, dtype=torch.long),
                split=split,
                trial=torch.arange(k),
            )
        )
    return out


def test_rrr_transfers_a_shared_basis_to_a_new_session():
    from neds.evaluate.rrr import RRRConfig, fit_rrr_decoder, fit_rrr_encoder

    sessions = shared_structure_sessions()
    cfg = RRRConfig(rank=2, epochs=150)
    encoder = fit_rrr_encoder(sessions[:3], cfg)
    assert encoder.v.shape == (2, 100, 2 * 100 + 5)
    held_out = sessions[3]
    row, _ = score(encoder.predict_session(held_out), held_out)
    assert row["bps_unit_mean"] > 0.05  # the shared basis explains the new animal's units
    decoder = fit_rrr_decoder(sessions[:3], cfg)
    drow, _ = score(decoder.predict_session(held_out), held_out)
    assert drow["choice_acc"] > 0.7  # choice is carried by unit 0 in every session
