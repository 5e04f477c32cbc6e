"""fit_rrr_baseline: multi-session reduced-rank regression (encoding and decoding) on the pretraining sessions."""

import torch

from neds.logs import log_to_file
from neds.stages import run_fit_rrr


def main(snakemake):
    log_to_file(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    run_fit_rrr(
        snakemake.input.stores,
        snakemake.output.model,
        rank=snakemake.params.rank,
        epochs=snakemake.params.epochs,
        seed=snakemake.params.seed,
    )


main(snakemake)
