"""bwb_export: the held-out predictions in the IBL BrainWideBench submission layout (neds.io.bwb)."""

from neds.stages import log_to_file, run_bwb_export


def main(snakemake):
    log_to_file(snakemake.log[0])
    eids = snakemake.params.eids
    sessions = {e: {"store": s, "predictions": p} for e, s, p in zip(eids, snakemake.input.stores, snakemake.input.predictions)}
    run_bwb_export(sessions, snakemake.input.embeddings, snakemake.params.out_dir, snakemake.params.label,
                   snakemake.params.seed, snakemake.params.method, snakemake.params.rates_method,
                   snakemake.params.probe_features)  # fmt: skip


main(snakemake)  # noqa: F821 (injected by Snakemake)
