"""render_summary: the summary and pretraining-gain tables as one HTML page for the report."""

from pathlib import Path

from neds.stages import log_to_file

log_to_file(snakemake.log[0])  # noqa: F821 (first, so that import errors reach the log)

from neds.plots import summary_html  # noqa: E402


def main(snakemake):
    out = Path(snakemake.output.html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(summary_html(snakemake.input.summary, snakemake.input.gain))


main(snakemake)  # noqa: F821 (injected by Snakemake)
