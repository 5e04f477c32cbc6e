"""train_model: one model of a training rule (pretrain_model, train_model and the experiments'
exp_pretrain, exp_train derived from them).

The stage (neds.vocab.STAGES) is ``params.stage``; the model and training settings are
``params.model`` and ``params.training``, or, where these are None (an experiment's variant
trained with the settings its selection chose), the variant (``params.variant``) applied to
``input.best``. A stage trained per held-out session reads ``input.store`` (and
``input.pretrained`` when it starts from the pretrained model); pretraining reads
``input.stores`` and runs data-parallel over the GPUs of its gpu resource (torchrun, one node)
when it has more than one.
"""

from neds.logs import log_to_file

log_to_file(snakemake.log[0])

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from neds import vocab  # noqa: E402
from neds.stages import launch_training  # noqa: E402


def settings(snakemake, stage: str) -> tuple[dict, dict]:
    """The job's model and training settings."""
    params = snakemake.params
    if params.model is not None:
        return params.model, params.training
    best = json.loads(Path(snakemake.input.best).read_text())
    return params.variant.settings(snakemake.config, stage, best=best)


def main(snakemake):
    stage = vocab.stage(snakemake.params.stage)
    model, training = settings(snakemake, stage.name)
    stores = [snakemake.input.store] if stage.per_session else list(snakemake.input.stores)
    launch_training(
        stage.name,
        stores,
        snakemake.params.out_dir,
        model,
        training,
        pretrained=snakemake.input.get("pretrained"),
        threads=snakemake.threads,
        # one process per GPU for pretraining; a single-session model trains in this process
        nproc=1 if stage.per_session else int(snakemake.resources.gpu),
        log=snakemake.log[0],
    )


main(snakemake)
