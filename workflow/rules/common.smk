# Config validation, the session lists, wildcard constraints and the input/param functions.
from pathlib import Path

from neds.config import session_lists, validate_config
from neds.config import model_settings as neds_model_settings
from neds.config import train_settings as neds_train_settings
from neds import vocab
from neds.vocab import HELDOUT_ROLE, HELDOUT_STAGES, PRETRAIN_ROLE, PROBE_TARGETS, STAGES
from neds.experiments import DATA_AXES, EXPERIMENTS
from neds.stages import usable_eids

validate_config(config)  # the package's schema and validator, as on the command line: fills in every default

PRETRAIN_EIDS, HELDOUT_EIDS = session_lists(config)  # raises on held-out/pretrain leakage
ALL_EIDS = PRETRAIN_EIDS + HELDOUT_EIDS
ROLES = {**{e: PRETRAIN_ROLE for e in PRETRAIN_EIDS}, **{e: HELDOUT_ROLE for e in HELDOUT_EIDS}}
SIMULATED = config["data"]["source"] == "simulated"
REMOTE = config["data"]["one"]["mode"] == "remote"
SIM_DIR = config["simulation"]["output_dir"]


MODEL_KINDS = vocab.HELDOUT_STAGES  # the NEDS stages trained per held-out session (rule train_model)
PROBE_TARGETS = (vocab.PRETRAIN.name, vocab.FINETUNE.name)  # the models whose unit embeddings are probed


wildcard_constraints:
    eid=r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    stage="|".join(vocab.PER_SESSION_STAGES),  # pretrain_model and exp_pretrain: vocab.PRETRAIN_STAGES
    target="|".join(PROBE_TARGETS),
    experiment="|".join(EXPERIMENTS),
    variant=r"[A-Za-z0-9_.-]+",


def train_settings(stage):
    """TrainConfig settings of one stage (neds.config.train_settings)."""
    return neds_train_settings(config, stage)


def model_settings(stage):
    """ModelConfig settings of one stage's model (neds.config.model_settings)."""
    return neds_model_settings(config, stage)


def get_train_input(wildcards):
    """What a per-session stage trains on: the held-out session's store, and the pretrained model
    of a stage that starts from one (fine-tuning: NEDS's, NDT2's or POYO+'s)."""
    inputs = {"store": f"results/binned/{wildcards.eid}.zarr"}
    kind = vocab.stage(wildcards.stage)
    if kind.from_pretrained:
        inputs["pretrained"] = f"results/models/{kind.pretrained}/model.pt"
    return inputs


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
        return PRETRAIN_EIDS if role == PRETRAIN_ROLE else HELDOUT_EIDS
    return usable_eids(checkpoints.summarize_sessions.get().output.tsv, role)


def get_probe_input(wildcards, keyed=False):
    """Models and binned stores whose unit embeddings a probe reads: the pretrained model and the
    usable pretraining sessions, or each usable held-out session's fine-tuned model.

    keyed : False (the rule's input): {'models': [...], 'stores': [...]}, flat lists of files;
        True (the rule's params): {'models': {eid: checkpoint}, 'stores': {eid: store}}, each
        session paired with its model and store by its eid (the pretrained model under each of
        its sessions)
    """
    pretrain = wildcards.target == vocab.PRETRAIN.name
    eids = usable_sessions(PRETRAIN_ROLE if pretrain else HELDOUT_ROLE)
    models = {
        e: "results/models/pretrain/model.pt" if pretrain else f"results/models/{wildcards.target}/{e}/model.pt"
        for e in eids
    }
    stores = {e: f"results/binned/{e}.zarr" for e in eids}
    if keyed:
        return {"models": models, "stores": stores}
    return {"models": list(dict.fromkeys(models.values())), "stores": list(stores.values())}


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
        *expand("results/models/{kind}/{eid}/summary.json", kind=MODEL_KINDS, eid=usable_sessions(HELDOUT_ROLE)),
        "results/tables/metrics.tsv",
        "results/summary.md",
        *expand("results/probing/{target}/probe.json", target=PROBE_TARGETS),
        *expand(
            "results/figures/{name}.{ext}",
            name=("methods_encoding", "methods_decoding", "pretraining_gain", "training_curves"),
            ext=("png", "svg"),
        ),
        *expand("results/figures/examples_{eid}.{ext}", eid=usable_sessions(HELDOUT_ROLE), ext=("png", "svg")),
        *expand("results/figures/probing_{target}.{ext}", target=PROBE_TARGETS, ext=("png", "svg")),
        "results/tables/summary.html",
    ]


# ---------------------------------------------------------------- experiments (experiments.smk)
# Everything here reads the registry neds.experiments.EXPERIMENTS: an experiment's targets, jobs
# and summaries follow from its entry.
EXP_DIR = "results/experiments"


def n_usable_pretrain():
    return len(usable_sessions(PRETRAIN_ROLE))


def exp_variants(experiment):
    """An experiment's variants (neds.experiments.Variant), in table order."""
    return EXPERIMENTS[experiment].variants(config, n_usable_pretrain())


def exp_variant(wc):
    """The variant of wildcards experiment and variant."""
    return EXPERIMENTS[wc.experiment].variant(config, wc.variant, n_usable_pretrain())


def exp_candidates(experiment):
    """The variants an experiment's selection chooses its best from (rule exp_select)."""
    return EXPERIMENTS[experiment].candidates(config, n_usable_pretrain())


def exp_settings(wc, stage=None):
    """A variant's (model, training) settings of a stage (the wildcard stage unless given), or
    (None, None) for a variant whose settings come from its experiment's best.json: the training
    script reads that file (input best) when the job runs."""
    variant = exp_variant(wc)
    if variant.from_best:
        return None, None
    return variant.settings(config, stage or wc.stage)


def exp_best(wc):
    """{'best': its experiment's best.json} for a variant trained with the selected settings."""
    return {"best": f"{EXP_DIR}/{wc.experiment}/best.json"} if exp_variant(wc).from_best else {}


def exp_pretrain_input(wc):
    """A variant's own pretraining: the first pretrain_sessions usable pretraining stores (all by default)."""
    k = exp_variant(wc).pretrain_sessions
    eids = usable_sessions(PRETRAIN_ROLE)
    return {"stores": expand("results/binned/{eid}.zarr", eid=eids[:k] if k else eids), **exp_best(wc)}


def exp_train_input(wc):
    """A variant's per-session stage: the store, the pretrained model it starts from (its own,
    or the main run's, of the stage's architecture), and best.json where its settings come from it."""
    inputs = {"store": f"results/binned/{wc.eid}.zarr", **exp_best(wc)}
    kind = vocab.stage(wc.stage)
    if kind.from_pretrained:
        own = EXPERIMENTS[wc.experiment].own_pretrain
        folder = f"{EXP_DIR}/{wc.experiment}/{wc.variant}" if own else "results/models"
        inputs["pretrained"] = f"{folder}/{kind.pretrained}/model.pt"
    return inputs


def exp_models(wc):
    """The checkpoints of one variant on one session, by method name."""
    stages = EXPERIMENTS[wc.experiment].stages_of(exp_variant(wc))
    return {vocab.stage(s).method: f"{EXP_DIR}/{wc.experiment}/{wc.variant}/{s}/{wc.eid}/model.pt" for s in stages}


def exp_split(wc):
    """The splits a variant's models are scored on."""
    return EXPERIMENTS[wc.experiment].splits_of(exp_variant(wc))


def exp_evaluations(experiment, variants=None):
    """{variant name: its per-session evaluation files} of the given variants (default: all)."""
    return {
        v.name: expand(f"{EXP_DIR}/{experiment}/{v.name}/evaluation/{{eid}}.json", eid=usable_sessions(HELDOUT_ROLE))
        for v in (exp_variants(experiment) if variants is None else variants)
    }


def exp_targets(experiment):
    """What an experiment's target builds: its table and figure (and the best.json it selects)."""
    targets = [
        f"{EXP_DIR}/{experiment}/summary.tsv",
        f"results/figures/experiment_{experiment}.png",
        f"results/figures/experiment_{experiment}.svg",
    ]
    if EXPERIMENTS[experiment].selects_best:
        targets.append(f"{EXP_DIR}/{experiment}/best.json")
    return targets + list(EXPERIMENTS[experiment].extra_targets)


# ---------------------------------------------------------------- the peers comparison (experiments.smk)
BALANCE = "loss_balance"  # the experiment comparing balances of the losses (neds.experiments.EXPERIMENTS)
PEERS = "peers"  # the experiment comparing NEDS with POYO+ and NDT2 (neds.experiments.EXPERIMENTS)
RECIPE = "finetune_recipe"  # the experiment comparing fine-tuning recipes (neds.experiments.EXPERIMENTS)


def peers_runs(wildcards, what="summary.json"):
    """Each compared method's training runs: {method: {'pretrain': [its pretrained model's file],
    'finetune': [the file of each fine-tuned model, every seed and held-out session]}}, ``what``
    being summary.json or history.jsonl."""
    from neds.evaluate.peers import COMPARED

    eids = usable_sessions(HELDOUT_ROLE)
    variants = [v.name for v in exp_variants(PEERS)]
    runs = {}
    for method in COMPARED:
        stage = vocab.stage_of_method(method)
        runs[method] = {
            "pretrain": [f"results/models/{STAGES[stage].pretrained}/{what}"],
            "finetune": [f"{EXP_DIR}/{PEERS}/{v}/{stage}/{e}/{what}" for v in variants for e in eids],
        }
    return runs


def peers_histories(wildcards):
    """The training histories drawn by the peers' training-curves figure, by stage: each compared
    model's pretraining and, for the first seed, its fine-tuning on every held-out session."""
    first = exp_variants(PEERS)[0].name
    eids = usable_sessions(HELDOUT_ROLE)
    out = {}
    for method, runs in peers_runs(wildcards, "history.jsonl").items():
        stage = STAGES[vocab.stage_of_method(method)]
        out[stage.pretrained] = runs["pretrain"]
        out[stage.name] = [f"{EXP_DIR}/{PEERS}/{first}/{stage.name}/{e}/history.jsonl" for e in eids]
    return out


# ---------------------------------------------------------------- evaluation, figures, export
def heldout_models(wildcards):
    """The checkpoints of one held-out session scored by evaluate_session, named by their stage
    (neds.vocab.HELDOUT_STAGES; the script scores each under its stage's method name)."""
    return {s: f"results/models/{s}/{wildcards.eid}/model.pt" for s in HELDOUT_STAGES}


def training_histories(wildcards, stages=vocab.NEDS_STAGES):
    """The history.jsonl of every training run of ``stages`` (default: the main run's), by stage:
    a pretrained model's, and each usable held-out session's of the per-session stages."""
    return {
        s: (
            f"results/models/{s}/history.jsonl"
            if not STAGES[s].per_session
            else expand(f"results/models/{s}/{{eid}}/history.jsonl", eid=usable_sessions(HELDOUT_ROLE))
        )
        for s in stages
    }


def bwb_sessions(wildcards):
    """Each usable held-out session's binned store and predictions folder, by eid."""
    eids = usable_sessions(HELDOUT_ROLE)
    return {
        "stores": {e: f"results/binned/{e}.zarr" for e in eids},
        "predictions": {e: f"results/evaluation/{e}/predictions" for e in eids},
    }
