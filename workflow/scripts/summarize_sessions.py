"""summarize_sessions: per-session status files -> results/binned/sessions.tsv."""

from neds.logs import log_to_file
from neds.stages import run_summarize_sessions


def main(snakemake):
    log_to_file(snakemake.log[0])
    table = run_summarize_sessions(
        snakemake.input.status, snakemake.params.roles, snakemake.output.tsv, snakemake.params.require_all_usable
    )
    n_ok = int(table["usable"].sum())
    print(f"{n_ok} of {len(table)} sessions usable; reasons for the others are in {snakemake.output.tsv}")


main(snakemake)
