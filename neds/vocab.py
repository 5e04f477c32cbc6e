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
    "Stage",
    "STAGES",
    "PRETRAIN",
    "FINETUNE",
    "SCRATCH",
    "ENCODING",
    "DECODING",
    "HELDOUT_STAGES",
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
    "LINEAR",
    "RRR",
    "ORACLE",
    "MODALITIES",
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
MODES = (MULTIMODAL_MODE, ENCODING_MODE, DECODING_MODE)
"""What a model is trained to predict: everything (multimodal), spikes from behaviour
(encoding), behaviour from spikes (decoding)."""


# ------------------------------------------------------------------------------------ stages
@dataclass(frozen=True)
class Stage:
    """One kind of training run.

    name : the config key ``training.<name>`` and the folder ``results/models/<name>/``
    mode : the model mode it trains (one of :data:`MODES`)
    method : the method name its models are scored under (None: not scored per session)
    from_pretrained : whether it starts from the pretrained model's shared weights
    per_session : whether it trains one model per held-out session (else one on all
        pretraining sessions)
    title : how figures and logs name it
    """

    name: str
    mode: str
    method: str | None
    from_pretrained: bool
    per_session: bool
    title: str

    def __str__(self) -> str:
        return self.name


PRETRAIN = Stage("pretrain", MULTIMODAL_MODE, None, False, False, "pretraining (all pretraining sessions)")
FINETUNE = Stage("finetune", MULTIMODAL_MODE, "neds_finetuned", True, True, "fine-tuning (per held-out session)")
SCRATCH = Stage("scratch", MULTIMODAL_MODE, "neds_scratch", False, True, "from scratch (per held-out session)")
ENCODING = Stage(
    "encoding", ENCODING_MODE, "unimodal_encoding", False, True, "unimodal encoding (per held-out session)"
)
DECODING = Stage(
    "decoding", DECODING_MODE, "unimodal_decoding", False, True, "unimodal decoding (per held-out session)"
)

STAGES: dict[str, Stage] = {s.name: s for s in (PRETRAIN, FINETUNE, SCRATCH, ENCODING, DECODING)}
HELDOUT_STAGES = tuple(s.name for s in STAGES.values() if s.per_session)
"""The stages trained per held-out session, in table order."""
UNIMODAL_STAGES = tuple(s.name for s in STAGES.values() if s.mode != MULTIMODAL_MODE)


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
