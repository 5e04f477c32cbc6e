"""probe_regions: linear SVM on unit embeddings (pretrained model, or the fine-tuned models) -> region."""

from neds.logs import log_to_file
from neds.stages import run_probe


def main(snakemake):
    log_to_file(snakemake.log[0])
    sessions = snakemake.params.sessions  # {'models': {eid: checkpoint}, 'stores': {eid: store}}
    run_probe(
        snakemake.wildcards.target,
        sessions["models"],
        sessions["stores"],
        snakemake.output.probe,
        snakemake.output.embeddings,
        seed=snakemake.params.seed,
    )


main(snakemake)
