"""Training: pretraining, fine-tuning, training from scratch and the unimodal models.

One loop serves all of them, as the paper trains them: AdamW, a one-cycle schedule with cosine
annealing, multi-task masking drawn per trial, validation every ``val_every`` epochs with the
mean of the validation metrics, atomic checkpoints that resume bit for bit on CPU, bf16 autocast
on CUDA and data-parallel training over several processes started by ``torchrun``.

Reproducibility: the data order, the masks and the dropout draws of epoch ``e`` on rank ``r``
come from generators seeded with ``(seed, e, r)``, so an interrupted run resumed from its last
checkpoint makes exactly the draws an uninterrupted run makes, and checkpoints hold no RNG state.

Resumption is keyed to the run's inputs: every checkpoint holds the run's fingerprint
(``ckpt["inputs"]``, :func:`run_fingerprint`: the data, the settings, the mode, the pretrained
weights and the code version). A checkpoint of other inputs is discarded with a warning naming
what differs, and the run starts from scratch; a finished run started again rewrites its outputs.

Training refuses non-finite data before the first step and stops at the first non-finite loss
(:class:`NonFiniteLossError`); no checkpoint or ``model.pt`` is written from non-finite weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from neds import __version__
from neds.config import schema_defaults
from neds.data.dataset import TrialData
from neds.evaluate.evaluation import SELECTION_KEYS, predict_trials, score
from neds.io.files import atomic_write, write_json
from neds.model.balance import VS_NULL, LossBalance, null_deviances
from neds.model.base import TrialModel
from neds.model.neds import LOSS_PARTS, model_summary
from neds.vocab import (
    GRADIENT_BALANCE_FALLBACK,
    GRADIENT_GROUPS,
    LOSS_BALANCES,
    MODE_SCHEMES,
    MULTIMODAL_MODE,
    NDT2_ARCHITECTURE,
    NEDS_ARCHITECTURE,
    NULL_BALANCES,
    POYO_PLUS_ARCHITECTURE,
    SESSION_INITS,
    SPIKE_BIAS_INITS,
)

__all__ = [
    "NonFiniteDataError",
    "NonFiniteLossError",
    "TrainConfig",
    "train",
    "evaluate",
    "build_model",
    "build_stage_model",
    "model_class",
    "param_groups",
    "load_checkpoint",
    "load_model",
    "init_shared_from",
    "initialise",
    "init_sessions_from",
    "mean_log_rates",
    "training_trials",
    "resolve_device",
    "setup_distributed",
    "MODE_SCHEMES",
    "code_version",
    "data_fingerprint",
    "checkpoint_identity",
    "run_fingerprint",
]

_log = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoints"
KEEP = ("best", "last")
_VAL_NAMES = {"bps_unit_mean": "bps"}  # history keys of the selection metrics (val_bps, val_choice_acc, ...)
OUTPUTS = ("model.pt", "history.jsonl", "summary.json")
# training settings that cannot change the weights, left out of the run's fingerprint
_UNFINGERPRINTED = ("progress",)


class NonFiniteLossError(RuntimeError):
    """A training step gave a non-finite loss (or left non-finite weights); training stops and no
    checkpoint or model is written from that state. The message names the epoch, the step, the
    modalities and the sessions of the batch."""


class NonFiniteDataError(ValueError):
    """The training data hold NaN or infinite values (named by tensor and session)."""


_STAGE_DEFAULTS = schema_defaults("definitions", "stage_settings")  # the schema is the one source of defaults
_SHARED_DEFAULTS = schema_defaults("training")


@dataclass
class TrainConfig:
    """Optimisation settings of one training run: config section ``training.<stage>`` over the
    shared ``training`` keys (:func:`neds.config.train_settings`). Each field's default and meaning
    are the schema's (``neds/schema/config.schema.yaml``); ``progress`` is not a config key."""

    epochs: int = _STAGE_DEFAULTS["epochs"]
    batch_size: int = _STAGE_DEFAULTS["batch_size"]  # global: split evenly over the ranks of a distributed run
    max_lr: float = _STAGE_DEFAULTS["max_lr"]
    weight_decay: float = _STAGE_DEFAULTS["weight_decay"]
    eps: float = _STAGE_DEFAULTS["eps"]
    warmup_fraction: float = _STAGE_DEFAULTS["warmup_fraction"]
    div_factor: float = _STAGE_DEFAULTS["div_factor"]  # the schedule starts at max_lr / div_factor
    mask_ratio: float = _STAGE_DEFAULTS["mask_ratio"]
    schemes: tuple[str, ...] | None = _STAGE_DEFAULTS["schemes"]  # None: the schemes of the model's mode
    loss: str = _SHARED_DEFAULTS["loss"]  # how the modalities' losses are balanced (neds.model.balance)
    loss_weights: dict[str, float] | None = field(default_factory=lambda: dict(_SHARED_DEFAULTS["loss_weights"]))
    val_every: int = _SHARED_DEFAULTS["val_every"]
    seed: int = _SHARED_DEFAULTS["seed"]
    grad_clip: float = _STAGE_DEFAULTS["grad_clip"]
    device: str = _SHARED_DEFAULTS["device"]
    bf16: bool = _SHARED_DEFAULTS["bf16"]  # autocast to bfloat16 on CUDA
    eval_batch_size: int = _SHARED_DEFAULTS["eval_batch_size"]
    progress: bool = True  # progress bars (not a config key: cannot change the weights)
    keep: str = _SHARED_DEFAULTS["keep"]  # model.pt: 'best' (by validation score) or 'last' (the end of the schedule)
    train_fraction: float = _STAGE_DEFAULTS[
        "train_fraction"
    ]  # train on this fraction of each session's training trials
    # the fine-tuning recipe (stages that start from a pretrained model; :func:`initialise`)
    frozen_epochs: int = _STAGE_DEFAULTS["frozen_epochs"]  # the shared weights are not updated in these first epochs
    shared_lr_scale: float = _STAGE_DEFAULTS["shared_lr_scale"]  # the shared weights' learning rate, x the schedule's
    session_init: str = _STAGE_DEFAULTS["session_init"]  # 'random' or 'pretrained' (the best pretrained session's)
    spike_bias_init: str = _STAGE_DEFAULTS["spike_bias_init"]  # 'zero' or 'mean_rate' (every stage)

    def __post_init__(self) -> None:
        unknown = set(self.loss_weights or {}) - set(LOSS_PARTS)
        if unknown:
            raise ValueError(f"unknown loss_weights {sorted(unknown)}; use modalities from {LOSS_PARTS}")
        if self.loss not in LOSS_BALANCES:
            raise ValueError(f"training loss={self.loss!r} is not one of {LOSS_BALANCES}")
        if self.keep not in KEEP:
            raise ValueError(f"training keep={self.keep!r} is not one of {KEEP}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction={self.train_fraction} must be in (0, 1]")
        if self.session_init not in SESSION_INITS:
            raise ValueError(f"training session_init={self.session_init!r} is not one of {SESSION_INITS}")
        if self.spike_bias_init not in SPIKE_BIAS_INITS:
            raise ValueError(f"training spike_bias_init={self.spike_bias_init!r} is not one of {SPIKE_BIAS_INITS}")
        if self.frozen_epochs < 0 or self.shared_lr_scale < 0:
            raise ValueError("training frozen_epochs and shared_lr_scale cannot be negative")

    @property
    def transfers(self) -> bool:
        """Whether it sets a fine-tuning recipe other than the paper's (which only a stage that
        starts from a pretrained model can follow)."""
        return self.frozen_epochs > 0 or self.shared_lr_scale != 1.0 or self.session_init != "random"

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if d.get("schemes") is not None:
            d["schemes"] = tuple(d["schemes"])
        return cls(**d)


# ---------------------------------------------------------------------------------------- devices
def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA if available (this rank's local GPU under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("training.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return torch.device(name)


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _seed_everything(seed: int, epoch: int, rank: int) -> tuple[torch.Generator, torch.Generator]:
    """Seed dropout (global RNGs) and return (data-order, mask) generators for one epoch."""
    base = np.random.SeedSequence([seed, epoch, rank]).generate_state(3, dtype=np.uint64)
    torch.manual_seed(int(base[0]) & 0x7FFF_FFFF_FFFF_FFFF)
    order = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]) & 0x7FFF_FFFF_FFFF_FFFF
    )
    masks = torch.Generator().manual_seed(int(base[2]) & 0x7FFF_FFFF_FFFF_FFFF)
    return order, masks


# ---------------------------------------------------------------------------------------- models
def model_class(architecture: str) -> type[TrialModel]:
    """The model class of an architecture (:data:`neds.vocab.ARCHITECTURES`); the peers' modules
    are imported only when asked for."""
    if architecture == NEDS_ARCHITECTURE:
        from neds.model.neds import NEDS

        return NEDS
    if architecture == NDT2_ARCHITECTURE:
        from neds.peers.ndt2 import NDT2

        return NDT2
    if architecture == POYO_PLUS_ARCHITECTURE:
        from neds.peers.poyo_plus import POYOPlusModel

        return POYOPlusModel
    from neds.vocab import ARCHITECTURES

    raise ValueError(f"unknown model architecture {architecture!r}; use one of {ARCHITECTURES}")


def build_model(
    model_cfg,
    n_units: list[int],
    mode: str = MULTIMODAL_MODE,
    eids: list[str] | None = None,
    architecture: str = NEDS_ARCHITECTURE,
    subjects: list[str] | None = None,
) -> TrialModel:
    """A model in its initial state over the session vocabulary ``eids`` (units ``n_units``;
    ``eids`` None: :func:`train` names the sessions after its data).

    model_cfg : the architecture's config dataclass, or a dict of its fields
    architecture : one of :data:`neds.vocab.ARCHITECTURES`
    subjects : the subject of each session (architectures with subject context, NDT2; ignored
        by the others)
    """
    cls = model_class(architecture)
    cfg = model_cfg if isinstance(model_cfg, cls.Config) else cls.Config(**model_cfg)
    if getattr(cls, "uses_subjects", False):
        return cls(cfg, n_units, mode, eids, subjects=subjects)
    return cls(cfg, n_units, mode, eids)


def build_stage_model(stage: str, model_config: dict, data: TrialData) -> TrialModel:
    """The model of ``stage`` (its architecture and mode, :data:`neds.vocab.STAGES`) in its initial
    state over the sessions of ``data`` (their units, ids and subjects), its time axis
    (``n_bins``, ``bin_size_s``, where its config has them) the binned trials' of ``data``."""
    from dataclasses import fields as config_fields

    from neds.vocab import stage as stage_of

    kind = stage_of(stage)
    cls = model_class(kind.architecture)
    shape = {"n_bins": int(data.spikes.shape[1]), "bin_size_s": data.bin_size_s}
    known = {f.name for f in config_fields(cls.Config)}
    config = {**model_config, **{k: v for k, v in shape.items() if k in known}}
    return build_model(config, data.n_units, kind.mode, list(data.eids), kind.architecture, data.subjects)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`train` (raises with the path if it is not one)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint ({exc}); retrain or restore it") from exc
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise ValueError(f"{path} is not a checkpoint (no model_state); pass a file written by neds.train")
    return ckpt


def load_model(path: str | Path, map_location="cpu") -> tuple[TrialModel, dict]:
    """The model of a checkpoint, in eval mode, and the checkpoint dict.

    The session vocabulary saved with the weights (``model.eids``) must be the checkpoint's
    (``ckpt["vocab"]["eids"]``); a ValueError says so otherwise, or if the weights are not those
    of this version's model.
    """
    ckpt = load_checkpoint(path, map_location)
    vocab = ckpt["vocab"]
    architecture = ckpt.get("architecture", NEDS_ARCHITECTURE)
    model = build_model(
        ckpt["model_config"], vocab["n_units"], ckpt["mode"], vocab["eids"], architecture, vocab.get("subjects")
    )
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise ValueError(
            f"{path} does not hold the weights of this version's {architecture} model ({exc}); retrain it"
        ) from exc
    if model.eids != list(vocab["eids"]):
        raise ValueError(
            f"{path}: the weights are indexed by the sessions {model.eids}, the checkpoint's vocabulary lists "
            f"{vocab['eids']}; the checkpoint is inconsistent, retrain it"
        )
    return model.eval(), ckpt


def init_shared_from(model: TrialModel, checkpoint: str | Path) -> list[str]:
    """Start fine-tuning from a pretrained checkpoint of the same architecture
    (:meth:`~neds.model.base.TrialModel.init_from_pretrained`): for NEDS, copy everything outside
    ``model.sessions`` (modality and time embeddings, mask token, transformer).

    The session layers of ``model`` (for NEDS: stitchers, session embedding, heads) and its session
    vocabulary stay as initialised: fine-tuning learns new ones for the new animal. Returns the
    names of the copied tensors.
    """
    ckpt = load_checkpoint(checkpoint)
    architecture = ckpt.get("architecture", NEDS_ARCHITECTURE)
    if architecture != model.architecture:
        raise ValueError(
            f"pretrained checkpoint {checkpoint} is a {architecture} model; a {model.architecture} model cannot "
            "start from it"
        )
    return model.init_from_pretrained(ckpt["model_state"], str(checkpoint))


def initialise(model: TrialModel, data: TrialData, tcfg: TrainConfig, pretrained: str | Path | None = None) -> dict:
    """Bring a stage's model from its random initial state to its starting point: the shared
    weights of ``pretrained`` (:func:`init_shared_from`), then, as ``tcfg`` says, each unit's spike
    bias at its mean rate over the training trials (``spike_bias_init``) and the new session's
    layers copied from a pretrained session (``session_init``, :func:`init_sessions_from`).
    Returns what it did, for the run's provenance."""
    done: dict = {}
    if pretrained is None and tcfg.transfers:
        raise ValueError(
            "training frozen_epochs, shared_lr_scale and session_init set how a pretrained model is fine-tuned; "
            "this stage trains from random weights, so leave them at their defaults (0, 1.0, random) for it"
        )
    if pretrained is not None:
        init_shared_from(model, pretrained)
        done["pretrained"] = str(pretrained)
    idx = training_trials(data, tcfg.train_fraction)
    if tcfg.spike_bias_init == "mean_rate":
        try:
            model.init_spike_bias(mean_log_rates(data, idx))
        except NotImplementedError as exc:
            raise ValueError(f"training spike_bias_init: mean_rate: {exc}; use 'zero'") from exc
        done["spike_bias_init"] = "mean_rate"
    if tcfg.session_init == "pretrained":
        done["session_init_from"] = init_sessions_from(model, pretrained, data, idx, tcfg)
    return done


def mean_log_rates(data: TrialData, idx: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """(S, N_max): the log of each unit's mean count per bin over the trials ``idx`` of its
    session (at least ``floor``; 0 for the padding past a session's units)."""
    out = torch.zeros(len(data.eids), data.spikes.shape[2])
    for s in range(len(data.eids)):
        n, rows = int(data.n_units[s]), idx[data.session[idx] == s]
        if len(rows):
            out[s, :n] = data.spikes[rows, :, :n].double().mean((0, 1)).clamp(min=floor).log().float()
    return out


@torch.no_grad()
def init_sessions_from(
    model: TrialModel, checkpoint: str | Path | None, data: TrialData, idx: torch.Tensor, tcfg: TrainConfig
) -> str:
    """Start the session layers of ``model`` that have no unit axis
    (:meth:`~neds.model.base.TrialModel.transferable_session_state`) from one session of the
    pretrained ``checkpoint``: each pretrained session's layers in turn are copied into every
    session of ``model``, and the one with the lowest loss (each modality relative to its null
    deviance, :class:`~neds.model.balance.LossBalance` ``null``) on up to 64 of the training
    trials ``idx``, masked as in training from ``tcfg.seed``, is kept. Returns its eid."""
    names = model.transferable_session_state()
    if checkpoint is None or not names:
        raise ValueError(
            f"training session_init: pretrained copies session layers of a pretrained {model.architecture} model, "
            f"which {'this stage does not start from' if checkpoint is None else 'this architecture does not have'}; "
            "use 'random'"
        )
    ckpt = load_checkpoint(checkpoint)
    pretrained, candidates = ckpt["model_state"], list(ckpt["vocab"]["eids"])
    own = model.state_dict()
    for name, axis in names.items():
        want = own[name].shape[:axis] + own[name].shape[axis + 1 :]
        got = pretrained[name].shape[:axis] + pretrained[name].shape[axis + 1 :]
        if want != got:
            raise ValueError(f"{checkpoint}: {name} is {tuple(got)} per session, the model's {tuple(want)}")
    rows = idx[:64]
    batch = data.batch(rows)
    schemes = tuple(tcfg.schemes) if tcfg.schemes else MODE_SCHEMES.get(model.mode)
    masks = model.draw_masks(
        len(rows), batch.spikes.shape[1], tcfg.mask_ratio, torch.Generator().manual_seed(tcfg.seed), schemes
    )
    balance = LossBalance("null", nulls=null_deviances(data, idx), eids=list(data.eids))
    was_training = model.training
    model.eval()

    def copy(c: int) -> None:
        model.load_state_dict(
            {name: pretrained[name].narrow(axis, c, 1).expand(own[name].shape).clone() for name, axis in names.items()},
            strict=False,
        )

    losses = []
    for c in range(len(candidates)):
        copy(c)
        losses.append(float(balance(model.loss_terms(model(batch, masks), batch, masks), batch.session)[0]))
    best = int(np.argmin(losses))
    copy(best)
    model.train(was_training)
    _log.info(
        "new session layers start from pretrained session %s (loss %.4g; candidates %s)",
        candidates[best],
        losses[best],
        losses,
    )
    return candidates[best]


def training_trials(data: TrialData, fraction: float = 1.0) -> torch.Tensor:
    """Indices of the training trials used: all of the train split, or per session the first
    ``round(fraction * n)`` (at least one) of its training trials in a fixed random order, so a
    smaller fraction's trials are a subset of a larger one's whatever the training seed."""
    idx = data.indices("train")
    if fraction >= 1.0:
        return idx
    keep = []
    for s in range(len(data.eids)):
        own = idx[data.session[idx] == s]
        order = torch.from_numpy(np.random.default_rng(0).permutation(len(own)))
        keep.append(own[order[: max(1, round(fraction * len(own)))]].sort().values)
    return torch.cat(keep)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: ``weight_decay`` on every parameter of two or more dimensions,
    none on the others and on the embeddings.

    Decayed are the weight matrices and the session layers' stacked (S, ...) tensors, their
    per-session biases and pooling weights included. Not decayed are vectors (biases and norms of
    the transformer, the mask token) and what a module lists by name in its ``no_weight_decay``
    attribute, its embeddings: for :class:`~neds.model.neds.NEDS` the modality and time embeddings
    and the mask token, for :class:`~neds.model.neds.SessionEmbedding` its weight.
    """
    exempt = {
        id(getattr(module, name)) for module in model.modules() for name in getattr(module, "no_weight_decay", ())
    }
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 and id(p) not in exempt else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------- evaluation
def evaluate(
    model: TrialModel, data: TrialData, split: str = "val", device=None, batch_size: int = 64, bf16: bool = True
) -> dict:
    """Validation metrics of a model on one split, averaged over sessions.

    The model runs once over the split's trials of all sessions (encoding: all spikes masked,
    behaviour visible; decoding: spikes visible, behaviour masked), and each session is scored by
    :func:`neds.evaluate.evaluation.score`, the code of the final evaluation. Keys: ``bps`` (mean
    over units of bits per spike), ``choice_acc``, ``block_acc``, ``wheel_r2``, ``whisker_r2``,
    those the model's mode produces; ``score`` is their mean (the selection score,
    :data:`~neds.evaluate.evaluation.SELECTION_KEYS`).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    idx = data.indices(split)
    if len(idx) == 0:
        raise ValueError(f"no {split} trials to evaluate")
    pred = predict_trials(model, data, idx, batch_size, device, bf16)
    session = data.session[idx].numpy()
    res: dict[str, list[float]] = {}
    for s in np.unique(session):
        sel, n = session == s, data.n_units[s]
        own = {k: (v[sel][:, :, :n] if k == "rate" else v[sel]) for k, v in pred.items()}
        row, _ = score(own, data.session_view(int(s), split), split)
        for key in SELECTION_KEYS:
            if key in row:
                res.setdefault(_VAL_NAMES.get(key, key), []).append(row[key])
    metrics = {k: _finite_mean(v) for k, v in res.items()}  # a target unscorable everywhere stays NaN
    metrics["score"] = _finite_mean(list(metrics.values()))
    model.train(was_training)
    return metrics


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN if there are none): a metric a session could not score is left out."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# ---------------------------------------------------------------------------------------- checkpoints
def _atomic_save(obj: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _write_history(path: Path, history: list[dict]) -> None:
    """The run's ``history.jsonl`` (one JSON record per epoch; read by :func:`neds.io.history.read_history`)."""
    atomic_write(path, "".join(json.dumps(rec) + "\n" for rec in history))


# ---------------------------------------------------------------------------------------- fingerprints
def _tensor_bytes(t: torch.Tensor) -> np.ndarray:
    """The raw bytes of a tensor (any dtype, bfloat16 included), on the CPU."""
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()


def code_version() -> str:
    """The version of the code that defines a trained model: ``neds.__version__`` and a SHA-256 of
    the source of ``neds/model/*.py``, ``neds/peers/*.py`` and ``neds/train.py``."""
    import neds.model

    package = Path(neds.model.__file__).parent.parent
    h = hashlib.sha256(__version__.encode())
    for f in [*sorted((package / "model").glob("*.py")), *sorted((package / "peers").glob("*.py")), Path(__file__)]:
        h.update(f"{f.parent.name}/{f.name}\n".encode())
        h.update(f.read_bytes())
    return f"{__version__}+sha256:{h.hexdigest()}"


def data_fingerprint(data: TrialData) -> str:
    """SHA-256 of a :class:`~neds.data.dataset.TrialData` (sessions, units, every tensor and the
    split): what a run trained on data built in memory is keyed to."""
    h = hashlib.sha256(json.dumps({"eids": list(data.eids), "n_units": [int(n) for n in data.n_units]}).encode())
    for name in ("spikes", "wheel", "whisker", "choice", "block", "session", "trial"):
        t = getattr(data, name)
        h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(_tensor_bytes(t))
    h.update("\n".join(map(str, data.split)).encode())
    if data.has_events:  # the spike events, for the models that read them
        for name in ("event_offsets", "event_time", "event_unit"):
            t = getattr(data, name)
            h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
            h.update(_tensor_bytes(t))
    return h.hexdigest()


def checkpoint_identity(path: str | Path) -> str:
    """The identity of a checkpoint's weights: SHA-256 of the run fingerprint it records and of
    its model state (names, dtypes, shapes, values); the same weights rewritten are the same."""
    ckpt = load_checkpoint(path)
    h = hashlib.sha256(str((ckpt.get("inputs") or {}).get("digest")).encode())
    for name in sorted(ckpt["model_state"]):
        t = ckpt["model_state"][name]
        h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def run_fingerprint(parts: dict) -> dict:
    """``{"digest": SHA-256 of the parts as canonical JSON, "parts": parts}``: what a run is trained
    on (stored in every checkpoint as ``ckpt["inputs"]`` and in summary.json as ``inputs``)."""
    parts = json.loads(json.dumps(parts, sort_keys=True, default=str))
    return {"digest": hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), "parts": parts}


def _differing_parts(recorded: dict | None, current: dict) -> list[str]:
    """Names of the fingerprint parts in which a checkpoint's run differs from this one."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("parts"), dict):
        return ["all (the checkpoint has no input fingerprint: written by an older version of neds)"]
    old, new = recorded["parts"], current["parts"]
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not differ and recorded.get("digest") != current["digest"]:
        differ = ["digest"]
    return differ


def _nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or inf (one device sync)."""
    names = [k for k, t in state.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not names:
        return []
    device = state[names[0]].device
    finite = torch.stack([torch.isfinite(state[k]).all().to(device) for k in names]).tolist()
    return [k for k, ok in zip(names, finite) if not ok]


def _check_data(data: TrialData) -> None:
    """Raise :class:`NonFiniteDataError` if a float tensor of the data holds NaN or inf."""
    problems = []
    for name in ("spikes", "wheel", "whisker"):
        t = getattr(data, name)
        if not t.is_floating_point():
            continue  # integer counts are finite
        bad = ~torch.isfinite(t)
        if bad.any():
            rows = bad.reshape(len(t), -1).any(1)
            eids = sorted({data.eids[s] for s in data.session[rows].unique().tolist()})
            problems.append(f"{name}: {int(bad.sum())} value(s) in session(s) {', '.join(eids)}")
    if problems:
        raise NonFiniteDataError(
            f"the training data hold non-finite values ({'; '.join(problems)}); nothing was trained. Check the "
            "binned stores of those sessions (neds.io.store.open_binned verifies them; re-run bin_session for "
            "any it rejects) or, for data built in memory, the code that made them"
        )


# ---------------------------------------------------------------------------------------- training
def train(
    model: TrialModel,
    data: TrialData,
    tcfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    extra: dict | None = None,
    inputs: dict | None = None,
) -> dict:
    """Train ``model`` on the train split of ``data``; write checkpoints, history and summary.

    Files in ``out_dir``: ``model.pt`` (the best checkpoint by validation score, or the last one
    with ``tcfg.keep == 'last'``), ``history.jsonl``
    (one line per epoch: loss parts, learning rate and, every ``val_every`` epochs, the validation
    metrics), ``summary.json`` (written last: best epoch and metrics, sizes, timing, the run's
    input fingerprint), and ``checkpoints/last.pt`` / ``checkpoints/best.pt``, from which an
    interrupted run resumes.

    Every checkpoint records the run's fingerprint (``ckpt["inputs"]``, :func:`run_fingerprint`)
    over ``inputs`` (or, without them, :func:`data_fingerprint` of ``data``), the session
    vocabulary, the model config, the training settings, the mode and :func:`code_version`.
    ``checkpoints/last.pt`` is resumed only if its fingerprint is this run's; otherwise a warning
    names the parts that differ, the stale checkpoints and outputs are removed and the run starts
    from its initial weights. A run whose ``last.pt`` is already at the final epoch trains no
    further and rewrites ``model.pt``, ``history.jsonl`` and ``summary.json``.

    Parameters
    ----------
    model : a model (:class:`~neds.model.base.TrialModel`: NEDS or a peer) whose session
        vocabulary is ``data.eids``, in its initial state
    data : TrialData
    tcfg : TrainConfig
    out_dir : output folder
    resume : continue from ``checkpoints/last.pt`` if it exists and matches this run
    stop_after_epoch : stop after this epoch as if the process were killed (tests, time limits)
    extra : JSON-able provenance stored in checkpoints and summary (e.g. the pretrained checkpoint)
    inputs : JSON-able description of what the data are (e.g. the stores' content fingerprints,
        the binning settings, the stage, the pretrained weights' identity), the same on every
        rank; None: the data's own fingerprint

    Returns
    -------
    dict, the summary

    Raises
    ------
    NonFiniteDataError
        If the data hold NaN or inf (before any step).
    NonFiniteLossError
        At the first step whose loss or a loss part is not finite, or if the weights to be saved
        are not finite; nothing is saved from that state.
    """
    import time

    from tqdm import tqdm

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    device = resolve_device(tcfg.device)
    rank, world = setup_distributed(device)
    if len(model.n_units) != len(data.eids) or model.n_units.tolist() != list(data.n_units):
        raise ValueError("the model's session vocabulary does not match the data (units per session differ)")
    if model.eids is None:
        model.sessions.eids = list(data.eids)  # a vocabulary not yet named takes the names of its data
    elif model.eids != list(data.eids):
        raise ValueError(f"the model's sessions {model.eids} are not the data's {list(data.eids)}")
    _check_data(data)
    schemes = tuple(tcfg.schemes) if tcfg.schemes else MODE_SCHEMES.get(model.mode)
    if tcfg.batch_size % world:
        raise ValueError(f"batch_size {tcfg.batch_size} must be divisible by the number of processes {world}")
    train_idx = training_trials(data, tcfg.train_fraction)
    n_train = len(train_idx)
    if n_train == 0:
        raise ValueError("no training trials; check the binned sessions' split")
    steps_per_epoch = n_train // tcfg.batch_size if world > 1 else math.ceil(n_train / tcfg.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"{n_train} training trials are fewer than one global batch of {tcfg.batch_size}")
    total_steps = steps_per_epoch * tcfg.epochs

    balance_kind = tcfg.loss
    if balance_kind in GRADIENT_GROUPS and not model.shared_output:
        balance_kind = GRADIENT_BALANCE_FALLBACK
        if rank == 0:
            _log.warning(
                "training.loss %r scales the modalities' gradients at a shared representation that %s has not; "
                "it trains with %r (recorded in summary.json, loss)",
                tcfg.loss,
                model.architecture,
                balance_kind,
            )
    balance = LossBalance(
        balance_kind, tcfg.loss_weights, null_deviances(data, train_idx), list(data.eids)
    )  # the null deviances of the training trials: the 'null' balances and the <modality>_vs_null history
    if balance.left_out and rank == 0:
        _log.warning(
            "constant over their training trials, so left out of the loss relative to the null deviance%s and of "
            "the <modality>_vs_null history (recorded in summary.json, loss_left_out): %s",
            "" if balance_kind in NULL_BALANCES else " (a diagnostic only, under this balance)",
            "; ".join(f"{eid}: {', '.join(m)}" for eid, m in balance.left_out.items()),
        )
    model.to(device)
    balance.to(device)
    shared_names = set(model.shared_state_dict())
    shared = [p for name, p in model.named_parameters() if name in shared_names]  # pretrained, when fine-tuning
    groups = param_groups(model, tcfg.weight_decay)
    max_lrs = [tcfg.max_lr] * len(groups)
    if tcfg.shared_lr_scale != 1.0:  # each group split into its shared and its session-specific parameters
        ids = {id(p) for p in shared}
        groups = [
            {**g, "params": [p for p in g["params"] if (id(p) in ids) == is_shared]}
            for g in groups
            for is_shared in (True, False)
        ]
        max_lrs = [tcfg.max_lr * (tcfg.shared_lr_scale if i % 2 == 0 else 1.0) for i in range(len(groups))]
    if balance_kind == "uncertainty":
        groups.append({"params": list(balance.parameters()), "weight_decay": 0.0})
        max_lrs.append(tcfg.max_lr)
    optimizer = torch.optim.AdamW(groups, lr=tcfg.max_lr / tcfg.div_factor, eps=tcfg.eps)
    clipped = model.canonical_parameters()  # a fixed order: the clipping norm is a float sum over tensors
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lrs if len(set(max_lrs)) > 1 else tcfg.max_lr,
        total_steps=total_steps,
        pct_start=tcfg.warmup_fraction,
        anneal_strategy="cos",
        div_factor=tcfg.div_factor,
        cycle_momentum=False,
    )
    vocab = {"eids": list(data.eids), "n_units": list(data.n_units)}
    subjects = getattr(model.sessions, "subjects", None)  # architectures with subject context (NDT2)
    if subjects is not None:
        vocab["subjects"] = list(subjects)
    fingerprint = run_fingerprint(
        {
            **(inputs if inputs is not None else {"data": data_fingerprint(data)}),
            "vocab": vocab,
            "architecture": model.architecture,
            "model_config": asdict(model.cfg),
            "train_config": {k: v for k, v in asdict(tcfg).items() if k not in _UNFINGERPRINTED},
            "mode": model.mode,
            "code": code_version(),
        }
    )
    state = {"epoch": 0, "step": 0, "best_score": -math.inf, "best_epoch": -1, "history": [], "seconds": 0.0}
    last = ckpt_dir / "last.pt"
    resumed = False
    if resume and last.exists():
        try:
            ckpt = load_checkpoint(last, map_location=device)
            differ = _differing_parts(ckpt.get("inputs"), fingerprint)
            why = f"inputs that differ: {', '.join(differ)}"
        except ValueError as exc:
            ckpt, differ, why = None, ["unreadable"], f"it cannot be read: {exc}"
        if not differ:
            model.load_state_dict(ckpt["model_state"])
            balance.load_state_dict(ckpt.get("balance_state", {}))
            optimizer.load_state_dict(ckpt["optimizer_state"])
            scheduler.load_state_dict(ckpt["scheduler_state"])
            state = ckpt["state"]
            resumed = True
            if rank == 0 and state["epoch"] >= tcfg.epochs:
                _log.info("%s finished all %d epochs with these inputs; rewriting its outputs", out_dir, tcfg.epochs)
            elif rank == 0:
                _log.info("resuming %s from epoch %d of %d", out_dir, state["epoch"], tcfg.epochs)
        elif rank == 0:
            _log.warning(
                "%s is not a checkpoint of this run (%s); training %s from scratch and removing its stale "
                "checkpoints and outputs",
                last,
                why,
                out_dir,
            )
        del ckpt
    if world > 1:
        dist.barrier()  # every rank has read last.pt before rank 0 removes it
    if not resumed and rank == 0:
        for stale in [*(ckpt_dir / f"{k}.pt" for k in KEEP), *(out_dir / name for name in OUTPUTS)]:
            stale.unlink(missing_ok=True)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    use_bf16 = tcfg.bf16 and device.type == "cuda"

    def checkpoint(path: Path) -> None:
        model_state = model.state_dict()
        bad = _nonfinite_tensors(model_state)
        if bad:
            raise NonFiniteLossError(
                f"after epoch {state['epoch']} the weights {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} are not "
                f"finite although every loss was (an overflowing update); {path} is not written. Lower "
                f"training.max_lr (now {tcfg.max_lr}) or training.grad_clip (now {tcfg.grad_clip}) and rerun"
            )
        _atomic_save(
            {
                "model_state": model_state,
                "balance_state": balance.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "state": state,
                "architecture": model.architecture,
                "model_config": asdict(model.cfg),
                "train_config": asdict(tcfg),
                "mode": model.mode,
                "vocab": vocab,
                "neds_version": __version__,
                "inputs": fingerprint,
                "extra": extra or {},
            },
            path,
        )

    def check_loss(
        loss: torch.Tensor,
        parts: dict[str, torch.Tensor],
        grad_norm: torch.Tensor | None,
        epoch: int,
        step: int,
        chunk: torch.Tensor,
    ) -> list[float]:
        """The loss and its parts as floats (one device sync); raises if any of them, or the
        gradient norm, is not finite on any rank."""
        names = ["total", *parts] + (["gradient"] if grad_norm is not None else [])
        extra_values = [grad_norm.detach().float()] if grad_norm is not None else []
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in parts.values()), *extra_values])
        bad = (~torch.isfinite(values)).float()
        if world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        out, flags = values.tolist(), bad.tolist()
        if any(flags):
            which = [n for n, f in zip(names, flags) if f]
            eids = sorted({data.eids[s] for s in data.session[chunk].unique().tolist()})
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {epoch + 1}, step {step + 1} of {steps_per_epoch} (global step "
                f"{state['step']}): {', '.join(which)} (modalities "
                f"{', '.join(dict.fromkeys(n.removesuffix(VS_NULL) for n in which if n not in ('total', 'gradient'))) or 'none'}"
                f"); the batch held trials of session(s) {', '.join(eids)}. Nothing is saved from this state. Check "
                "those sessions' binned stores (neds.io.store.open_binned verifies them; re-run bin_session for any it "
                f"rejects) or lower training.max_lr (now {tcfg.max_lr}), then rerun"
            )
        return out

    bar = tqdm(
        total=tcfg.epochs,
        initial=state["epoch"],
        desc=f"train {out_dir.name}",
        disable=not tcfg.progress or rank != 0,
        file=sys.stderr,
        mininterval=2.0,
        dynamic_ncols=True,
    )
    model.train()
    while state["epoch"] < tcfg.epochs:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        order_gen, mask_gen = _seed_everything(tcfg.seed, epoch, rank)
        perm = train_idx[torch.randperm(n_train, generator=order_gen)]
        sums: dict[str, float] = {}
        for step in range(steps_per_epoch):
            chunk = perm[step * tcfg.batch_size : (step + 1) * tcfg.batch_size]
            idx = chunk[rank::world] if world > 1 else chunk
            batch = data.batch(idx).to(device, non_blocking=True)
            masks = model.draw_masks(len(idx), batch.spikes.shape[1], tcfg.mask_ratio, mask_gen, schemes)
            masks = masks.to(device) if masks is not None else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = net(batch, masks)
            loss, parts = balance(model.loss_terms(out, batch, masks), batch.session, getattr(out, "shared", None))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1 and balance.log_var is not None:  # outside DDP: average its gradient over the ranks
                grad = balance.log_var.grad if balance.log_var.grad is not None else torch.zeros_like(balance.log_var)
                dist.all_reduce(grad)
                balance.log_var.grad = grad / world
            if epoch < tcfg.frozen_epochs:  # the pretrained weights stay: no update, no decay, no Adam moments
                for p in shared:
                    p.grad = None
            grad_norm = torch.nn.utils.clip_grad_norm_(clipped, tcfg.grad_clip) if tcfg.grad_clip else None
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            values = check_loss(loss, parts, grad_norm, epoch, step, chunk)
            sums["loss"] = sums.get("loss", 0.0) + values[0]
            for k, v in zip(parts, values[1 : 1 + len(parts)]):
                sums[k] = sums.get(k, 0.0) + v
        record = {"epoch": epoch + 1, "step": state["step"], "lr": scheduler.get_last_lr()[0]}
        record.update({f"train_{k}": v / steps_per_epoch for k, v in sums.items()})
        record.update({f"weight_{k}": v for k, v in balance.modality_weights().items()})
        state["seconds"] += time.perf_counter() - t0
        state["epoch"] = epoch + 1
        if (epoch + 1) % tcfg.val_every == 0 or epoch + 1 == tcfg.epochs:
            metrics = evaluate(model, data, "val", device, tcfg.eval_batch_size, tcfg.bf16)
            record.update({f"val_{k}": v for k, v in metrics.items()})
            if metrics["score"] > state["best_score"]:
                state["best_score"], state["best_epoch"] = metrics["score"], epoch + 1
                if rank == 0:
                    checkpoint(ckpt_dir / "best.pt")
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", val=f"{metrics['score']:.3f}", refresh=False)
        else:
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", refresh=False)
        state["history"].append(record)
        if rank == 0:
            checkpoint(last)
            _write_history(out_dir / "history.jsonl", state["history"])
        bar.update(1)
        if stop_after_epoch is not None and state["epoch"] >= stop_after_epoch and state["epoch"] < tcfg.epochs:
            bar.close()
            return {"interrupted_at_epoch": state["epoch"]}
    bar.close()

    summary = {
        "best_epoch": state["best_epoch"],
        "best_score": state["best_score"],
        "best_val": next((r for r in state["history"] if r["epoch"] == state["best_epoch"]), {}),
        "kept": tcfg.keep,
        "kept_epoch": state["best_epoch"] if tcfg.keep == "best" else state["epoch"],
        "n_train_trials": n_train,
        "loss": balance_kind,
        "loss_left_out": balance.left_out,
        "epochs": tcfg.epochs,
        "steps": state["step"],
        "train_seconds": state["seconds"],
        "trials_per_second": n_train * tcfg.epochs / max(state["seconds"], 1e-9),
        "world_size": world,
        "device": str(device),
        "model": model_summary(model),
        "train_config": asdict(tcfg),
        "vocab": vocab,
        "neds_version": __version__,
        "inputs": fingerprint,
        "extra": extra or {},
    }
    if rank == 0:
        _write_outputs(out_dir, ckpt_dir / f"{tcfg.keep}.pt", fingerprint, state["history"], summary)
    return summary


def _write_outputs(out_dir: Path, kept: Path, fingerprint: dict, history: list[dict], summary: dict) -> None:
    """Write history.jsonl, model.pt (a copy of the kept checkpoint, once it is checked to be this
    run's and finite) and, last, summary.json."""
    _write_history(out_dir / "history.jsonl", history)
    if not kept.exists():
        raise RuntimeError(
            f"{kept} does not exist: no validation score of this run was finite, so no best checkpoint was kept; "
            f"check history.jsonl in {out_dir}, or keep the last checkpoint (training.keep: last)"
        )
    ckpt = load_checkpoint(kept)
    if (ckpt.get("inputs") or {}).get("digest") != fingerprint["digest"]:
        raise RuntimeError(
            f"{kept} was not written by this run (its input fingerprint differs); delete {kept.parent} and rerun"
        )
    bad = _nonfinite_tensors(ckpt["model_state"])
    if bad:
        raise NonFiniteLossError(
            f"{kept} holds non-finite weights ({', '.join(bad[:5])}); model.pt is not written. "
            f"Delete {kept.parent} and rerun with a lower training.max_lr"
        )
    del ckpt
    atomic_write(out_dir / "model.pt", lambda tmp: shutil.copyfile(kept, tmp))
    write_json(summary, out_dir / "summary.json")
