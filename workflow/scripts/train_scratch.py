"""train_scratch: NEDS on one held-out session from random initialisation (the fine-tuning budget)."""

from neds.stages import log_to_file, run_training


def main(snakemake):
    log_to_file(snakemake.log[0])
    run_training(
        "scratch",
        [snakemake.input.store],
        snakemake.params.out_dir,
        snakemake.params.model,
        snakemake.params.training,
        threads=snakemake.threads,
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
