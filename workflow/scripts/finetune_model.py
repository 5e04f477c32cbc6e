"""finetune_model: the pretrained shared weights + new session-specific layers, trained on one held-out session."""

from neds.stages import log_to_file, run_training


def main(snakemake):
    log_to_file(snakemake.log[0])
    run_training(
        "finetune",
        [snakemake.input.store],
        snakemake.params.out_dir,
        snakemake.params.model,
        snakemake.params.training,
        pretrained=snakemake.input.pretrained,
        threads=snakemake.threads,
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
