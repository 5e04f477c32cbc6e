"""The peers comparison's tables (neds.evaluate.peers): seed means, the gaps beside the paper's,
the training costs and the Markdown page, on planted numbers."""

import json

import numpy as np
import pandas as pd
import pytest

from neds.evaluate.peers import (
    COMPARED,
    PAPER_GAPS,
    comparison,
    comparison_markdown,
    per_session_means,
    relative_gaps,
    training_costs,
)
from neds.vocab import LINEAR, NDT2, NEDS_FINETUNED, NEDS_SCRATCH, POYO_PLUS

EIDS = ("a", "b")
SEEDS = ("seed_1", "seed_2", "seed_3")
# planted choice accuracy per (method, seed): NEDS ahead of POYO+ on two seeds of three
CHOICE = {
    NEDS_FINETUNED: (0.80, 0.82, 0.78),
    POYO_PLUS: (0.75, 0.80, 0.79),
    NDT2: (0.60, 0.62, 0.64),
}


@pytest.fixture
def peers():
    rows = []
    for method, values in CHOICE.items():
        for seed, value in zip(SEEDS, values):
            for i, eid in enumerate(EIDS):
                rows.append(
                    {
                        "variant": seed,
                        "method": method,
                        "eid": eid,
                        # sessions differ by +-0.1 around the seed's value: the seed mean is the value
                        "choice_acc": value + (0.1 if i else -0.1),
                        "block_acc": 0.5,
                        "wheel_r2": 0.4,
                        "whisker_r2": 0.6,
                        "bps_unit_mean": 0.2 if method == NEDS_FINETUNED else np.nan,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def main():
    rows = [
        {"method": m, "eid": e, "choice_acc": v, "block_acc": 0.4, "wheel_r2": 0.3, "whisker_r2": 0.5}
        for m, v in ((NEDS_FINETUNED, 0.9), (NEDS_SCRATCH, 0.7), (LINEAR, 0.65))
        for e in EIDS
    ]
    return pd.DataFrame(rows)


def test_compared_methods_are_seed_means_and_others_come_from_the_main_run(peers, main):
    table = comparison(peers, main).set_index("method")
    assert list(table.index) == [*COMPARED, NEDS_SCRATCH, LINEAR]  # the main run's NEDS row is replaced
    assert table.loc[NEDS_FINETUNED, "choice_acc_mean"] == pytest.approx(np.mean(CHOICE[NEDS_FINETUNED]))
    assert table.loc[NEDS_FINETUNED, "choice_acc_sem"] == pytest.approx(
        np.std(CHOICE[NEDS_FINETUNED], ddof=1) / np.sqrt(3)
    )
    assert table.loc[NEDS_FINETUNED, "seeds"] == 3 and table.loc[NEDS_FINETUNED, "sessions"] == 2
    assert np.isnan(table.loc[POYO_PLUS, "bps_unit_mean_mean"])  # POYO+ does not encode
    assert table.loc[LINEAR, "choice_acc_mean"] == pytest.approx(0.65)
    assert table.loc[LINEAR, "seeds"] == 1 and np.isnan(table.loc[LINEAR, "choice_acc_sem"])


def test_per_session_means_average_the_seeds_of_each_session(peers, main):
    methods = per_session_means(peers, main)
    neds = methods[methods["method"] == NEDS_FINETUNED].set_index("eid")
    assert neds.loc["a", "choice_acc"] == pytest.approx(np.mean(CHOICE[NEDS_FINETUNED]) - 0.1)
    assert set(methods["method"]) == {*COMPARED, NEDS_SCRATCH, LINEAR}
    assert len(methods) == 5 * len(EIDS)


def test_gaps_are_relative_to_the_peer_and_count_the_seeds_where_neds_is_ahead(peers):
    gaps = relative_gaps(peers).set_index(["peer", "metric"])
    g = gaps.loc[(POYO_PLUS, "choice_acc")]
    neds, poyo = np.mean(CHOICE[NEDS_FINETUNED]), np.mean(CHOICE[POYO_PLUS])
    assert g["gap_percent"] == pytest.approx(100 * (neds - poyo) / poyo)
    assert (g["seeds_ahead"], g["seeds"]) == (2, 3)  # 0.80 > 0.75, 0.82 > 0.80, 0.78 < 0.79
    assert (g["paper_low"], g["paper_high"]) == PAPER_GAPS[POYO_PLUS]
    assert gaps.loc[(NDT2, "choice_acc"), "seeds_ahead"] == 3
    assert gaps.loc[(NDT2, "block_acc"), "gap_percent"] == pytest.approx(0.0)


def test_costs_and_markdown(peers, main, tmp_path):
    def summary(name, epochs, seconds):
        path = tmp_path / f"{name}.json"
        model = {"n_shared_parameters": 1000, "n_parameters": 1500}
        path.write_text(
            json.dumps(
                {"epochs": epochs, "steps": 10 * epochs, "n_train_trials": 100, "train_seconds": seconds}
                | {"model": model, "device": "cpu"}
            )
        )
        return path

    runs = {
        m: {"pretrain": [summary(f"{m}_pre", 30, 600)], "finetune": [summary(f"{m}_{i}", 60, 60 * i) for i in (1, 2)]}
        for m in COMPARED
    }
    costs = training_costs(runs).set_index("method")
    assert costs.loc[POYO_PLUS, "pretrain_minutes"] == pytest.approx(10.0)
    assert costs.loc[POYO_PLUS, "finetune_minutes"] == pytest.approx(1.5)
    assert costs.loc[NDT2, "finetune_epochs"] == 60 and costs.loc[NDT2, "n_finetuned"] == 2
    page = comparison_markdown(comparison(peers, main), relative_gaps(peers), costs.reset_index())
    assert "POYO+ fine-tuned" in page and "NDT2 fine-tuned" in page and "+1 to +13" in page and "+11 to +37" in page
    assert "2 of 3" in page and "10.0" in page
    assert "Against NDT2 fine-tuned: NEDS is ahead on 1 of 4 decoding targets" in page  # choice only; the rest tie
    with pytest.raises(ValueError, match="no fine-tuned"):
        training_costs({NDT2: {"pretrain": [], "finetune": []}})
