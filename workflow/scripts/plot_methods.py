"""plot_methods: encoding (bits per spike) and decoding scores of every method, per held-out session."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.plots import plot_methods_decoding, plot_methods_encoding, save_figure  # noqa: E402


def main(snakemake):
    save_figure(
        plot_methods_encoding(snakemake.input.metrics), snakemake.output.encoding, snakemake.output.encoding_svg
    )
    save_figure(
        plot_methods_decoding(snakemake.input.metrics), snakemake.output.decoding, snakemake.output.decoding_svg
    )


main(snakemake)
