# The paper's experiments as named targets, all read from the registry neds.experiments.EXPERIMENTS
# (seeds, ablation_masking, model_size, scaling, finetune_trials, sweep), plus table1, and
# `experiments` for all of them. Each variant trains under results/experiments/<experiment>/<variant>/,
# is scored per held-out session, and each experiment gets a table and a figure in the report.
# A new experiment is one registry entry: its target, jobs and summary follow from it here.
#
# The training rules derive from the main ones (train.smk, `use rule ... as ... with:`) and change
# only their files and settings: threads, resources, environment and script are the main rules'.
# The cluster profile keys its per-rule settings on rule names, so workflow/profiles/slurm gives
# exp_pretrain and exp_train the blocks of pretrain_model and train_model (see its comment).


use rule pretrain_model as exp_pretrain with:
    input:
        unpack(exp_pretrain_input),
    output:
        model=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/model.pt",
        history=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/history.jsonl",
        summary=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/summary.json",
    log:
        f"logs/experiments/{{experiment}}/{{variant}}/{{stage}}.log",
    benchmark:
        f"benchmarks/experiments/{{experiment}}/{{variant}}/{{stage}}.tsv"
    params:
        stage=lambda wc: wc.stage,
        model=lambda wc: exp_settings(wc)[0],
        training=lambda wc: exp_settings(wc)[1],
        variant=exp_variant,
        out_dir=subpath(output.model, parent=True),


use rule train_model as exp_train with:
    input:
        unpack(exp_train_input),
    output:
        model=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/{{eid}}/model.pt",
        history=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/{{eid}}/history.jsonl",
        summary=f"{EXP_DIR}/{{experiment}}/{{variant}}/{{stage}}/{{eid}}/summary.json",
    log:
        f"logs/experiments/{{experiment}}/{{variant}}/{{stage}}/{{eid}}.log",
    benchmark:
        f"benchmarks/experiments/{{experiment}}/{{variant}}/{{stage}}/{{eid}}.tsv"
    params:
        stage=lambda wc: wc.stage,
        model=lambda wc: exp_settings(wc)[0],
        training=lambda wc: exp_settings(wc)[1],
        variant=exp_variant,
        out_dir=subpath(output.model, parent=True),


rule exp_evaluate:
    input:
        store="results/binned/{eid}.zarr",
        models=lambda wc: list(exp_models(wc).values()),
    output:
        metrics=f"{EXP_DIR}/{{experiment}}/{{variant}}/evaluation/{{eid}}.json",
    log:
        f"logs/experiments/{{experiment}}/{{variant}}/evaluate/{{eid}}.log",
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=exp_models,
        split=exp_split,
    script:
        "../scripts/exp_evaluate.py"


rule exp_select:
    input:
        unpack(lambda wc: exp_evaluations(wc.experiment, exp_candidates(wc.experiment))),
    output:
        best=f"{EXP_DIR}/{{experiment}}/best.json",
    log:
        "logs/experiments/{experiment}/select.log",
    wildcard_constraints:
        experiment="|".join(e.name for e in EXPERIMENTS.values() if e.selects_best),
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        candidates=lambda wc: {v.name: v.overrides for v in exp_candidates(wc.experiment)},
    script:
        "../scripts/exp_select.py"


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
    log:
        "logs/experiments/{experiment}/summarize.log",
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        variants=lambda wc: [v.name for v in exp_variants(wc.experiment)],
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
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table1.py"


# one target per experiment, named after it (snakemake seeds, ..., snakemake sweep)
for _experiment in EXPERIMENTS:

    rule:
        name:
            _experiment
        input:
            exp_targets(_experiment),


rule table1:
    input:
        f"{EXP_DIR}/table1.tsv",


rule experiments:
    input:
        [t for e in EXPERIMENTS if EXPERIMENTS[e].in_all for t in exp_targets(e)],
        f"{EXP_DIR}/table1.tsv",


# The paper's comparison with other large-scale models (snakemake peers): the peers experiment's
# fine-tuned NEDS, POYO+ and NDT2 over seeds beside the main run's other methods, the gaps beside
# the paper's, the training budgets, the methods figures and the training curves.
rule peers_comparison:
    input:
        peers=f"{EXP_DIR}/{PEERS}/metrics.tsv",
        main="results/tables/metrics.tsv",
        summaries=lambda wc: [p for r in peers_runs(wc).values() for ps in r.values() for p in ps],
    output:
        methods=f"{EXP_DIR}/{PEERS}/methods.tsv",
        table=f"{EXP_DIR}/{PEERS}/comparison.tsv",
        gaps=f"{EXP_DIR}/{PEERS}/gaps.tsv",
        costs=f"{EXP_DIR}/{PEERS}/costs.tsv",
        markdown=report(f"{EXP_DIR}/{PEERS}/comparison.md", caption="../report/peers.rst", category="Experiments"),
        decoding=report(
            "results/figures/peers_decoding.png",
            caption="../report/peers.rst",
            category="Experiments",
            labels={"figure": "peers: decoding"},
        ),
        decoding_svg="results/figures/peers_decoding.svg",
        encoding=report(
            "results/figures/peers_encoding.png",
            caption="../report/peers.rst",
            category="Experiments",
            labels={"figure": "peers: encoding"},
        ),
        encoding_svg="results/figures/peers_encoding.svg",
    log:
        "logs/experiments/peers/comparison.log",
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=peers_runs,
    script:
        "../scripts/peers_comparison.py"


# The balance of the modalities' losses (snakemake loss_balance): each balance pretrained,
# fine-tuned and trained per session over seeds; chosen on the validation trials, compared with
# the unimodal models and the linear decoder on the test trials.
rule balance_comparison:
    input:
        metrics=f"{EXP_DIR}/{BALANCE}/metrics.tsv",
        main="results/tables/metrics.tsv",
        pretrain=lambda wc: [
            f"{EXP_DIR}/{BALANCE}/{v.name}/{vocab.PRETRAIN.name}/history.jsonl" for v in exp_variants(BALANCE)
        ],
    output:
        selection=f"{EXP_DIR}/{BALANCE}/selection.tsv",
        table=f"{EXP_DIR}/{BALANCE}/comparison.tsv",
        targets=f"{EXP_DIR}/{BALANCE}/targets.tsv",
        markdown=report(f"{EXP_DIR}/{BALANCE}/comparison.md", caption="../report/balance.rst", category="Experiments"),
    log:
        f"logs/experiments/{BALANCE}/comparison.log",
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        variants=lambda wc: [v.name for v in exp_variants(BALANCE)],
    script:
        "../scripts/balance_comparison.py"


# The fine-tuning recipe (snakemake finetune_recipe): each recipe of experiments.finetune_recipes
# fine-tunes the main pretrained model over seeds, beside the model trained from scratch; chosen
# on the validation trials, compared with scratch on the test trials.
rule recipe_comparison:
    input:
        metrics=f"{EXP_DIR}/{RECIPE}/metrics.tsv",
    output:
        selection=f"{EXP_DIR}/{RECIPE}/selection.tsv",
        table=f"{EXP_DIR}/{RECIPE}/comparison.tsv",
        sessions=f"{EXP_DIR}/{RECIPE}/sessions.tsv",
        markdown=report(f"{EXP_DIR}/{RECIPE}/comparison.md", caption="../report/recipe.rst", category="Experiments"),
    log:
        f"logs/experiments/{RECIPE}/comparison.log",
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        recipes=list(config["experiments"]["finetune_recipes"]),
    script:
        "../scripts/recipe_comparison.py"


# The gain of pretraining at each amount of data (snakemake scaling | finetune_trials): each
# fine-tuned model against the model trained from scratch at the same seed, over seeds.
rule data_gain:
    input:
        metrics=f"{EXP_DIR}/{{experiment}}/metrics.tsv",
        sessions="results/binned/sessions.tsv",  # the usable pretraining sessions cap the scaling sizes
    output:
        table=f"{EXP_DIR}/{{experiment}}/gain.tsv",
        markdown=report(f"{EXP_DIR}/{{experiment}}/gain.md", caption="../report/gain.rst", category="Experiments"),
        png=report(
            "results/figures/gain_{experiment}.png",
            caption="../report/gain.rst",
            category="Experiments",
            labels={"figure": "{experiment}: gain of pretraining"},
        ),
        svg="results/figures/gain_{experiment}.svg",
    log:
        "logs/experiments/{experiment}/gain.log",
    wildcard_constraints:
        experiment="|".join(e.name for e in EXPERIMENTS.values() if e.data_axis),
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        variants=lambda wc: EXPERIMENTS[wc.experiment].data_levels(config, n_usable_pretrain()),
        split=lambda wc: EXPERIMENTS[wc.experiment].split,
        title=lambda wc: EXPERIMENTS[wc.experiment].title,
        axis_label=lambda wc: DATA_AXES[EXPERIMENTS[wc.experiment].data_axis],
    script:
        "../scripts/data_gain.py"


use rule plot_training_curves as plot_training_curves_peers with:
    input:
        unpack(peers_histories),
    output:
        png=report(
            "results/figures/training_curves_peers.png",
            caption="../report/training_curves.rst",
            category="Experiments",
            labels={"figure": "peers: training curves"},
        ),
        svg="results/figures/training_curves_peers.svg",
    log:
        "logs/plot_training_curves_peers.log",
    benchmark:
        "benchmarks/plot_training_curves_peers.tsv"
