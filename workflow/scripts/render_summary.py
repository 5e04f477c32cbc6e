"""render_summary: the summary and pretraining-gain tables as one HTML page for the report."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.evaluate.tables import summary_html  # noqa: E402
from neds.io.files import atomic_write  # noqa: E402


def main(snakemake):
    atomic_write(snakemake.output.html, summary_html(snakemake.input.summary, snakemake.input.gain))


main(snakemake)
