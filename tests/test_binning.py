"""Binning counts on hand-made spikes, against a per-trial reference, and behaviour sampling."""

import numpy as np
import pytest

from neds.data.binning import bin_centres, bin_edges, bin_spikes, n_bins_for, sample_behaviour


def reference_bin(times, units, n_units, align, window, bin_size):
    """Per-trial, per-unit reference: explicit comparisons against the same edges."""
    edges = bin_edges(align, window, bin_size)
    out = np.zeros((len(align), edges.shape[1] - 1, n_units), dtype=np.int64)
    for k in range(len(align)):
        for j in range(edges.shape[1] - 1):
            sel = (times >= edges[k, j]) & (times < edges[k, j + 1])
            out[k, j] = np.bincount(units[sel], minlength=n_units)
    return out


def test_hand_made_counts_and_edges():
    # window [-0.1, 0.1) around t=1.0 with 0.05 s bins: edges 0.9, 0.95, 1.0, 1.05, 1.1
    align = np.array([1.0])
    edges = bin_edges(align, (-0.1, 0.1), 0.05)[0]
    times = np.array([0.85, edges[0], 0.93, edges[2], 1.0, 1.07, np.nextafter(edges[4], 0), edges[4]])
    units = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    counts = bin_spikes(times, units, 2, align, (-0.1, 0.1), 0.05)
    # 0.85 is before the window; a left edge is inside its bin, the window's right edge is not
    expected = np.array([[[1, 1], [0, 0], [1, 1], [1, 1]]])
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts, reference_bin(times, units, 2, align, (-0.1, 0.1), 0.05))


def test_matches_reference_with_overlapping_windows():
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 20, 5000))
    units = rng.integers(0, 7, times.size)
    align = np.array([1.0, 1.3, 5.0, 5.05, 12.0, 19.5])  # overlapping windows, one past the end
    got = bin_spikes(times, units, 7, align, (-0.5, 1.5), 0.02)
    np.testing.assert_array_equal(got, reference_bin(times, units, 7, align, (-0.5, 1.5), 0.02))
    # overlapping windows see the same spikes
    shift = int(round(0.3 / 0.02))
    np.testing.assert_array_equal(got[0, shift:], got[1, :-shift])


def test_chunking_does_not_change_counts(monkeypatch):
    import neds.data.binning as binning

    rng = np.random.default_rng(2)
    times = np.sort(rng.uniform(0, 100, 20000))
    units = rng.integers(0, 13, times.size)
    align = np.sort(rng.uniform(1, 98, 40))
    full = bin_spikes(times, units, 13, align, (-0.5, 1.5), 0.02)
    monkeypatch.setattr(binning, "_MAX_CELLS_PER_PASS", 100 * 13 * 3)  # 3 trials a pass
    np.testing.assert_array_equal(bin_spikes(times, units, 13, align, (-0.5, 1.5), 0.02), full)


def test_empty_inputs_and_errors():
    assert bin_spikes(np.array([]), np.array([], int), 3, np.array([1.0]), (-0.5, 1.5), 0.02).shape == (1, 100, 3)
    with pytest.raises(ValueError, match="sorted"):
        bin_spikes(np.array([2.0, 1.0, 1.5]), np.array([0, 0, 0]), 1, np.array([1.5]), (-0.5, 1.5), 0.02)
    with pytest.raises(ValueError, match="NaN"):
        bin_spikes(np.array([1.0]), np.array([0]), 1, np.array([np.nan]), (-0.5, 1.5), 0.02)
    with pytest.raises(ValueError, match="multiple"):
        n_bins_for((-0.5, 1.5), 0.03)


def test_bin_centres():
    c = bin_centres((-0.5, 1.5), 0.02)
    assert c.shape == (100,)
    assert c[0] == pytest.approx(-0.49) and c[-1] == pytest.approx(1.49)


def test_sample_behaviour_linear_and_nan():
    t = np.arange(0, 10, 0.1)
    v = 2.0 * t + 1.0
    out = sample_behaviour(t, v, np.array([2.0]), (-0.5, 1.5), 0.02)
    np.testing.assert_allclose(out[0], 2.0 * (2.0 + bin_centres((-0.5, 1.5), 0.02)) + 1.0)
    # a NaN sample spoils only the bins whose interpolation uses it
    v2 = v.copy()
    v2[30] = np.nan  # t = 3.0
    out2 = sample_behaviour(t, v2, np.array([2.0]), (-0.5, 1.5), 0.02)
    q = 2.0 + bin_centres((-0.5, 1.5), 0.02)
    assert np.all(np.isnan(out2[0][(q > 2.9) & (q < 3.1)]))
    assert np.all(np.isfinite(out2[0][(q < 2.89) | (q > 3.11)]))
    # outside the recorded span is NaN, not the clamped edge value
    out3 = sample_behaviour(t, v, np.array([9.0]), (-0.5, 1.5), 0.02)
    assert np.isnan(out3[0, -1]) and np.isfinite(out3[0, 0])
