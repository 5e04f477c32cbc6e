# Figures and report tables: the evaluation (methods, pretraining gain), example predictions per
# held-out session, brain-region probing, training curves. Each figure is written as PNG (in the
# report) and SVG (for editing); the plotting code is neds.plots.
from neds.vocab import FINETUNE, NEDS_FINETUNED, NEDS_SCRATCH, PRETRAIN


rule plot_methods:
    input:
        metrics="results/tables/metrics.tsv",
    output:
        encoding=report(
            "results/figures/methods_encoding.png",
            caption="../report/methods_encoding.rst",
            category="Methods",
            labels={"figure": "encoding"},
        ),
        encoding_svg="results/figures/methods_encoding.svg",
        decoding=report(
            "results/figures/methods_decoding.png",
            caption="../report/methods_decoding.rst",
            category="Methods",
            labels={"figure": "decoding"},
        ),
        decoding_svg="results/figures/methods_decoding.svg",
    log:
        "logs/plot_methods.log",
    benchmark:
        "benchmarks/plot_methods.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/plot_methods.py"


rule plot_pretraining_gain:
    input:
        metrics="results/tables/metrics.tsv",
        gain="results/tables/pretraining_gain.tsv",
    output:
        png=report(
            "results/figures/pretraining_gain.png",
            caption="../report/pretraining_gain.rst",
            category="Pretraining",
            labels={"figure": "pretraining gain"},
        ),
        svg="results/figures/pretraining_gain.svg",
    log:
        "logs/plot_pretraining_gain.log",
    benchmark:
        "benchmarks/plot_pretraining_gain.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        pretrained=NEDS_FINETUNED,
        scratch=NEDS_SCRATCH,
    script:
        "../scripts/plot_pretraining_gain.py"


rule plot_examples:
    input:
        store="results/binned/{eid}.zarr",
        predictions="results/evaluation/{eid}/predictions",
    output:
        png=report(
            "results/figures/examples_{eid}.png",
            caption="../report/examples.rst",
            category="Examples",
            labels={"figure": "examples", "session": "{eid}"},
        ),
        svg="results/figures/examples_{eid}.svg",
    log:
        "logs/plot_examples/{eid}.log",
    benchmark:
        "benchmarks/plot_examples/{eid}.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        method=NEDS_FINETUNED,
        n_trials=3,
        smooth_bins=2.0,
    script:
        "../scripts/plot_examples.py"


rule plot_probing:
    input:
        probe="results/probing/{target}/probe.json",
        embeddings="results/probing/{target}/embeddings.zarr",
    output:
        png=report(
            "results/figures/probing_{target}.png",
            caption="../report/probing.rst",
            category="Probing",
            labels={"figure": "probing", "model": "{target}"},
        ),
        svg="results/figures/probing_{target}.svg",
    log:
        "logs/plot_probing/{target}.log",
    benchmark:
        "benchmarks/plot_probing/{target}.tsv"
    wildcard_constraints:
        target=f"{PRETRAIN.name}|{FINETUNE.name}",
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        feature_set="both",
    script:
        "../scripts/plot_probing.py"


rule plot_training_curves:
    input:
        unpack(training_histories),
    output:
        png=report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"figure": "training curves"},
        ),
        svg="results/figures/training_curves.svg",
    log:
        "logs/plot_training_curves.log",
    benchmark:
        "benchmarks/plot_training_curves.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/plot_training_curves.py"


rule render_summary:
    input:
        summary="results/tables/summary.tsv",
        gain="results/tables/pretraining_gain.tsv",
    output:
        html=report(
            "results/tables/summary.html",
            caption="../report/summary_table.rst",
            category="Tables",
            labels={"table": "summary (HTML)"},
        ),
    log:
        "logs/render_summary.log",
    benchmark:
        "benchmarks/render_summary.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/render_summary.py"
