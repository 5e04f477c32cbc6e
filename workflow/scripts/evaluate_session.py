"""evaluate_session: NEDS models, unimodal models, linear baselines and the oracle on one held-out session."""

from pathlib import Path

from neds.stages import log_to_file, run_evaluate_session


def main(snakemake):
    log_to_file(snakemake.log[0])
    truth = snakemake.input.get("truth")
    run_evaluate_session(
        snakemake.input.store,
        {
            "neds_finetuned": snakemake.input.finetuned,
            "neds_scratch": snakemake.input.scratch,
            "unimodal_encoding": snakemake.input.encoding,
            "unimodal_decoding": snakemake.input.decoding,
        },
        snakemake.output.metrics,
        snakemake.output.predictions,
        truth=Path(truth) / f"{snakemake.wildcards.eid}.zarr" if truth else None,
        split=snakemake.params.split,
        rrr=snakemake.input.rrr,
    )


main(snakemake)  # noqa: F821 (injected by Snakemake)
