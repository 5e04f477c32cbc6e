"""probe_regions: linear SVM on unit embeddings (pretrained model, or the fine-tuned models) -> region."""

from neds.stages import log_to_file, run_probe


def main(snakemake):
    log_to_file(snakemake.log[0])
    models, stores = list(snakemake.input.models), list(snakemake.input.stores)
    if snakemake.wildcards.target == "pretrain":
        runs = [(models[0], stores)]
    else:  # one fine-tuned model per held-out session
        runs = [(m, [s]) for m, s in zip(models, stores)]
    run_probe(snakemake.wildcards.target, runs, snakemake.output.probe, snakemake.output.embeddings, seed=snakemake.params.seed)


main(snakemake)  # noqa: F821 (injected by Snakemake)
