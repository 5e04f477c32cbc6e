"""plot_pretraining_gain: pretrained then fine-tuned vs trained from scratch, per held-out session."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.plots import plot_pretraining_gain, save_figure  # noqa: E402


def main(snakemake):
    fig = plot_pretraining_gain(
        snakemake.input.metrics,
        snakemake.input.gain,
        pretrained=snakemake.params.pretrained,
        scratch=snakemake.params.scratch,
    )
    save_figure(fig, snakemake.output.png, snakemake.output.svg)


main(snakemake)
