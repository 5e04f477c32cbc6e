"""summarize_evaluation: per-session metrics -> results/tables/*.tsv and results/summary.md."""

from neds.logs import log_to_file
from neds.stages import run_summarize_evaluation


def main(snakemake):
    log_to_file(snakemake.log[0])
    run_summarize_evaluation(
        snakemake.input.metrics,
        snakemake.output.table,
        snakemake.output.summary,
        snakemake.output.gain,
        snakemake.output.markdown,
    )


main(snakemake)
