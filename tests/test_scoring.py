"""Scoring an experiment's checkpoints on one session (neds.stages.run_score_models): one row per
model and split, each split's row the one that split alone gives."""

import json

import pytest

from neds.data import dataset
from neds.stages import run_score_models
from neds.train import TrainConfig, build_model, train
from neds.vocab import NEDS_FINETUNED, NEDS_SCRATCH

TINY = {"hidden": 16, "n_heads": 2, "mlp": 32, "n_layers": 1}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A random session and two checkpoints trained on it for one epoch each."""
    root = tmp_path_factory.mktemp("scoring")
    data = dataset.random_trials([9], 60, rate=0.3)
    models = {}
    for seed, method in ((1, NEDS_FINETUNED), (2, NEDS_SCRATCH)):
        cfg = TrainConfig(epochs=1, batch_size=16, val_every=1, progress=False, device="cpu", seed=seed)
        train(build_model(TINY, data.n_units), data, cfg, root / method)
        models[method] = root / method / "model.pt"
    return data, models


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN (an unscored metric) included


def test_each_checkpoint_is_scored_on_every_split(checkpoints, tmp_path, monkeypatch):
    data, models = checkpoints
    monkeypatch.setattr(dataset, "load_sessions", lambda paths, events=False: data)  # the session's store
    rows = run_score_models("s.zarr", models, ["val", "test"], tmp_path / "both.json", attrs={"experiment": "x"})
    assert [(r["method"], r["split"]) for r in rows] == [
        (NEDS_FINETUNED, "val"),
        (NEDS_FINETUNED, "test"),
        (NEDS_SCRATCH, "val"),
        (NEDS_SCRATCH, "test"),
    ]
    assert _same(json.loads((tmp_path / "both.json").read_text())["rows"], rows)
    for split in ("val", "test"):
        alone = run_score_models("s.zarr", models, split, tmp_path / f"{split}.json", attrs={"experiment": "x"})
        assert _same(alone, [r for r in rows if r["split"] == split])
    val, test = rows[0], rows[1]
    assert val["bps_unit_mean"] != test["bps_unit_mean"] and val["experiment"] == "x" and val["epoch"] == 1
