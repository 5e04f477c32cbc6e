"""The fine-tuning recipe (training.<stage>: frozen_epochs, shared_lr_scale, session_init,
spike_bias_init): what each one changes in the starting point and in the updates, and what it
refuses."""

import pytest
import torch

from neds.data.dataset import random_trials
from neds.model.neds import ModelConfig
from neds.train import (
    TrainConfig,
    build_model,
    build_stage_model,
    initialise,
    load_checkpoint,
    load_model,
    mean_log_rates,
    train,
    training_trials,
)

TINY = ModelConfig(hidden=16, n_heads=2, mlp=32, n_layers=1, dropout=0.0, token_dropout=0.0, readout_init_scale=0.0)
FAST = dict(batch_size=8, max_lr=3e-3, val_every=1, progress=False, device="cpu")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A NEDS model pretrained for two epochs on three random sessions."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pre")
    data = random_trials([5, 9, 7], 16, rate=0.3)
    train(build_model(TINY, data.n_units), data, TrainConfig(epochs=2, **FAST), out)
    return out / "model.pt"


def _new_animal():
    data = random_trials([11], 24, rate=0.4, seed=5)
    data.eids = ["new-animal"]
    return data


def _shared(model):
    return {k: v.clone() for k, v in model.shared_state_dict().items()}


def _fine_tune(pretrained, tmp_path, epochs=2, stop=None, **recipe):
    data = _new_animal()
    tcfg = TrainConfig(epochs=epochs, **FAST, **recipe)
    model = build_model(TINY, data.n_units)
    initialise(model, data, tcfg, pretrained)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, data, tcfg, tmp_path, stop_after_epoch=stop)
    return start, load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model_state"]


def test_frozen_epochs_train_the_new_session_alone_first(pretrained, tmp_path):
    start, after_one = _fine_tune(pretrained, tmp_path, stop=1, frozen_epochs=1)
    shared = set(load_model(pretrained)[0].shared_state_dict())
    for name, value in start.items():
        if name in shared:
            assert torch.equal(after_one[name], value), name  # not updated, not decayed
    assert not torch.equal(after_one["sessions.spike_stitcher.w1"], start["sessions.spike_stitcher.w1"])
    _, after_two = _fine_tune(pretrained, tmp_path, stop=None, frozen_epochs=1)  # resumed: epoch 2 unfreezes
    assert not torch.equal(after_two["blocks.0.qkv.weight"], start["blocks.0.qkv.weight"])


def test_shared_learning_rate_scale(pretrained, tmp_path):
    start, end = _fine_tune(pretrained, tmp_path / "zero", shared_lr_scale=0.0)
    assert torch.equal(end["blocks.0.qkv.weight"], start["blocks.0.qkv.weight"])
    assert not torch.equal(end["sessions.embedding.weight"], start["sessions.embedding.weight"])
    _, tenth = _fine_tune(pretrained, tmp_path / "tenth", shared_lr_scale=0.1)
    _, full = _fine_tune(pretrained, tmp_path / "full")
    moved = lambda state: (state["blocks.0.qkv.weight"] - start["blocks.0.qkv.weight"]).abs().sum()  # noqa: E731
    assert 0 < moved(tenth) < moved(full)


def test_session_layers_start_from_the_best_fitting_pretrained_session(pretrained, tmp_path):
    data = _new_animal()
    tcfg = TrainConfig(epochs=1, **FAST, session_init="pretrained")
    model = build_model(TINY, data.n_units)
    done = initialise(model, data, tcfg, pretrained)
    pre = load_checkpoint(pretrained)
    source = pre["vocab"]["eids"].index(done["session_init_from"])
    state = model.state_dict()
    for name, axis in model.transferable_session_state().items():
        assert torch.equal(state[name], pre["model_state"][name].narrow(axis, source, 1)), name
    # the unit layers stay new: another shape, drawn at random
    assert state["sessions.spike_stitcher.w1"].shape[1] == 11
    # the chosen session is the same whatever ran before (its masks come from the run's seed)
    again = build_model(TINY, data.n_units)
    torch.manual_seed(123)
    assert initialise(again, data, tcfg, pretrained)["session_init_from"] == done["session_init_from"]


def test_spike_bias_starts_at_the_mean_rate(tmp_path):
    data = _new_animal()
    model = build_model(TINY, data.n_units)
    idx = training_trials(data)
    assert initialise(model, data, TrainConfig(**FAST, spike_bias_init="mean_rate")) == {"spike_bias_init": "mean_rate"}
    rates = data.spikes[idx, :, :11].double().mean((0, 1))
    assert torch.allclose(model.sessions.spike_head.bias[0].double().exp(), rates, rtol=1e-5)
    # with the readout's weights at zero the model predicts the mean rate: the null model, 0 bits per spike
    pred = model.predict(data.batch(idx[:4]))
    assert torch.allclose(pred["rate"][..., :11], rates.float().expand(4, 100, 11), rtol=1e-5)
    silent = random_trials([3], 10, rate=0.0)
    assert (mean_log_rates(silent, torch.arange(10)) == torch.log(torch.tensor(1e-6))).all()


def test_a_recipe_needs_a_pretrained_model_and_an_architecture_that_has_the_layers(pretrained):
    data = _new_animal()
    for recipe in ({"frozen_epochs": 3}, {"shared_lr_scale": 0.5}, {"session_init": "pretrained"}):
        with pytest.raises(ValueError, match="trains from random weights"):
            initialise(build_model(TINY, data.n_units), data, TrainConfig(**FAST, **recipe))
    ndt2 = build_stage_model(
        "ndt2_finetune", {"hidden": 16, "n_heads": 2, "mlp": 32, "n_layers": 1, "patch_size": 8}, data
    )
    with pytest.raises(ValueError, match="spike_bias_init: mean_rate: ndt2 models have no"):
        initialise(ndt2, data, TrainConfig(**FAST, spike_bias_init="mean_rate"))
    with pytest.raises(ValueError, match="session_init"):
        TrainConfig(session_init="closest")
    with pytest.raises(ValueError, match="spike_bias_init"):
        TrainConfig(spike_bias_init="psth")
