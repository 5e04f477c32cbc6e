# Data stage: simulated or downloaded IBL sessions -> binned Zarr stores -> sessions.tsv


if SIMULATED:

    rule simulate_sessions:
        output:
            cache=directory(f"{SIM_DIR}/one_cache"),
            truth=directory(f"{SIM_DIR}/ground_truth"),
        log:
            "logs/simulate_sessions.log",
        benchmark:
            "benchmarks/simulate_sessions.tsv"
        conda:
            "../envs/neds.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            simulation=config["simulation"],
            bin_size_s=config["binning"]["bin_size_s"],
            window_s=config["binning"]["window_s"],
        script:
            "../scripts/simulate_sessions.py"


if REMOTE:

    rule download_session:
        output:
            json="resources/ibl/downloads/{eid}.json",
        log:
            "logs/download_session/{eid}.log",
        benchmark:
            "benchmarks/download_session/{eid}.tsv"
        retries: 2
        conda:
            "../envs/neds.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        params:
            one=config["data"]["one"],
        script:
            "../scripts/download_session.py"


rule bin_session:
    input:
        unpack(get_bin_session_input),
    output:
        zarr=directory("results/binned/{eid}.zarr"),
        dropped="results/binned/dropped/{eid}.tsv",
        status="results/binned/status/{eid}.json",
    log:
        "logs/bin_session/{eid}.log",
    benchmark:
        "benchmarks/bin_session/{eid}.tsv"
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        one=config["data"]["one"],
        binning=config["binning"],
        source=config["data"]["source"],
    script:
        "../scripts/bin_session.py"


checkpoint summarize_sessions:
    input:
        status=expand("results/binned/status/{eid}.json", eid=ALL_EIDS),
    output:
        tsv="results/binned/sessions.tsv",
    log:
        "logs/summarize_sessions.log",
    benchmark:
        "benchmarks/summarize_sessions.tsv"
    localrule: True
    conda:
        "../envs/neds.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        roles=ROLES,
        require_all_usable=config["data"]["require_all_usable"],
    script:
        "../scripts/summarize_sessions.py"
