"""exp_summarize: an experiment's per-session scores -> metrics.tsv, summary.tsv and its figure."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.plots import plot_experiment, save_figure  # noqa: E402
from neds.stages import run_summarize_experiment  # noqa: E402


def main(snakemake):
    files = {v: list(snakemake.input[v]) for v in snakemake.params.variants}
    run_summarize_experiment(files, snakemake.output.metrics, snakemake.output.summary)
    fig = plot_experiment(snakemake.output.metrics, snakemake.wildcards.experiment)
    save_figure(fig, snakemake.output.figure, snakemake.output.figure_svg)


main(snakemake)
