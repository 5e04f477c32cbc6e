"""Trial exclusion rules, target encodings, scaling and splits."""

import numpy as np
import pandas as pd
import pytest

from neds.data.trials import (
    TrialCriteria,
    encode_block,
    encode_choice,
    minmax_scale,
    trial_exclusion,
    trial_split,
)


def good_trials(n=6):
    stim = np.arange(n, dtype=float) * 5 + 1
    return pd.DataFrame(
        {
            "stimOn_times": stim,
            "goCue_times": stim + 1e-4,
            "firstMovement_times": stim + 0.3,
            "feedback_times": stim + 0.8,
            "choice": np.tile([-1.0, 1.0], n)[:n],
            "feedbackType": np.ones(n),
            "probabilityLeft": np.full(n, 0.5),
        }
    )


def test_all_good_trials_kept():
    fail = trial_exclusion(good_trials())
    assert not fail.to_numpy().any()


@pytest.mark.parametrize(
    "column,value,rule",
    [
        ("stimOn_times", np.nan, "nan_stimOn_times"),
        ("choice", np.nan, "nan_choice"),
        ("feedback_times", np.nan, "nan_feedback_times"),
        ("probabilityLeft", np.nan, "nan_probabilityLeft"),
        ("firstMovement_times", np.nan, "nan_firstMovement_times"),
        ("feedbackType", np.nan, "nan_feedbackType"),
        ("choice", 0.0, "no_go"),
        ("probabilityLeft", 0.3, "invalid_probabilityLeft"),
    ],
)
def test_each_rule_excludes_only_its_trial(column, value, rule):
    trials = good_trials()
    trials.loc[2, column] = value
    fail = trial_exclusion(trials)
    assert fail[rule].tolist() == [False, False, True, False, False, False]
    assert fail.any(axis=1).tolist() == [False, False, True, False, False, False]


def test_reaction_time_and_feedback_delay_bounds():
    trials = good_trials()
    trials.loc[0, "firstMovement_times"] = trials.loc[0, "stimOn_times"] - 0.01  # RT < 0
    trials.loc[1, "firstMovement_times"] = trials.loc[1, "stimOn_times"] + 10.5  # RT > 10 s
    trials.loc[1, "feedback_times"] = trials.loc[1, "stimOn_times"] + 11.0
    trials.loc[3, "feedback_times"] = trials.loc[3, "goCue_times"] + 10.2  # feedback - goCue > 10 s
    trials.loc[4, "firstMovement_times"] = trials.loc[4, "stimOn_times"] + 9.9  # RT 9.9 s is allowed
    trials.loc[4, "feedback_times"] = trials.loc[4, "stimOn_times"] + 9.95
    fail = trial_exclusion(trials)
    assert fail["reaction_time"].tolist() == [True, True, False, False, False, False]
    assert fail["feedback_delay"].tolist() == [False, True, False, True, False, False]
    strict = trial_exclusion(trials, TrialCriteria(max_reaction_time_s=5.0))
    assert strict["reaction_time"].tolist() == [True, True, False, False, True, False]


def test_rules_combine_with_and_of_passes():
    """A trial failing only an early rule must be dropped too (the authors applied only the last mask)."""
    trials = good_trials()
    trials.loc[0, "stimOn_times"] = np.nan
    trials.loc[5, "choice"] = 0.0
    keep = ~trial_exclusion(trials).any(axis=1)
    assert keep.tolist() == [False, True, True, True, True, False]


def test_missing_column_is_a_clear_error():
    with pytest.raises(KeyError, match="feedbackType"):
        trial_exclusion(good_trials().drop(columns="feedbackType"))


def test_encodings():
    np.testing.assert_array_equal(encode_choice(np.array([-1.0, 1.0, 1.0])), [0, 1, 1])
    np.testing.assert_array_equal(encode_block(np.array([0.2, 0.5, 0.8, 0.8])), [0, 1, 2, 2])
    with pytest.raises(ValueError):
        encode_choice(np.array([0.0]))
    with pytest.raises(ValueError):
        encode_block(np.array([0.3]))


def test_minmax_scale():
    x = np.array([[2.0, 4.0], [6.0, np.nan]])
    scaled, lo, hi = minmax_scale(x)
    assert (lo, hi) == (2.0, 6.0)
    np.testing.assert_allclose(scaled[0], [0.0, 0.5])
    assert scaled[1, 0] == 1.0 and np.isnan(scaled[1, 1])
    const, _, _ = minmax_scale(np.full(4, 3.0))
    np.testing.assert_array_equal(const, 0.0)


def test_split_is_deterministic_disjoint_and_sized():
    a = trial_split("0a1b2c3d-0000-4000-8000-000000000001", 42, 301)
    b = trial_split("0a1b2c3d-0000-4000-8000-000000000001", 42, 301)
    np.testing.assert_array_equal(a, b)
    counts = {s: int((a == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 211, "val": 30, "test": 60}
    assert set(a) == {"train", "val", "test"}  # every trial in exactly one split
    other_eid = trial_split("0a1b2c3d-0000-4000-8000-000000000002", 42, 301)
    other_seed = trial_split("0a1b2c3d-0000-4000-8000-000000000001", 7, 301)
    assert (a != other_eid).any() and (a != other_seed).any()
    with pytest.raises(ValueError):
        trial_split("x", 0, 10, (0.5, 0.5, 0.5))
