# Evaluation stage: every model and baseline on each usable held-out session's test trials,
# then the tables and the Markdown summary; brain-region probing of the unit embeddings.


rule evaluate_session:
    input:
        unpack(heldout_models),
        store="results/binned/{eid}.zarr",
        rrr="results/baselines/rrr.pt",
        truth=get_ground_truth(),
    output:
        metrics="results/evaluation/{eid}/metrics.json",
        predictions=directory("results/evaluation/{eid}/predictions"),
    log:
        "logs/evaluate_session/{eid}.log",
    benchmark:
        "benchmarks/evaluate_session/{eid}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        split="test",
    script:
        "../scripts/evaluate_session.py"


rule fit_rrr_baseline:
    input:
        stores=lambda wc: expand("results/binned/{eid}.zarr", eid=usable_sessions(PRETRAIN_ROLE)),
    output:
        model="results/baselines/rrr.pt",
    log:
        "logs/fit_rrr_baseline.log",
    benchmark:
        "benchmarks/fit_rrr_baseline.tsv"
    conda:
        "../envs/neds.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        rank=config["baselines"]["rrr_rank"],
        epochs=config["baselines"]["rrr_epochs"],
        seed=config["training"]["seed"],
    script:
        "../scripts/fit_rrr_baseline.py"


rule summarize_evaluation:
    input:
        metrics=lambda wc: expand("results/evaluation/{eid}/metrics.json", eid=usable_sessions(HELDOUT_ROLE)),
    output:
        table=report(
            "results/tables/metrics.tsv",
            caption="../report/metrics_table.rst",
            category="Tables",
            labels={"table": "per session (TSV)"},
        ),
        summary=report(
            "results/tables/summary.tsv",
            caption="../report/summary_table.rst",
            category="Tables",
            labels={"table": "summary (TSV)"},
        ),
        gain=report(
            "results/tables/pretraining_gain.tsv",
            caption="../report/pretraining_gain_table.rst",
            category="Tables",
            labels={"table": "pretraining gain (TSV)"},
        ),
        markdown=report(
            "results/summary.md",
            caption="../report/summary_table.rst",
            category="Tables",
            labels={"table": "summary (Markdown)"},
        ),
    log:
        "logs/summarize_evaluation.log",
    benchmark:
        "benchmarks/summarize_evaluation.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/summarize_evaluation.py"


rule probe_regions:
    input:
        unpack(get_probe_input),
    output:
        probe="results/probing/{target}/probe.json",
        embeddings=directory("results/probing/{target}/embeddings.zarr"),
    log:
        "logs/probe_regions/{target}.log",
    benchmark:
        "benchmarks/probe_regions/{target}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        sessions=lambda wc: get_probe_input(wc, keyed=True),  # eid -> model, eid -> store
        seed=config["training"]["seed"],
    script:
        "../scripts/probe_regions.py"
