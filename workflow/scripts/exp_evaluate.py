"""exp_evaluate: score one experiment variant's models on one held-out session."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

from neds.stages import run_score_models  # noqa: E402


def main(snakemake):
    wc = snakemake.wildcards
    run_score_models(
        snakemake.input.store,
        snakemake.params.models,
        snakemake.params.split,
        snakemake.output.metrics,
        attrs={"experiment": wc.experiment},
    )


main(snakemake)
