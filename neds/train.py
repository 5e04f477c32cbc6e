"""Training: pretraining, fine-tuning, training from scratch and the unimodal models.

One loop serves all of them (REFERENCE.md, Training): AdamW, a one-cycle schedule with cosine
annealing, multi-task masking drawn per trial, validation every ``val_every`` epochs with the
mean of the validation metrics, atomic checkpoints that resume bit for bit on CPU, bf16 autocast
on CUDA and data-parallel training over several processes started by ``torchrun``.

Reproducibility: the data order, the masks and the dropout draws of epoch ``e`` on rank ``r``
come from generators seeded with ``(seed, e, r)``, so an interrupted run resumed from its last
checkpoint makes exactly the draws an uninterrupted run makes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from neds import __version__
from neds.data.dataset import TrialData
from neds.evaluate.evaluation import SELECTION_KEYS, predict_trials, score
from neds.model.masking import SCHEMES, draw_masks
from neds.model.neds import LOSS_PARTS, NEDS, ModelConfig, model_summary

__all__ = [
    "TrainConfig",
    "train",
    "evaluate",
    "build_model",
    "load_checkpoint",
    "load_model",
    "init_shared_from",
    "training_trials",
    "resolve_device",
    "setup_distributed",
    "MODE_SCHEMES",
]

_log = logging.getLogger(__name__)
# the masking schemes each mode trains with
MODE_SCHEMES = {"multimodal": SCHEMES, "encoding": ("neural",), "decoding": ("behavioural",)}
CHECKPOINT_DIR = "checkpoints"
KEEP = ("best", "last")
_VAL_NAMES = {"bps_unit_mean": "bps"}  # history keys of the selection metrics (val_bps, val_choice_acc, ...)


@dataclass
class TrainConfig:
    """Optimisation settings of one training run (config section ``training.<stage>``)."""

    epochs: int = 100
    batch_size: int = 16  # global: split evenly over the ranks of a distributed run
    max_lr: float = 2e-4
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_fraction: float = 0.15
    div_factor: float = 10.0  # the schedule starts at max_lr / div_factor
    mask_ratio: float = 0.3
    schemes: tuple[str, ...] | None = None  # None: the schemes of the model's mode
    loss_weights: dict[str, float] | None = None  # modality -> weight in the total loss (default 1)
    val_every: int = 5
    seed: int = 42
    grad_clip: float = 1.0
    device: str = "auto"
    bf16: bool = True  # autocast to bfloat16 on CUDA
    eval_batch_size: int = 64
    progress: bool = True
    keep: str = "best"  # model.pt: 'best' (by validation score) or 'last' (the end of the schedule)
    train_fraction: float = 1.0  # train on this fraction of each session's training trials

    def __post_init__(self) -> None:
        unknown = set(self.loss_weights or {}) - set(LOSS_PARTS)
        if unknown:
            raise ValueError(f"unknown loss_weights {sorted(unknown)}; use modalities from {LOSS_PARTS}")
        if self.keep not in KEEP:
            raise ValueError(f"training keep={self.keep!r} is not one of {KEEP}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction={self.train_fraction} must be in (0, 1]")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
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
    order = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]) & 0x7FFF_FFFF_FFFF_FFFF)
    masks = torch.Generator().manual_seed(int(base[2]) & 0x7FFF_FFFF_FFFF_FFFF)
    return order, masks


# ---------------------------------------------------------------------------------------- models
def build_model(model_cfg: ModelConfig | dict, n_units: list[int], mode: str = "multimodal") -> NEDS:
    cfg = model_cfg if isinstance(model_cfg, ModelConfig) else ModelConfig(**model_cfg)
    return NEDS(cfg, n_units, mode)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`train` (raises with the path if it is not one)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable NEDS checkpoint ({exc}); retrain or restore it") from exc
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise ValueError(f"{path} is not a NEDS checkpoint (no model_state); pass a file written by neds.train")
    return ckpt


def load_model(path: str | Path, map_location="cpu") -> tuple[NEDS, dict]:
    """The model of a checkpoint, in eval mode, and the checkpoint dict."""
    ckpt = load_checkpoint(path, map_location)
    model = build_model(ckpt["model_config"], ckpt["vocab"]["n_units"], ckpt["mode"])
    model.load_state_dict(ckpt["model_state"])
    return model.eval(), ckpt


def init_shared_from(model: NEDS, checkpoint: str | Path) -> list[str]:
    """Copy the shared weights (transformer, embeddings, mask token) of a pretrained checkpoint.

    The session-specific layers and the session embedding of ``model`` stay as initialised:
    fine-tuning adds new ones for the new animal. Returns the names of the copied tensors.
    """
    ckpt = load_checkpoint(checkpoint)
    pretrained = ckpt["model_state"]
    shared = model.shared_state_dict()
    missing = [k for k in shared if k not in pretrained]
    bad = [k for k in shared if k in pretrained and pretrained[k].shape != shared[k].shape]
    if missing or bad:
        raise ValueError(
            f"pretrained checkpoint {checkpoint} does not match the model (missing {missing[:3]}, "
            f"shape mismatch {bad[:3]}); fine-tune with the pretraining model config"
        )
    model.load_state_dict({k: pretrained[k] for k in shared}, strict=False)
    return list(shared)


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


# ---------------------------------------------------------------------------------------- evaluation
def evaluate(model: NEDS, data: TrialData, split: str = "val", device=None, batch_size: int = 64, bf16: bool = True) -> dict:
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
    metrics = {k: float(np.nanmean(v)) for k, v in res.items()}
    metrics["score"] = float(np.nanmean(list(metrics.values())))
    model.train(was_training)
    return metrics


# ---------------------------------------------------------------------------------------- checkpoints
def _atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_history(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(rec) + "\n" for rec in history))
    os.replace(tmp, path)


def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


# ---------------------------------------------------------------------------------------- training
def train(
    model: NEDS,
    data: TrialData,
    tcfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    extra: dict | None = None,
) -> dict:
    """Train ``model`` on the train split of ``data``; write checkpoints, history and summary.

    Files in ``out_dir``: ``model.pt`` (the best checkpoint by validation score, or the last one
    with ``tcfg.keep == 'last'``), ``history.jsonl``
    (one line per epoch: loss parts, learning rate and, every ``val_every`` epochs, the validation
    metrics), ``summary.json`` (written last: best epoch and metrics, sizes, timing), and
    ``checkpoints/last.pt`` / ``checkpoints/best.pt``, from which an interrupted run resumes.

    Parameters
    ----------
    model : NEDS whose session vocabulary is ``data.eids``
    data : TrialData
    tcfg : TrainConfig
    out_dir : output folder
    resume : continue from ``checkpoints/last.pt`` if it exists (and matches)
    stop_after_epoch : stop after this epoch as if the process were killed (tests, time limits)
    extra : JSON-able provenance stored in checkpoints and summary (e.g. the pretrained checkpoint)

    Returns
    -------
    dict, the summary
    """
    import time

    from tqdm import tqdm

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    device = resolve_device(tcfg.device)
    rank, world = setup_distributed(device)
    if len(model.n_units) != len(data.eids) or model.n_units.tolist() != list(data.n_units):
        raise ValueError("the model's session vocabulary does not match the data (units per session differ)")
    schemes = tcfg.schemes or MODE_SCHEMES[model.mode]
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

    model.to(device)
    def decays(name: str, p: torch.Tensor) -> bool:  # weight matrices; not biases, norms, embeddings
        return p.ndim >= 2 and "emb" not in name and "mask_token" not in name

    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not decays(n, p)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tcfg.max_lr / tcfg.div_factor,
        eps=tcfg.eps,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=tcfg.max_lr,
        total_steps=total_steps,
        pct_start=tcfg.warmup_fraction,
        anneal_strategy="cos",
        div_factor=tcfg.div_factor,
        cycle_momentum=False,
    )
    vocab = {"eids": list(data.eids), "n_units": list(data.n_units)}
    state = {"epoch": 0, "step": 0, "best_score": -math.inf, "best_epoch": -1, "history": [], "seconds": 0.0}
    last = ckpt_dir / "last.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last, map_location=device)
        if ckpt["vocab"] != vocab or ckpt["train_config"] != asdict(tcfg) or ckpt["mode"] != model.mode:
            raise ValueError(
                f"{last} belongs to a different run (sessions, settings or mode differ); delete {ckpt_dir} to start over"
            )
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        state = ckpt["state"]
        if rank == 0:
            _log.info("resuming %s from epoch %d", out_dir, state["epoch"])

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = tcfg.bf16 and device.type == "cuda"

    def checkpoint(path: Path) -> None:
        _atomic_save(
            {
                "model_state": model.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "rng_state": _rng_states(),
                "state": state,
                "model_config": asdict(model.cfg),
                "train_config": asdict(tcfg),
                "mode": model.mode,
                "vocab": vocab,
                "neds_version": __version__,
                "extra": extra or {},
            },
            path,
        )

    bar = tqdm(
        total=tcfg.epochs, initial=state["epoch"], desc=f"train {out_dir.name}", disable=not tcfg.progress or rank != 0,
        file=sys.stderr, mininterval=2.0, dynamic_ncols=True,
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
            masks = draw_masks(len(idx), batch.spikes.shape[1], tcfg.mask_ratio, mask_gen, schemes).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = net(batch, masks)
            loss, parts = model.loss(out, batch, masks, tcfg.loss_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
            scheduler.step()
            state["step"] += 1
            sums["loss"] = sums.get("loss", 0.0) + loss.item()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
        record = {"epoch": epoch + 1, "step": state["step"], "lr": scheduler.get_last_lr()[0]}
        record.update({f"train_{k}": v / steps_per_epoch for k, v in sums.items()})
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
        "extra": extra or {},
    }
    if rank == 0:
        shutil.copyfile(ckpt_dir / f"{tcfg.keep}.pt", out_dir / ".model.pt.tmp")
        os.replace(out_dir / ".model.pt.tmp", out_dir / "model.pt")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
