"""Verified stores: content fingerprints, corrupt and out-of-range stores refused with the store
named, and training that refuses non-finite data, losses and weights."""

import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from neds.data.dataset import load_sessions, random_trials
from neds.io.store import (
    CorruptStoreError,
    StoreValueError,
    as_str,
    content_fingerprint,
    is_usable,
    open_binned,
    open_zarr,
    store_fingerprint,
    text_array,
    verify_store,
    write_unusable,
    write_zarr,
)
from neds.model.neds import NEDS, ModelConfig
from neds.train import NonFiniteDataError, NonFiniteLossError, TrainConfig, build_model, train

EID = "754b74d5-7a06-4004-ae0c-72a10b6ed2e6"
TINY = ModelConfig(hidden=32, n_heads=4, mlp=64, n_layers=1, dropout=0.1, token_dropout=0.1)
FAST = dict(batch_size=8, max_lr=3e-3, val_every=2, progress=False, device="cpu")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def binned(n_trials: int = 20, n_units: int = 6, seed: int = 0) -> xr.Dataset:
    """A small dataset in the layout of a binned session (as bin_session writes it)."""
    rng = np.random.default_rng(seed)
    split = ["train"] * (n_trials - 4) + ["val"] * 2 + ["test"] * 2
    return xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), rng.poisson(0.5, (n_trials, 10, n_units)).astype(np.uint16)),
            "wheel_speed": (("trial", "time"), rng.random((n_trials, 10)).astype(np.float32)),
            "whisker_motion_energy": (("trial", "time"), rng.random((n_trials, 10)).astype(np.float32)),
            "choice": (("trial",), rng.integers(0, 2, n_trials).astype(np.int8)),
            "block": (("trial",), rng.integers(0, 3, n_trials).astype(np.int8)),
        },
        coords={
            "trial": np.arange(n_trials),
            "split": ("trial", text_array(split)),
            "unit_region": ("unit", text_array(["CA1"] * n_units)),
            "trial_firstMovement_times": ("trial", np.where(np.arange(n_trials) % 5 == 0, np.nan, 1.0)),
        },
        attrs={"eid": EID, "usable": True, "binning": {"bin_size_s": 0.02, "split_seed": 0}, "n": np.int64(3)},
    )


@pytest.fixture
def store(tmp_path):
    path = tmp_path / f"{EID}.zarr"
    write_zarr(binned(), path, trial_chunk=8)  # 3 chunks per trial variable
    return path


def test_clean_store_round_trips_with_its_fingerprint(store):
    ds = binned()
    back = open_binned(store)
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.attrs["eid"] == EID and back.attrs["n"] == 3 and back.attrs["binning"]["split_seed"] == 0
    recorded = back.attrs["fingerprint"]
    assert recorded["algorithm"] == "sha256" and set(recorded["variables"]) == set(ds.variables)
    assert store_fingerprint(store) == recorded["digest"] == content_fingerprint(back)["digest"]
    verify_store(open_zarr(store))  # a lazily opened dataset verifies on demand
    # the digest is of the content: another split is another fingerprint
    other = binned()
    other["split"] = ("trial", text_array(np.roll(as_str(other["split"].values), 3)))
    assert content_fingerprint(other)["digest"] != recorded["digest"]


def test_deleted_chunk_is_refused_naming_the_store(store):
    (store / "spikes" / "c" / "1" / "0" / "0").unlink()  # reads back as zeros without the check
    for read in (open_binned, verify_store, lambda p: load_sessions([p])):
        with pytest.raises(CorruptStoreError, match=r"spikes differ") as err:
            read(store)
        assert str(store) in str(err.value) and "bin_session" in str(err.value) and EID in str(err.value)


@pytest.mark.parametrize("variable", ["wheel_speed", "spikes", "choice"])
def test_flipped_bytes_are_refused_naming_the_store(store, variable):
    f = max((p for p in (store / variable / "c").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    f.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError) as err:  # a checksum mismatch or a decode error
        open_binned(store)
    assert str(store) in str(err.value) and variable in str(err.value) and "bin_session" in str(err.value)


def test_truncated_chunk_is_refused_naming_the_store_and_variable(store):
    f = store / "spikes" / "c" / "2" / "0" / "0"
    f.write_bytes(f.read_bytes()[:10])
    with pytest.raises(CorruptStoreError, match=r"'spikes' cannot be decoded") as err:
        open_binned(store)
    assert str(store) in str(err.value) and "bin_session" in str(err.value)


def test_store_without_fingerprint_is_refused(tmp_path):
    path = tmp_path / f"{EID}.zarr"
    binned().to_zarr(path, zarr_format=3, consolidated=False)  # as an older version or a hand wrote it
    for read in (open_binned, store_fingerprint):
        with pytest.raises(CorruptStoreError, match="no content fingerprint") as err:
            read(path)
        assert str(path) in str(err.value) and "bin_session" in str(err.value)


def test_changed_attrs_and_deleted_variable_are_refused(store, tmp_path):
    import json

    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["eid"] = "someone-else"
    meta.write_text(json.dumps(doc))
    with pytest.raises(CorruptStoreError, match="attrs differ"):
        open_binned(store)
    other = tmp_path / "other.zarr"
    write_zarr(binned(), other)
    shutil.rmtree(other / "block")
    with pytest.raises(CorruptStoreError, match="block are missing"):
        open_binned(other)


@pytest.mark.parametrize(
    "variable,value,message",
    [
        ("wheel_speed", -0.5, "wheel_speed has 1 value(s) outside [0, 1]"),
        ("wheel_speed", 1.5, "wheel_speed has 1 value(s) outside [0, 1]"),
        ("whisker_motion_energy", np.nan, "whisker_motion_energy has 1 non-finite value(s)"),
        ("whisker_motion_energy", np.inf, "whisker_motion_energy has 1 non-finite value(s)"),
        ("choice", 2, "choice has 1 value(s) outside the classes"),
        ("block", 3, "block has 1 value(s) outside the classes"),
        ("split", "holdout", "split has 1 value(s) other than train, val, test"),
        ("spikes", -1, "spikes has 1 negative count(s)"),
    ],
)
def test_out_of_range_values_are_refused(tmp_path, variable, value, message):
    ds = binned()
    if variable == "split":
        labels = as_str(ds["split"].values)
        labels[3] = value
        ds["split"] = ("trial", text_array(labels))
    else:
        if variable == "spikes":
            ds["spikes"] = ds["spikes"].astype(np.int16)
        values = ds[variable].values.copy()
        values.reshape(-1)[3] = value
        ds[variable] = (ds[variable].dims, values)
    path = tmp_path / f"{EID}.zarr"
    write_zarr(ds, path)  # its checksum matches: the values were written so
    with pytest.raises(StoreValueError) as err:
        open_binned(path)
    assert message in str(err.value) and str(path) in str(err.value) and "bin_session" in str(err.value)


def test_non_integer_spikes_are_refused(tmp_path):
    ds = binned()
    ds["spikes"] = ds["spikes"].astype(np.float32)
    write_zarr(ds, tmp_path / "s.zarr")
    with pytest.raises(StoreValueError, match="spikes has dtype float32, not integer counts"):
        open_binned(tmp_path / "s.zarr")


def test_unusable_marker_keeps_working(tmp_path):
    path = tmp_path / "bad.zarr"
    write_unusable(path, {"eid": "x", "reason": "no whisker motion energy", "n_trials_kept": np.int64(3)})
    assert not is_usable(path)
    verify_store(path)  # the marker is fingerprinted too
    assert isinstance(store_fingerprint(path), str)
    with pytest.raises(ValueError, match="no whisker motion energy"):
        open_binned(path)
    write_zarr(binned(), tmp_path / "s.zarr")
    assert is_usable(tmp_path / "s.zarr")


def test_write_refuses_an_encoding_that_changes_values(tmp_path):
    ds = binned()
    ds["unit_depth"] = ("unit", np.linspace(0.0, 1.0, ds.sizes["unit"]) / 3)
    ds["unit_depth"].encoding = {"dtype": "float16"}
    with pytest.raises(ValueError, match="does not read back as written.*unit_depth"):
        write_zarr(ds, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()  # nothing left behind


# ---------------------------------------------------------------------------------------- training
def test_training_refuses_nan_data(tmp_path):
    data = random_trials([5, 9], 20)
    data.whisker[25, 3] = float("nan")  # a trial of the second session
    with pytest.raises(NonFiniteDataError, match=r"whisker: 1 value\(s\) in session\(s\) session-1"):
        train(build_model(TINY, data.n_units), data, TrainConfig(epochs=1, **FAST), tmp_path)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model.pt").exists()


def test_nan_loss_stops_training_and_saves_nothing(tmp_path, monkeypatch):
    data = random_trials([5, 9], 20)  # 28 training trials: 4 steps an epoch
    original, calls = NEDS.loss_terms, []

    def loss_terms(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 6:  # epoch 2, step 2
            terms["wheel"].total = terms["wheel"].total * float("nan")
        return terms

    monkeypatch.setattr(NEDS, "loss_terms", loss_terms)
    with pytest.raises(NonFiniteLossError) as err:
        train(build_model(TINY, data.n_units), data, TrainConfig(epochs=3, **FAST), tmp_path)
    msg = str(err.value)
    assert "epoch 2, step 2 of 4" in msg and "(modalities wheel)" in msg and "max_lr" in msg
    assert "session-0" in msg or "session-1" in msg
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "summary.json").exists()
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)  # epoch 1, finite
    assert last["state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model_state"].values() if t.is_floating_point())


def test_nan_weight_gives_a_nan_loss_error(tmp_path):
    data = random_trials([5, 9], 20)
    model = build_model(TINY, data.n_units)
    with torch.no_grad():
        model.blocks[0].qkv.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1 of 4"):
        train(model, data, TrainConfig(epochs=1, **FAST), tmp_path)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "checkpoints" / "last.pt").exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """A loss that stays finite while an update leaves a weight NaN: the checkpoint is refused."""
    data = random_trials([5, 9], 20)
    model = build_model(TINY, data.n_units)
    step, calls = torch.optim.AdamW.step, []

    def poisoned(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # the last step of epoch 1, after which last.pt is written
            with torch.no_grad():
                model.blocks[0].qkv.weight[0, 0] = float("nan")
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"after epoch 1 the weights blocks\.0\.qkv\.weight"):
        train(model, data, TrainConfig(epochs=2, **FAST), tmp_path)
    assert not (tmp_path / "checkpoints" / "last.pt").exists() and not (tmp_path / "model.pt").exists()


def test_predictions_and_ground_truth_readers_verify_too(tmp_path):
    """The stores the evaluation writes (predictions, probing embeddings) and the simulator's
    ground truth carry fingerprints too; the figures, the BrainWideBench export and the oracle
    refuse a corrupt one rather than draw or score it."""
    from neds.evaluate.evaluation import oracle_rates
    from neds.plots import plot_examples

    pred = tmp_path / "neds_finetuned.zarr"
    rng = np.random.default_rng(0)
    write_zarr(
        xr.Dataset(
            {"rate": (("trial", "time", "unit"), rng.random((4, 10, 6)).astype(np.float32))},
            coords={"trial": np.arange(4)},
        ),
        pred,
    )
    truth = tmp_path / "truth.zarr"
    write_zarr(
        xr.Dataset(
            {"expected_counts": (("trial", "time", "unit"), rng.random((20, 10, 6)).astype(np.float32))},
            coords={"probe": ("unit", text_array(["probe00"] * 6)), "cluster_id": ("unit", np.arange(6))},
        ),
        truth,
    )
    for path, variable in ((pred, "rate"), (truth, "expected_counts")):  # truncate a chunk of each
        f = next(p for p in (path / variable / "c").rglob("*") if p.is_file())
        f.write_bytes(f.read_bytes()[:8])
    store = tmp_path / f"{EID}.zarr"
    write_zarr(binned(), store)
    with pytest.raises(CorruptStoreError, match="cannot be decoded") as err:
        plot_examples(store, pred)
    assert str(pred) in str(err.value)
    with pytest.raises(CorruptStoreError, match="cannot be decoded") as err:
        oracle_rates(truth, store, np.arange(3))
    assert str(truth) in str(err.value) and "re-run the workflow step" in str(err.value)
