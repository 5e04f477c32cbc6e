"""The project's vocabulary: every stage, method, region, modality, masking scheme and metric
name is defined here, once, with what belongs to it. Nothing here imports torch, so the workflow
and the command line read it at start-up.

Words used throughout:

* a **stage** is one kind of training run (config key ``training.<stage>``, folder
  ``results/models/<stage>/``); it knows the model **mode** it trains (which outputs carry a loss),
  the **method** name its held-out models are scored under, and whether it starts from the
  pretrained model;
* a **method** is one row of the evaluation tables (a NEDS stage or a baseline);
* a **modality** is one input/output stream of the model (spikes and four behaviours), and so one
  term of the loss;
* a **masking scheme** is one of the paper's multi-task masks (section 3.2 of the paper);
* a **region** is one of the brain regions of the IBL repeated site that probing predicts;
* a **metric** is one column of the evaluation tables.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MODES",
    "SELF_SUPERVISED_MODE",
    "ARCHITECTURES",
    "ARCHITECTURE_SECTIONS",
    "NEDS_ARCHITECTURE",
    "NDT2_ARCHITECTURE",
    "POYO_PLUS_ARCHITECTURE",
    "Stage",
    "STAGES",
    "PRETRAIN",
    "FINETUNE",
    "SCRATCH",
    "ENCODING",
    "DECODING",
    "HELDOUT_STAGES",
    "PRETRAIN_STAGES",
    "PEER_STAGES",
    "PER_SESSION_STAGES",
    "NEDS_STAGES",
    "NDT2_PRETRAIN",
    "NDT2_FINETUNE",
    "POYO_PRETRAIN",
    "POYO_FINETUNE",
    "UNIMODAL_STAGES",
    "stage",
    "stage_of_method",
    "Method",
    "METHODS",
    "METHOD_ORDER",
    "NEDS_FINETUNED",
    "NEDS_SCRATCH",
    "UNIMODAL_ENCODING",
    "UNIMODAL_DECODING",
    "NDT2",
    "POYO_PLUS",
    "LINEAR",
    "RRR",
    "ORACLE",
    "MODALITIES",
    "LOSS_BALANCES",
    "NULL_BALANCES",
    "GRADIENT_GROUPS",
    "GRADIENT_BALANCE_FALLBACK",
    "LIFT_ONLY",
    "SESSION_INITS",
    "SPIKE_BIAS_INITS",
    "BEHAVIOURS",
    "DYNAMIC_BEHAVIOURS",
    "STATIC_BEHAVIOURS",
    "N_CLASSES",
    "MASKING_SCHEMES",
    "MODE_SCHEMES",
    "MULTIMODAL_MODE",
    "ENCODING_MODE",
    "DECODING_MODE",
    "Region",
    "REGIONS",
    "REGION_NAMES",
    "ENCODING_METRICS",
    "DECODING_METRICS",
    "SELECTION_METRICS",
    "HEADLINE_METRICS",
    "METRIC_LABELS",
    "SPLITS",
    "ROLES",
    "PRETRAIN_ROLE",
    "HELDOUT_ROLE",
    "PROBE_TARGETS",
]

# ------------------------------------------------------------------------------------ modes
MULTIMODAL_MODE = "multimodal"
ENCODING_MODE = "encoding"
DECODING_MODE = "decoding"
SELF_SUPERVISED_MODE = "self_supervised"
MODES = (MULTIMODAL_MODE, ENCODING_MODE, DECODING_MODE, SELF_SUPERVISED_MODE)
"""What a model is trained to predict: everything (multimodal), spikes from behaviour
(encoding), behaviour from spikes (decoding), masked spikes from the other spikes
(self-supervised: NDT2's pretraining)."""

# ------------------------------------------------------------------------------------ architectures
NEDS_ARCHITECTURE = "neds"
NDT2_ARCHITECTURE = "ndt2"
POYO_PLUS_ARCHITECTURE = "poyo_plus"
ARCHITECTURES = (NEDS_ARCHITECTURE, NDT2_ARCHITECTURE, POYO_PLUS_ARCHITECTURE)
"""The model architectures: NEDS (:mod:`neds.model.neds`) and its peers of the paper's comparison,
NDT2 (:mod:`neds.peers.ndt2`) and POYO+ (:mod:`neds.peers.poyo_plus`). Each architecture's sizes
are one config section (``model``, ``ndt2``, ``poyo_plus``)."""
ARCHITECTURE_SECTIONS = {NEDS_ARCHITECTURE: "model", NDT2_ARCHITECTURE: "ndt2", POYO_PLUS_ARCHITECTURE: "poyo_plus"}
"""The config section holding each architecture's model settings."""


# ------------------------------------------------------------------------------------ stages
@dataclass(frozen=True)
class Stage:
    """One kind of training run.

    name : the config key ``training.<name>`` and the folder ``results/models/<name>/``
    mode : the model mode it trains (one of :data:`MODES`)
    method : the method name its models are scored under (None: not scored per session)
    pretrained : the stage whose model it starts from (its shared weights), or None: it starts
        from random weights
    per_session : whether it trains one model per held-out session (else one on all
        pretraining sessions)
    title : how figures and logs name it
    architecture : the model it trains (one of :data:`ARCHITECTURES`)
    """

    name: str
    mode: str
    method: str | None
    pretrained: str | None
    per_session: bool
    title: str
    architecture: str = NEDS_ARCHITECTURE

    def __str__(self) -> str:
        return self.name

    @property
    def from_pretrained(self) -> bool:
        """Whether it starts from a pretrained model (:attr:`pretrained`)."""
        return self.pretrained is not None


PRETRAIN = Stage("pretrain", MULTIMODAL_MODE, None, None, False, "pretraining (all pretraining sessions)")
FINETUNE = Stage("finetune", MULTIMODAL_MODE, "neds_finetuned", "pretrain", True, "fine-tuning (per held-out session)")
SCRATCH = Stage("scratch", MULTIMODAL_MODE, "neds_scratch", None, True, "from scratch (per held-out session)")
ENCODING = Stage("encoding", ENCODING_MODE, "unimodal_encoding", None, True, "unimodal encoding (per held-out session)")
DECODING = Stage("decoding", DECODING_MODE, "unimodal_decoding", None, True, "unimodal decoding (per held-out session)")
NDT2_PRETRAIN = Stage(
    "ndt2_pretrain",
    SELF_SUPERVISED_MODE,
    None,
    None,
    False,
    "NDT2 pretraining (masked spike patches, all pretraining sessions)",
    NDT2_ARCHITECTURE,
)
NDT2_FINETUNE = Stage(
    "ndt2_finetune",
    DECODING_MODE,
    "ndt2",
    "ndt2_pretrain",
    True,
    "NDT2 fine-tuning (per held-out session)",
    NDT2_ARCHITECTURE,
)
POYO_PRETRAIN = Stage(
    "poyo_pretrain",
    DECODING_MODE,
    None,
    None,
    False,
    "POYO+ pretraining (all pretraining sessions)",
    POYO_PLUS_ARCHITECTURE,
)
POYO_FINETUNE = Stage(
    "poyo_finetune",
    DECODING_MODE,
    "poyo_plus",
    "poyo_pretrain",
    True,
    "POYO+ fine-tuning (per held-out session)",
    POYO_PLUS_ARCHITECTURE,
)

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        PRETRAIN,
        FINETUNE,
        SCRATCH,
        ENCODING,
        DECODING,
        NDT2_PRETRAIN,
        NDT2_FINETUNE,
        POYO_PRETRAIN,
        POYO_FINETUNE,
    )
}
HELDOUT_STAGES = tuple(s.name for s in STAGES.values() if s.per_session and s.architecture == NEDS_ARCHITECTURE)
"""The NEDS stages trained per held-out session (the main run's evaluation), in table order."""
PRETRAIN_STAGES = tuple(s.name for s in STAGES.values() if not s.per_session)
"""The stages trained once on all usable pretraining sessions (NEDS's and each peer's)."""
PEER_STAGES = tuple(s.name for s in STAGES.values() if s.per_session and s.architecture != NEDS_ARCHITECTURE)
"""The peers' stages trained per held-out session (fine-tuned NDT2 and POYO+): the peers comparison."""
PER_SESSION_STAGES = HELDOUT_STAGES + PEER_STAGES
NEDS_STAGES = tuple(s.name for s in STAGES.values() if s.architecture == NEDS_ARCHITECTURE)
"""The stages of the main run (NEDS's): its training-curves figure."""
UNIMODAL_STAGES = tuple(
    s.name for s in STAGES.values() if s.architecture == NEDS_ARCHITECTURE and s.mode != MULTIMODAL_MODE
)


def stage(name: str) -> Stage:
    """The stage called ``name`` (ValueError naming the known stages otherwise)."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown training stage {name!r}; use one of {tuple(STAGES)}") from None


# ------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """One row of the evaluation tables.

    name : the ``method`` column's value
    label : its axis label in figures (may hold a line break)
    colour : its colour in figures
    stage : the training stage whose models it scores (None for the baselines fitted in the
        evaluation and for the oracle)
    """

    name: str
    label: str
    colour: str
    stage: str | None = None


NEDS_FINETUNED = FINETUNE.method
NEDS_SCRATCH = SCRATCH.method
UNIMODAL_ENCODING = ENCODING.method
UNIMODAL_DECODING = DECODING.method
NDT2 = NDT2_FINETUNE.method
POYO_PLUS = POYO_FINETUNE.method
LINEAR = "linear"
RRR = "rrr"
ORACLE = "oracle"

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(NEDS_FINETUNED, "NEDS\nfine-tuned", "#1f5f99", FINETUNE.name),
        Method(NEDS_SCRATCH, "NEDS\nfrom scratch", "#74a9cf", SCRATCH.name),
        Method(UNIMODAL_ENCODING, "unimodal\nencoding", "#d9822b", ENCODING.name),
        Method(UNIMODAL_DECODING, "unimodal\ndecoding", "#d9822b", DECODING.name),
        Method(POYO_PLUS, "POYO+\nfine-tuned", "#6a3d9a", POYO_FINETUNE.name),
        Method(NDT2, "NDT2\nfine-tuned", "#b15928", NDT2_FINETUNE.name),
        Method(LINEAR, "linear\nbaseline", "#7f7f7f"),
        Method(RRR, "reduced-rank\nregression", "#a6761d"),
        Method(ORACLE, "oracle\n(true rates)", "#222222"),
    )
}
METHOD_ORDER = tuple(METHODS)
"""Methods in the order of the tables and figures."""


def stage_of_method(name: str) -> str:
    """The training stage whose models the method ``name`` scores (ValueError for a baseline)."""
    method = METHODS.get(name)
    if method is None or method.stage is None:
        trained = [m.name for m in METHODS.values() if m.stage]
        raise ValueError(f"{name!r} is not a trained method; use one of {trained}")
    return method.stage


# ------------------------------------------------------------------------------------ modalities
DYNAMIC_BEHAVIOURS = ("wheel", "whisker")
"""Behaviours with a value per time bin (wheel speed, whisker motion energy)."""
STATIC_BEHAVIOURS = ("choice", "block")
"""Behaviours with one class per trial (the choice, the block prior)."""
BEHAVIOURS = DYNAMIC_BEHAVIOURS + STATIC_BEHAVIOURS
MODALITIES = ("spikes",) + BEHAVIOURS
"""The model's token streams, in token order, and so the terms of its loss."""
N_CLASSES = {"choice": 2, "block": 3}
"""Classes of the static behaviours: choice -1 / +1, block prior 0.2 / 0.5 / 0.8."""

LOSS_BALANCES = (
    "weights",
    "null",
    "null_units",
    "uncertainty",
    "gradnorm",
    "gradnorm_groups",
    "gradnorm_lift",
    "paper",
)
"""How the modalities' losses make the training loss (``training.loss``;
:mod:`neds.model.balance`): hand-set weights, each relative to its null deviance (a population
counting once, or once per unit), those weighted by learned uncertainties, those with each
modality's gradient (or the neural and the behavioural modalities' gradients together) scaled
to the same norm where it enters the shared trunk, or those below the mean norm there lifted to
it, or the NEDS authors' normalisation."""
NULL_BALANCES = ("null", "null_units", "uncertainty", "gradnorm", "gradnorm_groups", "gradnorm_lift")
"""The balances whose training loss is relative to the null deviances."""
GRADIENT_GROUPS = {
    "gradnorm": tuple((m,) for m in MODALITIES),
    "gradnorm_groups": (("spikes",), BEHAVIOURS),
    "gradnorm_lift": tuple((m,) for m in MODALITIES),
}
"""The balances that scale gradients where they enter the shared trunk, each with the groups of
modalities whose gradients it brings to the same norm there (a group's modalities scaled alike):
``gradnorm`` and ``gradnorm_lift`` each modality alone, ``gradnorm_groups`` the neural against
the behavioural."""
GRADIENT_BALANCE_FALLBACK = "uncertainty"
"""The balance a model without a shared per-modality representation (the peers, NDT2 and POYO+;
:attr:`neds.model.base.TrialModel.shared_output`) trains with when a balance of
:data:`GRADIENT_GROUPS` is asked for: the null-relative terms weighted by learned uncertainties,
the default before the gradient balances. The run's log and its ``summary.json`` (``loss``) say
so."""
LIFT_ONLY = ("gradnorm_lift",)
"""Of :data:`GRADIENT_GROUPS`, the balances that only lift a group's gradient below the mean norm
to it, leaving those above it as they are."""

SESSION_INITS = ("random", "pretrained")
"""How a fine-tuned session's layers start (``training.<stage>.session_init``): at random (the
paper), or those without a unit axis copied from the best-fitting pretrained session."""

SPIKE_BIAS_INITS = ("zero", "mean_rate")
"""How each unit's spike output bias starts (``training.<stage>.spike_bias_init``)."""

MASKING_SCHEMES = ("neural", "behavioural", "within_neural", "within_behavioural", "cross_modal")
"""The multi-task masking schemes (the paper, section 3.2)."""
MODE_SCHEMES = {MULTIMODAL_MODE: MASKING_SCHEMES, ENCODING_MODE: ("neural",), DECODING_MODE: ("behavioural",)}
"""The masking schemes each model mode trains with (unless ``training.<stage>.schemes`` says otherwise)."""

SPLITS = ("train", "val", "test")
PRETRAIN_ROLE = "pretrain"
HELDOUT_ROLE = "heldout"
ROLES = (PRETRAIN_ROLE, HELDOUT_ROLE)
"""What a session is for: pretraining, or a held-out animal to fine-tune and evaluate on."""


# ------------------------------------------------------------------------------------ regions
@dataclass(frozen=True)
class Region:
    """A probed brain region: its Beryl acronym, its Cosmos parent and its colour in figures."""

    name: str
    cosmos: str
    colour: str


REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        Region("CA1", "HPF", "#1b9e77"),
        Region("DG", "HPF", "#d95f02"),
        Region("LP", "TH", "#7570b3"),
        Region("PO", "TH", "#e7298a"),
        Region("VISa", "Isocortex", "#66a61e"),
    )
}
"""The five regions of the IBL repeated site that region probing predicts (the paper, section 5)."""
REGION_NAMES = tuple(REGIONS)
PROBE_TARGETS = (PRETRAIN.name, FINETUNE.name)
"""The stages whose models' unit embeddings are probed: the pretrained model (pretraining
sessions) and the fine-tuned models (held-out sessions)."""

# ------------------------------------------------------------------------------------ metrics
ENCODING_METRICS = ("bps_unit_mean", "bps_pooled", "deviance_explained", "single_trial_r2", "psth_r2")
DECODING_METRICS = ("choice_acc", "choice_balanced_acc", "block_acc", "block_balanced_acc", "wheel_r2", "whisker_r2")
SELECTION_METRICS = ("bps_unit_mean", "choice_acc", "block_acc", "wheel_r2", "whisker_r2")
"""The validation metrics whose mean selects checkpoints and sweep configurations."""
HEADLINE_METRICS = ("bps_unit_mean", "bps_pooled", "choice_acc", "block_acc", "wheel_r2", "whisker_r2")
"""The metrics of the summary tables."""
METRIC_LABELS = {
    "bps_unit_mean": "bits per spike (mean over units)",
    "bps_pooled": "bits per spike (pooled over units)",
    "deviance_explained": "Poisson deviance explained",
    "single_trial_r2": "single-trial R²",
    "psth_r2": "PSTH R²",
    "choice_acc": "choice accuracy (fraction correct)",
    "block_acc": "block accuracy (fraction correct)",
    "wheel_r2": "wheel speed R²",
    "whisker_r2": "whisker motion energy R²",
}
