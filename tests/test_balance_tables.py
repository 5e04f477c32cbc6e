"""The loss-balance experiment's tables: choice on validation trials, test report over seeds,
targets against the unimodal models and the linear decoder (planted numbers)."""

import numpy as np
import pandas as pd
import pytest

from neds.evaluate.balance import balance_markdown, per_seed, report, selection, specialists, targets
from neds.vocab import LINEAR, NEDS_FINETUNED, NEDS_SCRATCH, SELECTION_METRICS, UNIMODAL_DECODING, UNIMODAL_ENCODING

EIDS = ("a", "b")
# planted value of every metric, per (balance, method); seeds shift it by +-0.01, sessions by +-0.02
PLANTED = {
    ("weights", NEDS_FINETUNED): 0.50,
    ("weights", NEDS_SCRATCH): 0.45,
    ("null", NEDS_FINETUNED): 0.60,
    ("null", NEDS_SCRATCH): 0.40,
    ("weights", UNIMODAL_DECODING): 0.55,
    ("null", UNIMODAL_DECODING): 0.58,
    ("weights", UNIMODAL_ENCODING): 0.30,
    ("null", UNIMODAL_ENCODING): 0.65,
}


def _metrics() -> pd.DataFrame:
    rows = []
    for (balance, method), value in PLANTED.items():
        for seed, ds in ((42, -0.01), (43, 0.01)):
            for eid, de in zip(EIDS, (-0.02, 0.02)):
                for split, dsplit in (("val", 0.0), ("test", -0.1)):
                    row = {"variant": f"{balance}_seed_{seed}", "method": method, "eid": eid, "split": split}
                    for m in SELECTION_METRICS:
                        is_enc = m == "bps_unit_mean"
                        if (method == UNIMODAL_ENCODING and not is_enc) or (method == UNIMODAL_DECODING and is_enc):
                            row[m] = np.nan
                        else:
                            row[m] = value + ds + de + dsplit
                    rows.append(row)
    return pd.DataFrame(rows)


def test_choice_reads_validation_scores_of_finetuned_scratch_and_pretrained():
    seeds = per_seed(_metrics())
    assert len(seeds) == len(PLANTED) * 2 * 2  # balance x method x seed x split
    pretrain = {"weights_seed_42": 0.30, "weights_seed_43": 0.32, "null_seed_42": 0.40, "null_seed_43": 0.42}
    chosen = selection(seeds, pretrain)
    assert list(chosen["balance"]) == ["null", "weights"]
    null = chosen.iloc[0]
    assert null["finetuned_val_score"] == pytest.approx(0.60) and null["scratch_val_score"] == pytest.approx(0.40)
    assert null["pretrain_val_score"] == pytest.approx(0.41)
    assert null["val_score"] == pytest.approx((0.60 + 0.40 + 0.41) / 3)
    assert chosen.iloc[1]["val_score"] == pytest.approx((0.50 + 0.45 + 0.31) / 3)
    # the test trials do not enter the choice
    shifted = _metrics()
    shifted.loc[(shifted["split"] == "test") & shifted["variant"].str.startswith("weights"), SELECTION_METRICS] = 9.0
    assert list(selection(per_seed(shifted), pretrain)["balance"]) == ["null", "weights"]


def test_report_and_targets_on_test_trials():
    main = pd.DataFrame(
        [{"method": LINEAR, "eid": e, "split": "test", **{m: 0.52 for m in SELECTION_METRICS}} for e in EIDS]
    )
    table = report(per_seed(_metrics()), main)
    row = table.set_index(["balance", "method"]).loc[("null", NEDS_FINETUNED)]
    assert row["seeds"] == 2 and row["choice_acc_mean"] == pytest.approx(0.50)  # 0.60 - 0.1 on test
    assert row["choice_acc_sd"] == pytest.approx(np.std([0.49, 0.51], ddof=1))
    assert table.set_index(["balance", "method"]).loc[("-", LINEAR), "wheel_r2_mean"] == pytest.approx(0.52)
    goals = targets(table).set_index(["balance", "metric", "reference"])
    # null on test: fine-tuned 0.50 >= decoding-only 0.48 (met); bps 0.50 < encoding-only 0.55 (not met)
    assert goals.loc[("null", "choice_acc", UNIMODAL_DECODING), "met"]
    assert not goals.loc[("null", "bps_unit_mean", UNIMODAL_ENCODING), "met"]
    assert goals.loc[("null", "bps_unit_mean", UNIMODAL_ENCODING), "difference"] == pytest.approx(0.50 - 0.55)
    assert not goals.loc[("null", "wheel_r2", LINEAR), "met"]  # 0.50 < 0.52
    assert goals.loc[("weights", "bps_unit_mean", UNIMODAL_ENCODING), "met"]  # 0.40 >= 0.20
    # the gain of pretraining on every metric: null fine-tuned 0.50 against its scratch 0.30
    gains = goals.xs(NEDS_SCRATCH, level="reference")
    assert len(gains) == 2 * len(SELECTION_METRICS) and gains["met"].all()
    assert gains.loc[("null", "block_acc"), "difference"] == pytest.approx(0.20)
    pretrain = {"weights_seed_42": 0.3, "null_seed_42": 0.3}
    page = balance_markdown(selection(per_seed(_metrics()), pretrain), table, targets(table))
    assert "Chosen: `null` (mean validation score 0.433)" in page
    assert "| null | bps_unit_mean | unimodal_encoding | null | 0.500 | 0.550 | -0.050 | no |" in page


def test_targets_against_the_best_specialist_chosen_on_validation_trials():
    """A balance whose own unimodal models are weak is also set against the unimodal models of
    the balance under which they score highest on the validation trials."""
    seeds = per_seed(_metrics())
    best = specialists(seeds)
    assert best == {UNIMODAL_DECODING: "null", UNIMODAL_ENCODING: "null"}  # 0.58 > 0.55, 0.65 > 0.30
    # the test trials do not enter the choice of the specialist
    shifted = _metrics()
    weak = (shifted["split"] == "test") & shifted["variant"].str.startswith("null")
    shifted.loc[weak & shifted["method"].isin([UNIMODAL_DECODING, UNIMODAL_ENCODING]), SELECTION_METRICS] = 0.0
    assert specialists(per_seed(shifted)) == best
    table = report(seeds)
    goals = targets(table, best)
    own = goals[goals["reference_balance"] == goals["balance"]]
    assert len(own) == len(targets(table))  # the rows against the same balance's models are all kept
    extra = goals[(goals["reference_balance"] == "null") & (goals["balance"] == "weights")]
    assert set(extra["reference"]) == {UNIMODAL_DECODING, UNIMODAL_ENCODING} and len(extra) == 5
    # weights fine-tuned on test: 0.40, against the best decoding-only model (null's) 0.48
    row = extra.set_index("metric").loc["choice_acc"]
    assert row["reference_value"] == pytest.approx(0.48) and row["difference"] == pytest.approx(-0.08)
    assert not row["met"]
    assert not (goals[goals["balance"] == "null"]["reference_balance"] == "weights").any()
    page = balance_markdown(selection(seeds, {"weights_seed_42": 0.3, "null_seed_42": 0.3}), table, goals)
    assert "| weights | choice_acc | unimodal_decoding | null | 0.400 | 0.480 | -0.080 | no |" in page
