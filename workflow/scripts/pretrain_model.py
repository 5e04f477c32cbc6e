"""pretrain_model: NEDS on all usable pretraining sessions, multi-task masking."""

from neds.stages import log_to_file, run_training


def main(snakemake):
    log_to_file(snakemake.log[0])
    run_training(
        "pretrain",
        list(snakemake.input.stores),
        snakemake.params.out_dir,
        snakemake.params.model,
        snakemake.params.training,
        threads=snakemake.threads,
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
