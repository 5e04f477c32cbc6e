# Training stage: pretraining on the usable pretraining sessions, then per held-out session
# fine-tuning, training from scratch and the unimodal encoding / decoding models.


rule pretrain_model:
    input:
        sessions="results/binned/sessions.tsv",
        stores=lambda wc: expand("results/binned/{eid}.zarr", eid=usable_sessions("pretrain")),
    output:
        model="results/models/pretrain/model.pt",
        history="results/models/pretrain/history.jsonl",
        summary="results/models/pretrain/summary.json",
    params:
        model=model_settings("pretrain"),
        training=train_settings("pretrain"),
        out_dir=subpath(output.model, parent=True),
        neds_version=NEDS_VERSION,
    log:
        "logs/pretrain_model.log",
    benchmark:
        "benchmarks/pretrain_model.tsv"
    conda:
        "../envs/neds.yaml"
    priority: 10  # on the critical path (pretrain -> fine-tune -> evaluate): start it first
    threads: config["training"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60 * 24,
        gpu=config["training"]["pretrain_gpus"],
    script:
        "../scripts/pretrain_model.py"


rule finetune_model:
    input:
        pretrained="results/models/pretrain/model.pt",
        store="results/binned/{eid}.zarr",
    output:
        model="results/models/finetune/{eid}/model.pt",
        history="results/models/finetune/{eid}/history.jsonl",
        summary="results/models/finetune/{eid}/summary.json",
    params:
        model=model_settings("finetune"),
        training=train_settings("finetune"),
        out_dir=subpath(output.model, parent=True),
        neds_version=NEDS_VERSION,
    log:
        "logs/finetune_model/{eid}.log",
    benchmark:
        "benchmarks/finetune_model/{eid}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60 * 4,
        gpu=config["training"]["gpus"],
    script:
        "../scripts/finetune_model.py"


rule train_scratch:
    input:
        store="results/binned/{eid}.zarr",
    output:
        model="results/models/scratch/{eid}/model.pt",
        history="results/models/scratch/{eid}/history.jsonl",
        summary="results/models/scratch/{eid}/summary.json",
    params:
        model=model_settings("scratch"),
        training=train_settings("scratch"),
        out_dir=subpath(output.model, parent=True),
        neds_version=NEDS_VERSION,
    log:
        "logs/train_scratch/{eid}.log",
    benchmark:
        "benchmarks/train_scratch/{eid}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60 * 4,
        gpu=config["training"]["gpus"],
    script:
        "../scripts/train_scratch.py"


rule train_unimodal:
    input:
        store="results/binned/{eid}.zarr",
    output:
        model="results/models/{kind}/{eid}/model.pt",
        history="results/models/{kind}/{eid}/history.jsonl",
        summary="results/models/{kind}/{eid}/summary.json",
    params:
        model=lambda wc: model_settings(wc.kind),
        training=lambda wc: train_settings(wc.kind),
        out_dir=subpath(output.model, parent=True),
        neds_version=NEDS_VERSION,
    log:
        "logs/train_unimodal/{kind}/{eid}.log",
    benchmark:
        "benchmarks/train_unimodal/{kind}/{eid}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60 * 4,
        gpu=config["training"]["gpus"],
    script:
        "../scripts/train_unimodal.py"
