"""Metrics on hand-computed cases."""

import numpy as np
import pytest

from neds.evaluate.metrics import (
    accuracy,
    balanced_accuracy,
    bits_per_spike,
    poisson_deviance_explained,
    psth_r2,
    r2_score,
    single_trial_r2,
)

LN2 = np.log(2)


def two_units():
    # 1 trial, 2 bins, 2 units. Unit 0: counts (2, 0), predicted (2, 0.5), null mean 1 per bin.
    # Unit 1: counts (3, 3), predicted exactly its mean (no gain over the null), 6 spikes.
    counts = np.array([[[2, 3], [0, 3]]], dtype=float)
    rate = np.array([[[2.0, 3.0], [0.5, 3.0]]])
    return counts, rate


def test_bits_per_spike_both_definitions_by_hand():
    counts, rate = two_units()
    # LL(model) - LL(null) of unit 0 = (2 ln2 - 2 - 0.5) - (0 - 1 - 1) = 2 ln2 - 0.5
    gain0 = 2 * LN2 - 0.5
    per_unit = bits_per_spike(counts, rate)
    np.testing.assert_allclose(per_unit, [gain0 / (2 * LN2), 0.0], atol=1e-12)
    assert np.nanmean(per_unit) == pytest.approx(gain0 / (4 * LN2))  # bps_unit_mean: 0.3197
    assert bits_per_spike(counts, rate, pooled=True) == pytest.approx(gain0 / (8 * LN2))  # bps_pooled: 0.1598


def test_bits_per_spike_edge_cases():
    counts = np.zeros((2, 3, 2))
    counts[0, 0, 1] = 1
    rate = np.full(counts.shape, 0.2)
    bps = bits_per_spike(counts, rate)
    assert np.isnan(bps[0]) and np.isfinite(bps[1])  # a unit without spikes is undefined, not 0
    assert np.isnan(bits_per_spike(np.zeros((1, 2, 1)), np.ones((1, 2, 1)), pooled=True))
    # the null model itself scores exactly 0
    c = np.random.default_rng(0).poisson(1.0, (5, 4, 3)).astype(float)
    np.testing.assert_allclose(bits_per_spike(c, np.broadcast_to(c.mean((0, 1)), c.shape)), 0.0, atol=1e-12)
    with pytest.raises(ValueError):
        bits_per_spike(np.zeros((2, 3)), np.zeros((2, 3)))


def test_poisson_deviance_explained_by_hand():
    counts, rate = two_units()
    # unit 0: D(model) = 2 * [0 + 0.5] = 1; D(null) = 2 * [(2 ln2 - 1) + 1] = 4 ln2
    np.testing.assert_allclose(poisson_deviance_explained(counts, rate), [1 - 1 / (4 * LN2), np.nan])
    perfect = poisson_deviance_explained(counts[:, :, :1], np.maximum(counts[:, :, :1], 1e-12))
    assert perfect[0] == pytest.approx(1.0)


def test_r2_scores_by_hand():
    assert r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(1 - 1 / 2)
    assert np.isnan(r2_score([2.0, 2.0], [1.0, 3.0]))  # constant target
    counts = np.array([[[0.0], [2.0]], [[2.0], [4.0]]])  # (2 trials, 2 bins, 1 unit)
    rate = np.array([[[1.0], [3.0]], [[1.0], [3.0]]])
    # single trial: SSE = 1+1+1+1 = 4, SST around the mean 2: 4+0+0+4 = 8 -> 0.5
    np.testing.assert_allclose(single_trial_r2(counts, rate), [0.5])
    # PSTH over two conditions, one trial each: the PSTHs are the trials themselves -> same 0.5
    np.testing.assert_allclose(psth_r2(counts, rate, np.array(["a", "b"])), [0.5])
    # one condition: observed PSTH (1, 3) equals the predicted one -> 1
    np.testing.assert_allclose(psth_r2(counts, rate, np.array(["a", "a"])), [1.0])


def test_classification_scores_by_hand():
    y, p = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    assert accuracy(y, p) == 0.75
    assert balanced_accuracy(y, p) == 0.5  # recall 1 on class 0, 0 on class 1
    assert np.isnan(accuracy(np.array([]), np.array([])))
