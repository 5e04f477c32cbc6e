"""bwb_export: the held-out predictions in the IBL BrainWideBench submission layout (neds.io.bwb)."""

from neds.logs import log_to_file
from neds.stages import run_bwb_export


def main(snakemake):
    log_to_file(snakemake.log[0])
    p = snakemake.params
    run_bwb_export(
        p.stores,
        p.predictions,
        snakemake.input.embeddings,
        p.out_dir,
        p.label,
        p.seed,
        p.method,
        p.rates_method,
        p.probe_features,
    )


main(snakemake)
