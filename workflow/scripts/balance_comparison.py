"""balance_comparison: the loss-balance experiment's choice (validation trials) and its test
comparison of the multimodal model with the unimodal models (trained with the same balance, and
the best specialist of all balances) and the linear decoder (neds.evaluate.balance)."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

import pandas as pd  # noqa: E402

from neds.evaluate.balance import balance_markdown, per_seed, report, selection, specialists, targets  # noqa: E402
from neds.io.files import atomic_write  # noqa: E402
from neds.io.history import read_history  # noqa: E402
from neds.io.store import write_table  # noqa: E402


def last_val_score(path) -> float:
    """The last validation score of a training run's history.jsonl."""
    scores = read_history(path)["val_score"].dropna()
    if scores.empty:
        raise ValueError(f"{path} holds no validation score; rerun that pretraining")
    return float(scores.iloc[-1])


def main(snakemake):
    seeds = per_seed(pd.read_csv(snakemake.input.metrics, sep="\t"))
    pretrain = {v: last_val_score(p) for v, p in zip(snakemake.params.variants, snakemake.input.pretrain)}
    chosen = selection(seeds, pretrain)
    table = report(seeds, pd.read_csv(snakemake.input.main, sep="\t"))
    goals = targets(table, specialists(seeds))
    write_table(chosen, snakemake.output.selection)
    write_table(table, snakemake.output.table)
    write_table(goals, snakemake.output.targets)
    atomic_write(snakemake.output.markdown, balance_markdown(chosen, table, goals))


main(snakemake)
