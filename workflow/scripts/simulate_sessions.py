"""simulate_sessions: write the simulated IBL sessions (ALF + ONE cache) and their ground truth."""

from neds.config import simulation_config
from neds.logs import log_to_file


def main(snakemake):
    log_to_file(snakemake.log[0])
    from neds.simulate import simulate_sessions

    config = {
        "simulation": snakemake.params.simulation,
        "binning": {"bin_size_s": snakemake.params.bin_size_s, "window_s": snakemake.params.window_s},
    }
    manifest = simulate_sessions(
        snakemake.output.cache,
        snakemake.output.truth,
        simulation_config(config),
        hash_files=snakemake.params.simulation["hash_files"],
    )
    print(manifest.to_string())


main(snakemake)
