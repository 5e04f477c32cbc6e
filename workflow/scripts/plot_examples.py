"""plot_examples: one held-out session's example unit (PSTHs, single trials) and decoded behaviour."""

from pathlib import Path

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.plots import plot_examples, save_figure  # noqa: E402


def main(snakemake):
    fig = plot_examples(
        snakemake.input.store,
        Path(snakemake.input.predictions) / f"{snakemake.params.method}.zarr",
        n_trials=snakemake.params.n_trials,
        smooth_bins=snakemake.params.smooth_bins,
    )
    save_figure(fig, snakemake.output.png, snakemake.output.svg)


main(snakemake)
