"""recipe_comparison: the fine-tuning-recipe experiment's choice (validation trials) and its test
comparison of each fine-tuned model with the model trained from scratch (neds.evaluate.recipe)."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

import pandas as pd  # noqa: E402

from neds.evaluate.recipe import comparison, per_seed, recipe_markdown, selection, sessions  # noqa: E402
from neds.io.files import atomic_write  # noqa: E402
from neds.io.store import write_table  # noqa: E402


def main(snakemake):
    metrics = pd.read_csv(snakemake.input.metrics, sep="\t")
    recipes = snakemake.params.recipes
    seeds = per_seed(metrics, recipes)
    chosen, table, per_session = selection(seeds), comparison(seeds), sessions(metrics, recipes)
    write_table(chosen, snakemake.output.selection)
    write_table(table, snakemake.output.table)
    write_table(per_session, snakemake.output.sessions)
    atomic_write(snakemake.output.markdown, recipe_markdown(chosen, table, per_session))


main(snakemake)
