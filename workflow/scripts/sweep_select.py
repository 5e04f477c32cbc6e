"""sweep_select: the sweep trial with the best mean validation score -> results/experiments/sweep/best.json."""

from neds.stages import log_to_file

log_to_file(snakemake.log[0])  # noqa: F821 (first, so that import errors reach the log)

import json  # noqa: E402

from neds.experiments import select_best, sweep_configs  # noqa: E402


def main(snakemake):
    files = {v: list(snakemake.input[v]) for v in snakemake.params.variants}
    best = select_best(files, sweep_configs(snakemake.config))
    with open(snakemake.output.best, "w") as f:
        json.dump(best, f, indent=2)
    print(f"best sweep trial: {best['variant']} (validation score {best['val_score']:.3f})")


main(snakemake)  # noqa: F821 (injected by Snakemake)
