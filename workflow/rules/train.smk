# Training stage: pretraining on the usable pretraining sessions (a stage of vocab.PRETRAIN_STAGES:
# NEDS's, and its peers' NDT2 and POYO+), then per held-out session a stage of
# vocab.PER_SESSION_STAGES (NEDS fine-tuned, from scratch, unimodal encoding and decoding; NDT2 and
# POYO+ fine-tuned). Both rules run workflow/scripts/train_model.py with the stage in params.stage;
# the experiments' training rules (experiments.smk) derive from these two, keeping their threads,
# resources and environment.


rule pretrain_model:
    input:
        sessions="results/binned/sessions.tsv",
        stores=lambda wc: expand("results/binned/{eid}.zarr", eid=usable_sessions(PRETRAIN_ROLE)),
    output:
        model="results/models/{stage}/model.pt",
        history="results/models/{stage}/history.jsonl",
        summary="results/models/{stage}/summary.json",
    log:
        "logs/pretrain_model/{stage}.log",
    benchmark:
        "benchmarks/pretrain_model/{stage}.tsv"
    wildcard_constraints:
        stage="|".join(vocab.PRETRAIN_STAGES),
    priority: 10  # on the critical path (pretrain -> fine-tune -> evaluate): start it first
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60 * 24,
        gpu=config["training"]["pretrain_gpus"],
    params:
        stage=lambda wc: wc.stage,
        model=lambda wc: model_settings(wc.stage),
        training=lambda wc: train_settings(wc.stage),
        out_dir=subpath(output.model, parent=True),
    script:
        "../scripts/train_model.py"


rule train_model:
    input:
        unpack(get_train_input),
    output:
        model="results/models/{stage}/{eid}/model.pt",
        history="results/models/{stage}/{eid}/history.jsonl",
        summary="results/models/{stage}/{eid}/summary.json",
    log:
        "logs/train_model/{stage}/{eid}.log",
    benchmark:
        "benchmarks/train_model/{stage}/{eid}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60 * 4,
        gpu=config["training"]["gpus"],
    params:
        stage=lambda wc: wc.stage,
        model=lambda wc: model_settings(wc.stage),
        training=lambda wc: train_settings(wc.stage),
        out_dir=subpath(output.model, parent=True),
    script:
        "../scripts/train_model.py"
