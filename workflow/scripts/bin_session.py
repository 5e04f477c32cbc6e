"""bin_session: one session through ONE -> results/binned/{eid}.zarr, dropped table, status."""

from neds.config import binning_params, one_settings
from neds.logs import log_to_file
from neds.stages import run_bin_session


def main(snakemake):
    log_to_file(snakemake.log[0])
    config = {"data": {"one": snakemake.params.one}, "binning": snakemake.params.binning}
    run_bin_session(
        snakemake.wildcards.eid,
        one_settings(config),
        binning_params(config),
        out_zarr=snakemake.output.zarr,
        out_dropped=snakemake.output.dropped,
        out_status=snakemake.output.status,
        source=snakemake.params.source,
    )


main(snakemake)
