"""plot_probing: unit embeddings by region, the probe's confusion matrix and accuracy per feature set."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.plots import plot_probing, save_figure  # noqa: E402


def main(snakemake):
    fig = plot_probing(snakemake.input.probe, snakemake.input.embeddings, feature_set=snakemake.params.feature_set)
    save_figure(fig, snakemake.output.png, snakemake.output.svg)


main(snakemake)
