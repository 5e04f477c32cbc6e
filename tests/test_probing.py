"""Brain-region probing on embeddings with known class structure."""

import numpy as np
import pytest

from neds.evaluate.probing import TARGET_REGIONS, probe, unit_embeddings
from neds.model.neds import ModelConfig, NEDS


def test_probe_finds_separable_regions_and_not_random_ones():
    rng = np.random.default_rng(0)
    regions = np.repeat(np.array(TARGET_REGIONS), 40)
    centres = rng.normal(scale=3.0, size=(5, 8))
    separable = centres[np.repeat(np.arange(5), 40)] + rng.normal(size=(200, 8))
    res = probe(separable, regions)
    assert res["accuracy"] > 0.9 and res["balanced_accuracy"] > 0.9
    assert np.array(res["confusion"]).sum() == 200 and np.trace(res["confusion"]) > 180
    assert set(res["f1"]) == set(TARGET_REGIONS) and min(res["f1"].values()) > 0.8
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
    w1 = model.spk_w1[1, 2, :18].detach().numpy()
    np.testing.assert_allclose(emb[1]["input"][2], w1 @ model.spk_w2[1, :18].detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(emb[1]["output"][2], model.spk_out_w[1, :, 2].detach().numpy())
