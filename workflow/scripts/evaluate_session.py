"""evaluate_session: NEDS models, unimodal models, linear baselines and the oracle on one held-out session."""

from pathlib import Path

from neds.logs import log_to_file
from neds.stages import run_evaluate_session
from neds.vocab import HELDOUT_STAGES, STAGES


def main(snakemake):
    log_to_file(snakemake.log[0])
    truth = snakemake.input.get("truth")
    run_evaluate_session(
        snakemake.input.store,
        {STAGES[s].method: snakemake.input[s] for s in HELDOUT_STAGES},  # method -> its checkpoint
        snakemake.output.metrics,
        snakemake.output.predictions,
        truth=Path(truth) / f"{snakemake.wildcards.eid}.zarr" if truth else None,
        split=snakemake.params.split,
        rrr=snakemake.input.rrr,
    )


main(snakemake)
