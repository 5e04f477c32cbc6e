"""Brain-region probing on embeddings with known class structure."""

import json

import numpy as np
import pytest
import xarray as xr

from neds.evaluate.probing import probe, unit_embeddings
from neds.io.store import as_str, open_zarr, text_array, write_zarr
from neds.model.neds import NEDS, ModelConfig
from neds.vocab import REGION_NAMES


def test_probe_finds_separable_regions_and_not_random_ones():
    rng = np.random.default_rng(0)
    regions = np.repeat(np.array(REGION_NAMES), 40)
    centres = rng.normal(scale=3.0, size=(5, 8))
    separable = centres[np.repeat(np.arange(5), 40)] + rng.normal(size=(200, 8))
    res = probe(separable, regions)
    assert res["accuracy"] > 0.9 and res["balanced_accuracy"] > 0.9
    assert np.array(res["confusion"]).sum() == 200 and np.trace(res["confusion"]) > 180
    assert set(res["f1"]) == set(REGION_NAMES) and min(res["f1"].values()) > 0.8
    noise = probe(rng.normal(size=(200, 8)), regions)
    assert noise["accuracy"] < 0.4  # chance is 0.2


def test_probe_refuses_too_few_units():
    with pytest.raises(ValueError, match="regions with"):
        probe(np.zeros((6, 2)), np.array(["CA1"] * 3 + ["DG"] * 3))


def test_unit_embeddings_shapes_follow_each_session():
    model = NEDS(ModelConfig(hidden=16, n_heads=2, mlp=32, n_layers=1), [4, 9])
    emb = unit_embeddings(model)
    assert [e["input"].shape for e in emb] == [(4, 16), (9, 16)]
    assert [e["both"].shape for e in emb] == [(4, 32), (9, 32)]
    # unit 2 of session 1: its column of Linear(N, 2N) through Linear(2N, H)
    stitcher = model.sessions.spike_stitcher
    w1 = stitcher.w1[1, 2, :18].detach().numpy()
    np.testing.assert_allclose(emb[1]["input"][2], w1 @ stitcher.w2[1, :18].detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(emb[1]["output"][2], model.sessions.spike_head.weight[1, :, 2].detach().numpy())


def _planted_session(eid, regions, rng, n_trials=6, n_bins=4):
    """A binned store's unit variables (what probing reads) for units of the given regions."""
    n = len(regions)
    return xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), rng.poisson(1.0, (n_trials, n_bins, n)).astype(np.uint16)),
            "unit_firing_rate_hz": ("unit", rng.uniform(2, 20, n)),
            "unit_region": ("unit", text_array(regions)),
            "unit_uuid": ("unit", text_array([f"{eid}-u{i}" for i in range(n)])),
        },
        attrs={"eid": eid},
    )


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Two sessions of one 'pretrained' model whose unit embeddings sit near their region's
    centre; the checkpoint lists the sessions in the opposite order of the stores mapping, so a
    pairing by order would give every unit another unit's embedding."""
    rng = np.random.default_rng(0)
    centres = {r: rng.normal(scale=4.0, size=6) for r in REGION_NAMES}
    layout = {
        "sess-a": ["CA1", "DG", "LP", "VISa"] * 6 + ["PO", "root"],
        "sess-b": ["CA1", "DG", "LP", "VISa"] * 5 + ["PO", "PO", "root"],
    }
    stores, emb = {}, {}
    for eid, regions in layout.items():
        stores[eid] = tmp_path / f"{eid}.zarr"
        write_zarr(_planted_session(eid, regions, rng), stores[eid])
        inp = np.stack([centres.get(r, np.zeros(6)) for r in regions]) + rng.normal(scale=0.5, size=(len(regions), 6))
        out = rng.normal(size=(len(regions), 6))  # the output embedding carries no region
        emb[eid] = {"input": inp, "output": out, "both": np.concatenate([inp, out], axis=1)}
    vocab = ["sess-b", "sess-a"]
    monkeypatch.setattr("neds.train.load_model", lambda path: (str(path), {"vocab": {"eids": vocab}}))
    monkeypatch.setattr("neds.evaluate.probing.unit_embeddings", lambda model: [emb[e] for e in vocab])
    return {e: tmp_path / "pretrain.pt" for e in layout}, stores, layout


def test_probe_regions_finds_planted_regions_by_eid(planted, tmp_path):
    from neds.stages import run_probe

    models, stores, layout = planted
    out = run_probe("pretrain", models, stores, tmp_path / "probe.json", tmp_path / "emb.zarr", seed=0)
    assert json.loads((tmp_path / "probe.json").read_text()) == out
    # PO has 3 units, fewer than the folds: left out; 'root' is outside the targets
    assert out["n_units_outside_targets"] == 2 and list(out["regions_left_out"]) == ["PO"]
    assert out["units_per_region"] == {"CA1": 11, "DG": 11, "LP": 11, "VISa": 11, "PO": 0} and out["n_units"] == 44
    assert out["chance"] == pytest.approx(0.25)
    res = out["results"]
    assert res["input"]["accuracy"] > 0.9 and res["both"]["accuracy"] > 0.9  # the planted embedding
    assert res["output"]["accuracy"] < 0.6 and res["mean_rate"]["accuracy"] < 0.6  # no region in these
    ds = open_zarr(tmp_path / "emb.zarr")
    assert ds.sizes["unit"] == 44 and set(as_str(ds["session"].values)) == set(layout)
    uuids, regions = as_str(ds["unit_uuid"].values), as_str(ds["region"].values)
    assert uuids[0] == "sess-a-u0" and regions[0] == "CA1"  # units in the order of the stores mapping
    assert (as_str(ds["predicted_input"].values) == regions).mean() > 0.9


def test_probe_regions_refuses_unpaired_sessions(planted):
    from neds.evaluate.probing import probe_regions

    models, stores, _ = planted
    with pytest.raises(ValueError, match="same sessions"):
        probe_regions("pretrain", models, {"sess-a": stores["sess-a"]})
    with pytest.raises(ValueError, match="holds session sess-b, not sess-a"):
        probe_regions("pretrain", models, {"sess-a": stores["sess-b"], "sess-b": stores["sess-a"]})
    with pytest.raises(ValueError, match="not on session sess-c"):
        probe_regions("pretrain", {**models, "sess-c": models["sess-a"]}, {**stores, "sess-c": stores["sess-a"]})
