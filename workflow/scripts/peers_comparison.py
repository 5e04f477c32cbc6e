"""peers_comparison: NEDS fine-tuned vs POYO+ and NDT2 (the peers experiment, over seeds) beside
the main run's other methods: tables, Markdown page and methods figures (neds.evaluate.peers)."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

import pandas as pd  # noqa: E402

from neds.evaluate.peers import (  # noqa: E402
    comparison,
    comparison_markdown,
    per_session_means,
    relative_gaps,
    training_costs,
)
from neds.io.files import atomic_write  # noqa: E402
from neds.io.store import write_table  # noqa: E402
from neds.plots import plot_methods_decoding, plot_methods_encoding, save_figure  # noqa: E402


def main(snakemake):
    peers = pd.read_csv(snakemake.input.peers, sep="\t")
    main_run = pd.read_csv(snakemake.input.main, sep="\t")
    methods = per_session_means(peers, main_run)
    table, gaps = comparison(peers, main_run), relative_gaps(peers)
    costs = training_costs(snakemake.params.runs)
    write_table(methods, snakemake.output.methods)
    write_table(table, snakemake.output.table)
    write_table(gaps, snakemake.output.gaps)
    write_table(costs, snakemake.output.costs)
    atomic_write(snakemake.output.markdown, comparison_markdown(table, gaps, costs))
    save_figure(plot_methods_decoding(methods), snakemake.output.decoding, snakemake.output.decoding_svg)
    save_figure(plot_methods_encoding(methods), snakemake.output.encoding, snakemake.output.encoding_svg)


main(snakemake)
