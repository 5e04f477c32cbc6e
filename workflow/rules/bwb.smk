# Export for IBL BrainWideBench (neds/io/bwb.py): the held-out predictions in the benchmark's
# submission layout, with matching ground truth (target `bwb`), and the benchmark's own scorers
# run in their own environment (target `bwb_score`, workflow/envs/bwb.yaml).


rule bwb_export:
    input:
        stores=lambda wc: list(bwb_sessions(wc)["stores"].values()),
        predictions=lambda wc: list(bwb_sessions(wc)["predictions"].values()),
        embeddings="results/probing/finetune/embeddings.zarr",
    output:
        predictions=directory("results/bwb/predictions"),
        ground_truth=directory("results/bwb/ground_truth"),
        manifest="results/bwb/manifest.json",
    log:
        "logs/bwb/export.log",
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        stores=lambda wc: bwb_sessions(wc)["stores"],  # eid -> store
        predictions=lambda wc: bwb_sessions(wc)["predictions"],  # eid -> predictions folder
        out_dir=subpath(output.manifest, parent=True),
        label=config["bwb"]["label"],
        method=config["bwb"]["method"],
        rates_method=config["bwb"]["co_smoothing_method"],
        probe_features=config["bwb"]["probe_features"],
        seed=config["training"]["seed"],
    script:
        "../scripts/bwb_export.py"


rule bwb_score:
    input:
        predictions="results/bwb/predictions",
        ground_truth="results/bwb/ground_truth",
    output:
        scores="results/bwb/scores.tsv",
    log:
        "logs/bwb/score.log",
    localrule: True
    conda:
        "../envs/bwb.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        scorer=workflow.source_path("../scripts/bwb_score.py"),
    shell:
        "python {params.scorer} {input.predictions} {input.ground_truth} {output.scores} > {log} 2>&1"


rule bwb:
    input:
        "results/bwb/manifest.json",
