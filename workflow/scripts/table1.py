"""table1: encoding from each behaviour alone vs all (the paper's Table 1) from the main evaluation."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.stages import run_table1  # noqa: E402


def main(snakemake):
    run_table1(snakemake.input.metrics, snakemake.output.tsv, snakemake.output.md)


main(snakemake)
