"""The fine-tuning-recipe experiment's tables: choice on validation trials, test comparison with
the model trained from scratch, and the per-session check against the seeds' spread (planted
numbers)."""

import numpy as np
import pandas as pd
import pytest

from neds.evaluate.recipe import comparison, per_seed, recipe_markdown, selection, sessions
from neds.vocab import NEDS_FINETUNED, NEDS_SCRATCH, SELECTION_METRICS

RECIPES = ("paper", "frozen")
EIDS = ("a", "b")
SEEDS = {42: -0.01, 43: 0.0, 44: 0.01}
# planted value of every metric per (variant option, method), per split; session b is offset
PLANTED = {("paper", NEDS_FINETUNED): 0.50, ("frozen", NEDS_FINETUNED): 0.60, ("scratch", NEDS_SCRATCH): 0.55}
SESSION = {"a": 0.05, "b": -0.05}


def _metrics() -> pd.DataFrame:
    rows = []
    for (option, method), value in PLANTED.items():
        for seed, ds in SEEDS.items():
            for eid in EIDS:
                for split, dsplit in (("val", 0.0), ("test", -0.1)):
                    # 'frozen' is much worse than scratch on session b (its seeds spread little)
                    de = -0.2 if (option, eid) == ("frozen", "b") else SESSION[eid]
                    row = {"variant": f"{option}_seed_{seed}", "method": method, "eid": eid, "split": split}
                    rows.append(row | {m: value + ds + de + dsplit for m in SELECTION_METRICS})
    return pd.DataFrame(rows)


def test_choice_comparison_and_sessions():
    metrics = _metrics()
    seeds = per_seed(metrics, RECIPES)
    chosen = selection(seeds)
    # validation, mean over sessions: paper 0.50; frozen (0.65 + 0.40) / 2 = 0.525
    assert list(chosen["recipe"]) == ["frozen", "paper"] and "scratch" not in set(chosen["recipe"])
    assert chosen.iloc[0]["val_score"] == pytest.approx(0.525) and chosen.iloc[0]["seeds"] == 3
    # the test trials do not enter the choice
    shifted = metrics.copy()
    shifted.loc[(shifted["split"] == "test") & shifted["variant"].str.startswith("paper"), SELECTION_METRICS] = 9.0
    assert list(selection(per_seed(shifted, RECIPES))["recipe"]) == ["frozen", "paper"]

    table = comparison(seeds).set_index("recipe")
    assert table.loc["scratch", "bps_unit_mean_mean"] == pytest.approx(0.45)
    assert table.loc["paper", "bps_unit_mean_mean"] == pytest.approx(0.40)
    assert table.loc["paper", "bps_unit_mean_sd"] == pytest.approx(np.std([-0.01, 0.0, 0.01], ddof=1))
    assert table.loc["paper", "choice_acc_gain"] == pytest.approx(-0.05)
    assert table.loc["paper", "choice_acc_gain_percent"] == pytest.approx(-100 * 0.05 / 0.45)
    assert np.isnan(table.loc["scratch", "choice_acc_gain_percent"])

    per_session = sessions(metrics, RECIPES).set_index(["recipe", "eid", "metric"])
    frozen_b = per_session.loc[("frozen", "b", "block_acc")]
    assert frozen_b["difference"] == pytest.approx(0.60 - 0.2 - (0.55 - 0.05))  # paired by seed: the offsets cancel
    assert frozen_b["spread"] == pytest.approx(0.0, abs=1e-9) and frozen_b["worse_than_spread"]
    assert not per_session.loc[("frozen", "a", "block_acc"), "worse_than_spread"]  # 0.65 vs 0.60: better

    page = recipe_markdown(chosen, comparison(seeds), sessions(metrics, RECIPES))
    assert "Chosen: `frozen` (mean validation score 0.525)." in page
    assert "| paper | 3 | 0.400 ± 0.010 (-11.1 %) |" in page
    assert "| frozen | b | block_acc | -0.100 | 0.000 |" in page
