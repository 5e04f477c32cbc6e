# The paper's experiments as named targets (neds/experiments.py): seeds, ablation_masking,
# model_size, scaling, finetune_trials, sweep, table1, and `experiments` for all of them. Each
# variant trains under results/experiments/<experiment>/<variant>/, is scored per held-out
# session, and each experiment gets a table and a figure in the report.
wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    variant=r"[A-Za-z0-9_.-]+",
    stage=r"finetune|scratch",


rule exp_pretrain:
    input:
        stores=exp_pretrain_stores,
    output:
        model=f"{EXP_DIR}/{{experiment}}/{{variant}}/pretrain/model.pt",
        history=f"{EXP_DIR}/{{experiment}}/{{variant}}/pretrain/history.jsonl",
        summary=f"{EXP_DIR}/{{experiment}}/{{variant}}/pretrain/summary.json",
    params:
        model=lambda wc: variant_spec(config, wc.experiment, wc.variant)["model"]["pretrain"],
        training=lambda wc: variant_spec(config, wc.experiment, wc.variant)["training"]["pretrain"],
        out_dir=subpath(output.model, parent=True),
        neds_version=NEDS_VERSION,
    log:
        f"logs/experiments/{{experiment}}/{{variant}}/pretrain.log",
    benchmark:
        f"benchmarks/experiments/{{experiment}}/{{variant}}/pretrain.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60 * 24,
        gpu=config["training"]["pretrain_gpus"],
    script:
        "../scripts/pretrain_model.py"


rule exp_train:
    input:
        unpack(exp_train_input),
    output:
        model=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/{{eid}}/model.pt",
        summary=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/{{eid}}/summary.json",
    params:
        spec=exp_spec,
        out_dir=subpath(output.model, parent=True),
        neds_version=NEDS_VERSION,
    log:
        f"logs/experiments/{{experiment}}/{{variant}}/{{stage}}/{{eid}}.log",
    benchmark:
        f"benchmarks/experiments/{{experiment}}/{{variant}}/{{stage}}/{{eid}}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60 * 4,
        gpu=config["training"]["gpus"],
    script:
        "../scripts/exp_train.py"


rule exp_evaluate:
    input:
        store="results/binned/{eid}.zarr",
        models=lambda wc: list(exp_models(wc).values()),
    output:
        metrics=f"{EXP_DIR}/{{experiment}}/{{variant}}/evaluation/{{eid}}.json",
    params:
        models=exp_models,
        split=lambda wc: variant_plan(wc.experiment, wc.variant)["split"],
        neds_version=NEDS_VERSION,
    log:
        f"logs/experiments/{{experiment}}/{{variant}}/evaluate/{{eid}}.log",
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/exp_evaluate.py"


rule sweep_select:
    input:
        unpack(lambda wc: exp_evaluations("sweep", sweep_trials())),
    output:
        best=f"{EXP_DIR}/sweep/best.json",
    params:
        variants=lambda wc: sweep_trials(),
    log:
        "logs/experiments/sweep/select.log",
    conda:
        "../envs/neds.yaml"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/sweep_select.py"


rule exp_summarize:
    input:
        unpack(lambda wc: exp_evaluations(wc.experiment)),
    output:
        metrics=f"{EXP_DIR}/{{experiment}}/metrics.tsv",
        summary=f"{EXP_DIR}/{{experiment}}/summary.tsv",
        figure=report(
            "results/figures/experiment_{experiment}.png",
            caption="../report/experiment.rst",
            category="Experiments",
            labels={"experiment": "{experiment}"},
        ),
        figure_svg="results/figures/experiment_{experiment}.svg",
    params:
        variants=lambda wc: exp_variants(wc.experiment),
    log:
        "logs/experiments/{experiment}/summarize.log",
    conda:
        "../envs/neds.yaml"
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/exp_summarize.py"


rule table1_tables:
    input:
        metrics="results/tables/metrics.tsv",
    output:
        tsv=f"{EXP_DIR}/table1.tsv",
        md=report(f"{EXP_DIR}/table1.md", caption="../report/table1.rst", category="Experiments"),
    log:
        "logs/experiments/table1.log",
    conda:
        "../envs/neds.yaml"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table1.py"


rule seeds:
    input:
        exp_targets("seeds"),


rule ablation_masking:
    input:
        exp_targets("ablation_masking"),


rule model_size:
    input:
        exp_targets("model_size"),


rule scaling:
    input:
        exp_targets("scaling"),


rule finetune_trials:
    input:
        exp_targets("finetune_trials"),


rule sweep:
    input:
        exp_targets("sweep"),
        f"{EXP_DIR}/sweep/best.json",


rule table1:
    input:
        f"{EXP_DIR}/table1.tsv",


rule experiments:
    input:
        [t for e in EXPERIMENTS for t in exp_targets(e)],
        f"{EXP_DIR}/table1.tsv",
