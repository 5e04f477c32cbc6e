# The results page, docs.page (docs/results.md by default; neds/docs.py): rendered from the main run's tables, probing
# results and figures, and from every experiment table already built, stamped with the commit,
# the date and the configuration (its files and a hash of the resolved config). `snakemake docs`
# builds the main run first if needed; it never runs an experiment: run those first (e.g.
# `snakemake experiments`), then `snakemake docs`, which picks up what they wrote.
import shlex

from neds.docs import config_file_names, config_hash, experiment_tables


rule docs:
    input:
        summary="results/summary.md",
        tables=["results/tables/summary.tsv", "results/tables/pretraining_gain.tsv"],
        probes=expand("results/probing/{target}/probe.json", target=PROBE_TARGETS),
        sessions="results/binned/sessions.tsv",
        figures=lambda wc: [f for f in get_final_outputs(wc) if f.startswith("results/figures/")],
        # optional: the experiment tables already built (never built here; a newer one reruns the page)
        experiments=lambda wc: experiment_tables("results", existing=True),
    output:
        page=config["docs"]["page"],
    log:
        "logs/docs.log",
    benchmark:
        "benchmarks/docs.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        results=subpath(input.summary, parent=True),
        configfiles=" ".join(
            shlex.quote(f) for f in config_file_names(workflow.configfiles, workflow.overwrite_configfiles)
        ),
        config_hash=config_hash(config),
    shell:
        "python -m neds.docs --results {params.results} --out {output.page} "
        "--configfile {params.configfiles} --config-hash {params.config_hash} > {log} 2>&1"
