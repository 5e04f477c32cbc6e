# Config validation, the session lists, wildcard constraints and the input/param functions.
from pathlib import Path

from snakemake.utils import validate

import neds
from neds.config import check_consistency, session_lists
from neds.config import model_settings as neds_model_settings
from neds.config import train_settings as neds_train_settings
from neds.experiments import EXPERIMENTS, variant_names, variant_plan, variant_spec
from neds.stages import usable_eids


validate(config, "../schemas/config.schema.yaml")
check_consistency(config)

PRETRAIN_EIDS, HELDOUT_EIDS = session_lists(config)  # raises on held-out/pretrain leakage
ALL_EIDS = PRETRAIN_EIDS + HELDOUT_EIDS
ROLES = {**{e: "pretrain" for e in PRETRAIN_EIDS}, **{e: "heldout" for e in HELDOUT_EIDS}}
SIMULATED = config["data"]["source"] == "simulated"
REMOTE = config["data"]["one"]["mode"] == "remote"
SIM_DIR = config["simulation"]["output_dir"]
NEDS_VERSION = neds.__version__


wildcard_constraints:
    eid=r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    kind=r"encoding|decoding",
    target=r"pretrain|finetune",

MODEL_KINDS = ("finetune", "scratch", "encoding", "decoding")


def train_settings(stage):
    """TrainConfig settings of one stage (neds.config.train_settings)."""
    return neds_train_settings(config, stage)


def model_settings(stage):
    """ModelConfig settings of one stage's model (neds.config.model_settings)."""
    return neds_model_settings(config, stage)


def get_bin_session_input(wildcards):
    """What bin_session needs before it can read a session through ONE."""
    if SIMULATED:
        return {"cache": f"{SIM_DIR}/one_cache"}
    if REMOTE:
        return {"download": f"resources/ibl/downloads/{wildcards.eid}.json"}
    return {}


def usable_sessions(role):
    """Usable eids of a role ('pretrain' or 'heldout'): read from the summarize_sessions
    checkpoint, or, with data.require_all_usable, every listed eid (a static DAG). With none
    usable the run stops as soon as the checkpoint is read, with every session's reason."""
    if config["data"]["require_all_usable"]:
        return PRETRAIN_EIDS if role == "pretrain" else HELDOUT_EIDS
    return usable_eids(checkpoints.summarize_sessions.get().output.tsv, role)


def get_probe_input(wildcards):
    """Models and binned stores whose unit embeddings a probe reads, in matching order."""
    if wildcards.target == "pretrain":
        eids = usable_sessions("pretrain")
        return {"models": ["results/models/pretrain/model.pt"], "stores": expand("results/binned/{eid}.zarr", eid=eids)}
    eids = usable_sessions("heldout")
    return {
        "models": expand("results/models/finetune/{eid}/model.pt", eid=eids),
        "stores": expand("results/binned/{eid}.zarr", eid=eids),
    }


def get_ground_truth():
    """The simulator's ground truth folder (oracle), or nothing for real data."""
    return f"{SIM_DIR}/ground_truth" if SIMULATED else []


def get_final_outputs(wildcards):
    """Everything the default target builds: binned stores, then every model of every usable
    held-out session (read from the summarize_sessions checkpoint)."""
    return [
        "results/binned/sessions.tsv",
        *expand("results/binned/{eid}.zarr", eid=ALL_EIDS),
        "results/models/pretrain/summary.json",
        *expand("results/models/{kind}/{eid}/summary.json", kind=MODEL_KINDS, eid=usable_sessions("heldout")),
        "results/tables/metrics.tsv",
        "results/summary.md",
        *expand("results/probing/{target}/probe.json", target=("pretrain", "finetune")),
        *expand(
            "results/figures/{name}.{ext}",
            name=("methods_encoding", "methods_decoding", "pretraining_gain", "training_curves"),
            ext=("png", "svg"),
        ),
        *expand("results/figures/examples_{eid}.{ext}", eid=usable_sessions("heldout"), ext=("png", "svg")),
        *expand("results/figures/probing_{target}.{ext}", target=("pretrain", "finetune"), ext=("png", "svg")),
        "results/tables/summary.html",
    ]


# ---------------------------------------------------------------- experiments (experiments.smk)
EXP_DIR = "results/experiments"


def exp_variants(experiment):
    return variant_names(config, experiment, len(usable_sessions("pretrain")))


def sweep_trials():
    """The sweep's random trials (every variant but the one retrained from best.json)."""
    return [v for v in exp_variants("sweep") if not variant_plan("sweep", v)["needs_best"]]


def exp_spec(wc):
    """The variant's spec, or None when its settings come from the sweep's best.json (its script reads it)."""
    if variant_plan(wc.experiment, wc.variant)["needs_best"]:
        return None
    return variant_spec(config, wc.experiment, wc.variant)


def exp_pretrain_stores(wc):
    k = variant_plan(wc.experiment, wc.variant)["pretrain_sessions"]
    eids = usable_sessions("pretrain")
    return expand("results/binned/{eid}.zarr", eid=eids[:k] if k else eids)


def exp_train_input(wc):
    plan = variant_plan(wc.experiment, wc.variant)
    inputs = {"store": f"results/binned/{wc.eid}.zarr"}
    if plan["needs_best"]:
        inputs["best"] = f"{EXP_DIR}/sweep/best.json"
    if wc.stage == "finetune":
        own = plan["own_pretrain"]
        inputs["pretrained"] = (
            f"{EXP_DIR}/{wc.experiment}/{wc.variant}/pretrain/model.pt" if own else "results/models/pretrain/model.pt"
        )
    return inputs


def exp_models(wc):
    """The checkpoints of one variant on one session, by method name."""
    names = {"finetune": "neds_finetuned", "scratch": "neds_scratch"}
    stages = variant_plan(wc.experiment, wc.variant)["stages"]
    return {names[s]: f"{EXP_DIR}/{wc.experiment}/{wc.variant}/{s}/{wc.eid}/model.pt" for s in stages}


def exp_evaluations(experiment, variants=None):
    return {
        v: expand(f"{EXP_DIR}/{experiment}/{v}/evaluation/{{eid}}.json", eid=usable_sessions("heldout"))
        for v in (variants or exp_variants(experiment))
    }


def exp_targets(experiment):
    return [
        f"{EXP_DIR}/{experiment}/summary.tsv",
        f"results/figures/experiment_{experiment}.png",
        f"results/figures/experiment_{experiment}.svg",
    ]
