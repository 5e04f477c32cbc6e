"""bwb_export: the held-out predictions in the IBL BrainWideBench submission layout (neds.io.bwb)."""

from neds.io.bwb import export_submission
from neds.logs import log_to_file


def main(snakemake):
    log_to_file(snakemake.log[0])
    p = snakemake.params
    export_submission(
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
