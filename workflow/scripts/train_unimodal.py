"""train_unimodal: the encoding-only (behaviour -> spikes) or decoding-only (spikes -> behaviour) model."""

from neds.stages import log_to_file, run_training


def main(snakemake):
    log_to_file(snakemake.log[0])
    run_training(
        snakemake.wildcards.kind,
        [snakemake.input.store],
        snakemake.params.out_dir,
        snakemake.params.model,
        snakemake.params.training,
        threads=snakemake.threads,
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
