"""The paper's experiments as variants of the main run (config section ``experiments``).

Each experiment is a set of named variants. A variant changes the model or training settings of
the main run, and possibly the pretraining set, and trains the single-session models of every
usable held-out session:

* ``seeds``: fine-tuned (from the main pretrained model) and from-scratch models per seed;
* ``ablation_masking``: pretraining and fine-tuning with all five masking schemes, without
  cross-modal masking, and without cross-modal and within-modality masking;
* ``model_size``: pretraining and fine-tuning at each of ``experiments.model_sizes``;
* ``scaling``: pretraining on the first k usable pretraining sessions, then fine-tuning;
* ``finetune_trials``: fine-tuned (from the main pretrained model) and from-scratch models
  trained on a fraction of each held-out session's training trials (``experiments.finetune_fractions``):
  how the gain of pretraining depends on the data of the new animal;
* ``sweep``: random configurations trained from scratch, scored on the validation split; the
  best by the mean validation metric is written to ``results/experiments/sweep/best.json`` and
  its ``best`` variant (read from that file) is trained and scored on the test split.

The functions here are pure: the workflow (``workflow/rules/experiments.smk``) turns them into
jobs. Outputs live under ``results/experiments/<experiment>/<variant>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from neds.config import ConfigError, model_settings, train_settings

__all__ = [
    "EXPERIMENTS",
    "MASKING_VARIANTS",
    "variant_names",
    "variant_plan",
    "variant_spec",
    "sweep_configs",
    "select_best",
    "scaling_sessions",
]

EXPERIMENTS = ("seeds", "ablation_masking", "model_size", "scaling", "finetune_trials", "sweep")
# masking ablation: the schemes each variant leaves out of the five (neds.model.masking.SCHEMES).
# Scheme names are spelled here rather than imported, so that the workflow can import this module
# at start-up without torch.
MASKING_VARIANTS = {
    "full": (),
    "no_cross_modal": ("cross_modal",),
    "no_cross_no_within": ("cross_modal", "within_neural", "within_behavioural"),
}
SWEEP_BEST = "best"


def _check(experiment: str) -> None:
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; use one of {EXPERIMENTS}")


def scaling_sessions(config: dict[str, Any], n_usable: int) -> list[int]:
    """The pretraining-set sizes of the scaling experiment, capped at the usable sessions."""
    sizes = sorted({min(int(k), n_usable) for k in config["experiments"]["scaling_sessions"]})
    return [k for k in sizes if k >= 1]


def variant_names(config: dict[str, Any], experiment: str, n_usable_pretrain: int) -> list[str]:
    """Names of an experiment's variants (also the folder names under its results)."""
    _check(experiment)
    exp = config["experiments"]
    if experiment == "seeds":
        return [f"seed_{s}" for s in exp["seeds"]]
    if experiment == "ablation_masking":
        return list(MASKING_VARIANTS)
    if experiment == "model_size":
        return list(exp["model_sizes"])
    if experiment == "scaling":
        return [f"sessions_{k}" for k in scaling_sessions(config, n_usable_pretrain)]
    if experiment == "finetune_trials":
        return [f"fraction_{f:g}" for f in sorted(set(exp["finetune_fractions"]))]
    return [f"trial_{i:02d}" for i in range(exp["sweep"]["n_configs"])] + [SWEEP_BEST]


def sweep_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's random configurations, drawn once from ``experiments.sweep.seed``.

    Each is {'model': {...}, 'training': {...}} overrides: max_lr and weight_decay log-uniform,
    mask_ratio uniform, hidden and n_layers uniform over their lists.
    """
    sw = config["experiments"]["sweep"]
    rng = np.random.default_rng(sw["seed"])
    out = []
    for _ in range(sw["n_configs"]):
        lo, hi = np.log(sw["max_lr"])
        lr = float(np.exp(rng.uniform(lo, hi)))
        lo, hi = np.log(sw["weight_decay"])
        wd = float(np.exp(rng.uniform(lo, hi)))
        ratio = float(rng.uniform(*sw["mask_ratio"]))
        hidden = int(rng.choice(sw["hidden"]))
        layers = int(rng.choice(sw["n_layers"]))
        out.append({"model": {"hidden": hidden, "n_layers": layers},
                    "training": {"max_lr": lr, "weight_decay": wd, "mask_ratio": ratio}})  # fmt: skip
    return out


def variant_plan(experiment: str, variant: str) -> dict[str, Any]:
    """What a variant trains and where it is scored, without its settings (so the workflow can
    plan its jobs before the sweep's best.json exists).

    Returns
    -------
    dict with
      ``stages``: the single-session stages it trains per held-out session ('finetune', 'scratch');
      ``own_pretrain``: whether it pretrains its own model (else fine-tuning starts from the main
        pretrained model);
      ``pretrain_sessions``: number of usable pretraining sessions it pretrains on (None: all);
      ``split``: the split its models are scored on ('val' for sweep trials, else 'test');
      ``needs_best``: whether its settings come from the sweep's best.json.
    """
    _check(experiment)
    plan = {"stages": ["finetune", "scratch"], "own_pretrain": False, "pretrain_sessions": None, "split": "test",
            "needs_best": False}  # fmt: skip
    if experiment in ("ablation_masking", "scaling"):
        plan.update(stages=["finetune"], own_pretrain=True)
    if experiment == "model_size":
        plan.update(own_pretrain=True)
    if experiment == "scaling":
        plan.update(pretrain_sessions=int(variant.removeprefix("sessions_")))
    if experiment == "sweep":
        plan.update(stages=["scratch"], needs_best=variant == SWEEP_BEST, split="test" if variant == SWEEP_BEST else "val")
    return plan


def variant_spec(config: dict[str, Any], experiment: str, variant: str, best: dict | None = None) -> dict[str, Any]:
    """:func:`variant_plan` plus the variant's settings: ``model`` {stage: ModelConfig settings}
    and ``training`` {stage: TrainConfig settings}. ``best`` is the content of the sweep's
    best.json (only for the sweep's 'best' variant)."""
    spec = variant_plan(experiment, variant)
    stages = ("pretrain", "finetune", "scratch")
    model = {s: model_settings(config, s) for s in stages}
    training = {s: train_settings(config, s) for s in stages}
    exp = config["experiments"]
    if experiment == "seeds":
        seed = int(variant.removeprefix("seed_"))
        for s in stages:
            training[s]["seed"] = seed
    elif experiment == "ablation_masking":
        if variant not in MASKING_VARIANTS:
            raise ConfigError(f"unknown masking variant {variant!r}; use one of {sorted(MASKING_VARIANTS)}")
        from neds.model.masking import SCHEMES

        for s in stages:
            training[s]["schemes"] = [name for name in SCHEMES if name not in MASKING_VARIANTS[variant]]
    elif experiment == "finetune_trials":
        try:
            fraction = float(variant.removeprefix("fraction_"))
        except ValueError:
            raise ConfigError(f"unknown finetune_trials variant {variant!r}; use fraction_<f>") from None
        for s in ("finetune", "scratch"):
            training[s]["train_fraction"] = fraction
    elif experiment == "model_size":
        if variant not in exp["model_sizes"]:
            raise ConfigError(f"unknown model size {variant!r}; experiments.model_sizes has {sorted(exp['model_sizes'])}")
        for s in stages:
            model[s].update(exp["model_sizes"][variant])
    elif experiment == "sweep":
        if spec["needs_best"]:
            if best is None:
                raise ValueError("the sweep's best variant needs results/experiments/sweep/best.json")
            chosen = best["settings"]
        else:
            chosen = sweep_configs(config)[int(variant.removeprefix("trial_"))]
        for s in stages:
            model[s].update(chosen["model"])
            training[s].update(chosen["training"])
        _fit_heads(model)
    spec.update(model=model, training=training)
    return spec


def _fit_heads(model: dict[str, dict]) -> None:
    """Keep a hidden size drawn by the sweep divisible into an even head size."""
    for m in model.values():
        while m["hidden"] % m["n_heads"] or (m["hidden"] // m["n_heads"]) % 2:
            m["n_heads"] -= 1
            if m["n_heads"] < 1:
                raise ConfigError(f"experiments.sweep.hidden {m['hidden']} cannot be split into attention heads")


def select_best(trial_files: dict[str, list[str | Path]], configs: list[dict]) -> dict[str, Any]:
    """The sweep trial with the best mean validation score over sessions.

    trial_files : variant name ('trial_00', ...) -> its per-session evaluation JSON files (rows of
        neds.stages.run_score_models, scored on the validation split)
    Returns {'variant', 'settings', 'val_score', 'scores'} (scores: every trial's mean score).
    """
    from neds.evaluate.evaluation import SELECTION_KEYS

    scores = {}
    for name, files in trial_files.items():
        values = []
        for path in files:
            for row in json.loads(Path(path).read_text())["rows"]:
                values.append(float(np.nanmean([row[k] for k in SELECTION_KEYS if k in row])))
        scores[name] = float(np.mean(values)) if values else float("nan")
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        raise ValueError("no sweep trial has a finite validation score")
    best = max(finite, key=finite.get)
    return {"variant": best, "settings": configs[int(best.removeprefix("trial_"))], "val_score": finite[best], "scores": scores}
