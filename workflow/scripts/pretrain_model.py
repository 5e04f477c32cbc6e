"""pretrain_model: NEDS on all usable pretraining sessions, multi-task masking; data-parallel
over the GPUs of its gpu resource (torchrun, one node) when it has more than one."""

from neds.stages import launch_training, log_to_file


def main(snakemake):
    log_to_file(snakemake.log[0])
    launch_training(
        "pretrain",
        list(snakemake.input.stores),
        snakemake.params.out_dir,
        snakemake.params.model,
        snakemake.params.training,
        threads=snakemake.threads,
        nproc=int(snakemake.resources.gpu),
        log=snakemake.log[0],
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
