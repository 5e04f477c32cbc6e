"""exp_select: the candidate variant of an experiment (neds.experiments.Experiment.selects_best)
with the best mean validation score -> results/experiments/<experiment>/best.json."""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

import json  # noqa: E402

from neds.experiments import select_best  # noqa: E402


def main(snakemake):
    candidates = snakemake.params.candidates
    files = {name: list(snakemake.input[name]) for name in candidates}
    best = select_best(files, candidates)
    with open(snakemake.output.best, "w") as f:
        json.dump(best, f, indent=2)
    print(f"best of {snakemake.wildcards.experiment}: {best['variant']} (validation score {best['val_score']:.3f})")


main(snakemake)
