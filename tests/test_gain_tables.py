"""The gain of pretraining by amount of data (scaling, finetune_trials): pairing each fine-tuned
model with the model trained from scratch at its seed, the means over sessions and seeds, the
page and the figure (planted numbers)."""

import numpy as np
import pandas as pd
import pytest

from neds.evaluate.gain import gain_markdown, over_seeds, paired, per_seed
from neds.plots import plot_data_gain
from neds.vocab import NEDS_FINETUNED, NEDS_SCRATCH, SELECTION_METRICS

SEEDS = {42: -0.02, 43: 0.0, 44: 0.02}
EIDS = {"a": 0.1, "b": -0.1}


def _row(variant, method, eid, value, split="test"):
    return {"variant": variant, "method": method, "eid": eid, "split": split} | dict.fromkeys(SELECTION_METRICS, value)


def _scaling() -> tuple[pd.DataFrame, dict]:
    """Fine-tuned at 1 and 4 pretraining sessions (0.4 + 0.05 k), scratch-only variants at 0.5."""
    rows, variants = [], {}
    for seed, ds in SEEDS.items():
        for k in (1, 4):
            name = f"sessions_{k}_seed_{seed}"
            variants[name] = {"level": k, "seed": seed}
            rows += [_row(name, NEDS_FINETUNED, eid, 0.4 + 0.05 * k + ds + de) for eid, de in EIDS.items()]
            rows += [_row(name, NEDS_FINETUNED, eid, 9.0, split="val") for eid in EIDS]  # not read
        name = f"scratch_seed_{seed}"
        variants[name] = {"level": None, "seed": seed}
        # the scratch model's seed effect differs from the fine-tuned one's: the pairing is by seed
        rows += [_row(name, NEDS_SCRATCH, eid, 0.5 - ds + de) for eid, de in EIDS.items()]
    return pd.DataFrame(rows), variants


def test_scaling_pairs_each_fine_tuned_model_with_the_scratch_model_of_its_seed():
    metrics, variants = _scaling()
    pairs = paired(metrics, variants)
    assert len(pairs) == 2 * 3 * 2  # levels x seeds x sessions, test trials only
    row = pairs[(pairs["variant"] == "sessions_4_seed_44") & (pairs["eid"] == "a")].iloc[0]
    assert row["block_acc"] == pytest.approx(0.6 + 0.02 + 0.1)
    assert row["block_acc_scratch"] == pytest.approx(0.5 - 0.02 + 0.1)

    seeds = per_seed(pairs)
    one = seeds[(seeds["level"] == 4) & (seeds["seed"] == 44) & (seeds["metric"] == "wheel_r2")].iloc[0]
    assert one["sessions"] == 2 and one["gain"] == pytest.approx(0.6 + 0.02 - (0.5 - 0.02))

    table = over_seeds(seeds)
    assert list(table["metric"].unique()) == list(SELECTION_METRICS)  # metric order, then level
    r = table[(table["metric"] == "bps_unit_mean") & (table["level"] == 1)].iloc[0]
    assert r["finetuned_mean"] == pytest.approx(0.45) and r["scratch_mean"] == pytest.approx(0.5)
    assert r["gain_mean"] == pytest.approx(-0.05) and r["gain_percent"] == pytest.approx(-10.0)
    # gains per seed -0.09, -0.05, -0.01
    assert r["gain_sd"] == pytest.approx(np.std([-0.09, -0.05, -0.01], ddof=1))
    assert r["gain_positive_seeds"] == 0 and r["seeds"] == 3 and r["sessions"] == 2
    r4 = table[(table["metric"] == "bps_unit_mean") & (table["level"] == 4)].iloc[0]
    assert r4["gain_mean"] == pytest.approx(0.1) and r4["gain_positive_seeds"] == 3

    page = gain_markdown(table, "number of pretraining sessions", "pretraining sessions")
    assert (
        "| bits per spike (mean over units) | 4 | 0.600 ± 0.020 | 0.500 ± 0.020 | 0.100 ± 0.040 (+20.0 %) | 3 of 3 |"
        in page
    )


def test_a_variant_with_its_own_scratch_model_is_paired_with_it():
    """finetune_trials: the scratch model of the same variant (same fraction of trials)."""
    rows, variants = [], {}
    for f, value in ((0.5, 0.3), (1.0, 0.5)):
        name = f"fraction_{f:g}_seed_42"
        variants[name] = {"level": f, "seed": 42}
        rows += [_row(name, NEDS_FINETUNED, "a", value + 0.1), _row(name, NEDS_SCRATCH, "a", value)]
    pairs = paired(pd.DataFrame(rows), variants).set_index("level")
    assert pairs.loc[0.5, "choice_acc_scratch"] == pytest.approx(0.3)
    assert pairs.loc[1.0, "choice_acc_scratch"] == pytest.approx(0.5)
    table = over_seeds(per_seed(pairs.reset_index()))
    assert np.allclose(table["gain_mean"], 0.1) and table["gain_sd"].isna().all()  # one seed: no s.d.


def test_a_metric_missing_in_one_model_leaves_that_session_out_of_its_means():
    metrics, variants = _scaling()
    gap = (metrics["variant"] == "scratch_seed_43") & (metrics["eid"] == "b")
    metrics.loc[gap, "whisker_r2"] = np.nan
    seeds = per_seed(paired(metrics, variants))
    whisker = seeds[(seeds["seed"] == 43) & (seeds["metric"] == "whisker_r2")]
    assert (whisker["sessions"] == 1).all()
    assert whisker["finetuned"].to_numpy() == pytest.approx([0.45 + 0.1, 0.6 + 0.1])  # session a alone
    other = seeds[(seeds["seed"] == 43) & (seeds["metric"] == "wheel_r2")]
    assert (other["sessions"] == 2).all()


def test_a_fine_tuned_model_without_a_scratch_reference_is_refused():
    metrics, variants = _scaling()
    no_ref = metrics[metrics["variant"] != "scratch_seed_43"]
    with pytest.raises(ValueError, match=r"sessions_1_seed_43.*no model trained from scratch"):
        paired(no_ref, {k: v for k, v in variants.items() if k != "scratch_seed_43"})
    with pytest.raises(ValueError, match="not variants of the experiment"):
        paired(metrics, {k: v for k, v in variants.items() if k != "sessions_1_seed_42"})
    one_session = metrics[~((metrics["variant"] == "scratch_seed_42") & (metrics["eid"] == "b"))]
    with pytest.raises(ValueError, match=r"no from-scratch score for \[\('scratch_seed_42', 'b'\)\]"):
        paired(one_session, variants)


def test_gain_figure_has_a_panel_per_metric_and_one_for_the_gain():
    metrics, variants = _scaling()
    table = over_seeds(per_seed(paired(metrics, variants)))
    fig = plot_data_gain(table, "scaling", "pretraining sessions")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(SELECTION_METRICS) + 1
    assert [t.get_text() for t in visible[0].get_xticklabels()] == ["1", "4"]
    assert visible[-1].get_title().startswith("gain of pretraining")
