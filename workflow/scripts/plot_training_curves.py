"""plot_training_curves: training loss and validation score per epoch of every training run."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.plots import plot_training_curves, save_figure  # noqa: E402
from neds.vocab import STAGES  # noqa: E402


def main(snakemake):
    runs = {}
    for kind in (k for k in STAGES if k in snakemake.input.keys()):  # the rule's inputs are named by stage
        paths = snakemake.input[kind]
        runs[kind] = [paths] if isinstance(paths, str) else list(paths)  # one file or a list
    save_figure(plot_training_curves(runs), snakemake.output.png, snakemake.output.svg)


main(snakemake)
