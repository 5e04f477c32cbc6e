"""exp_train: one experiment variant's fine-tuned or from-scratch model on one held-out session."""

from neds.stages import log_to_file

log_to_file(snakemake.log[0])  # noqa: F821 (first, so that import errors reach the log)

import json  # noqa: E402

from neds.experiments import variant_spec  # noqa: E402
from neds.stages import run_training  # noqa: E402


def main(snakemake):
    wc = snakemake.wildcards
    spec = snakemake.params.spec
    if spec is None:  # the sweep's best variant: its settings were chosen by sweep_select
        with open(snakemake.input.best) as f:
            spec = variant_spec(snakemake.config, wc.experiment, wc.variant, best=json.load(f))
    run_training(
        wc.stage,
        [snakemake.input.store],
        snakemake.params.out_dir,
        spec["model"][wc.stage],
        spec["training"][wc.stage],
        pretrained=snakemake.input.get("pretrained"),
        threads=snakemake.threads,
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
