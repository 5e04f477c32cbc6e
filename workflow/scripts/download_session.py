"""download_session: fetch one session's datasets from the IBL server into the ONE cache."""

from neds.config import one_settings
from neds.logs import log_to_file
from neds.stages import run_download_session


def main(snakemake):
    log_to_file(snakemake.log[0])
    settings = one_settings({"data": {"one": snakemake.params.one}})
    run_download_session(snakemake.wildcards.eid, settings, snakemake.output.json)


main(snakemake)
