"""data_gain: the gain of pretraining at each amount of data of an experiment (scaling,
finetune_trials) over seeds -> gain.tsv, gain.md and its figure (neds.evaluate.gain)."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

import pandas as pd  # noqa: E402

from neds.evaluate.gain import gain_markdown, over_seeds, paired, per_seed  # noqa: E402
from neds.io.files import atomic_write  # noqa: E402
from neds.io.store import write_table  # noqa: E402
from neds.plots import plot_data_gain, save_figure  # noqa: E402


def main(snakemake):
    metrics = pd.read_csv(snakemake.input.metrics, sep="\t")
    p = snakemake.params
    table = over_seeds(per_seed(paired(metrics, p.variants, p.split)))
    write_table(table, snakemake.output.table)
    atomic_write(snakemake.output.markdown, gain_markdown(table, p.title, p.axis_label))
    save_figure(plot_data_gain(table, p.title, p.axis_label), snakemake.output.png, snakemake.output.svg)


main(snakemake)
