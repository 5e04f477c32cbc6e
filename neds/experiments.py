"""The paper's experiments as variants of the main run (config section ``experiments``), in one
registry.

Each experiment is one :class:`Experiment` in :data:`EXPERIMENTS`: its name (a workflow target
and the folder ``results/experiments/<name>/``), its figure title, the single-session stages it
trains on every usable held-out session, whether each variant pretrains its own model, the split
it is scored on, and a function giving its :class:`Variant` objects from the config. A variant
carries its name (its folder) and its parameters (a seed, a fraction of the training trials, a
number of pretraining sessions, model or training overrides, ...); :meth:`Variant.settings`
applies them to the main run's model and training settings of a stage. Nothing reads a
parameter back from a name.

The workflow (``workflow/rules/experiments.smk``) derives every target, training job, score and
summary from the registry, so a new experiment is one new entry. Outputs live under
``results/experiments/<experiment>/<variant>/``. The entries:

* ``seeds``: fine-tuned (from the main pretrained model) and from-scratch models per seed;
* ``ablation_masking``: pretraining and fine-tuning with all five masking schemes, without
  cross-modal masking, and without cross-modal and within-modality masking;
* ``model_size``: pretraining and fine-tuning at each of ``experiments.model_sizes``;
* ``scaling``: pretraining on the first k usable pretraining sessions, then fine-tuning, per
  seed, beside the model trained from scratch at the same seeds: how the gain of pretraining
  depends on the pretraining data;
* ``finetune_trials``: fine-tuned (from the main pretrained model) and from-scratch models
  trained on a fraction of each held-out session's training trials (``experiments.finetune_fractions``),
  per seed: how the gain of pretraining depends on the data of the new animal;
* ``finetune_recipe``: each fine-tuning recipe of ``experiments.finetune_recipes`` (from the
  main pretrained model) and the model trained from scratch, per seed, scored on the validation
  trials (which choose the recipe) and the test trials (which compare it with scratch);
* ``peers``: NEDS, POYO+ and NDT2 fine-tuned (each from the main run's pretrained model of its
  architecture) per seed: the paper's comparison with other large-scale models;
* ``sweep``: random configurations trained from scratch and scored on the validation split
  (its candidates); the best by the mean validation metric is written to
  ``results/experiments/sweep/best.json`` (:func:`select_best`), and its ``best`` variant,
  trained with the settings read from that file, is scored on the test split.

Nothing here imports torch, so the workflow imports this module at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neds import vocab
from neds.config import ConfigError, model_settings, train_settings

__all__ = [
    "Variant",
    "Experiment",
    "EXPERIMENTS",
    "EXPERIMENT_TITLES",
    "MASKING_VARIANTS",
    "SWEEP_BEST",
    "sweep_configs",
    "select_best",
    "scaling_sessions",
    "balance_of",
    "option_seed",
    "SEED_SEPARATOR",
    "SCRATCH_VARIANT",
    "DATA_AXES",
]


def _schemes(*names: str) -> tuple[str, ...]:
    """Masking scheme names, checked against the vocabulary when this module is imported."""
    unknown = [n for n in names if n not in vocab.MASKING_SCHEMES]
    if unknown:
        raise ValueError(f"unknown masking schemes {unknown}; use names of {vocab.MASKING_SCHEMES}")
    return names


# masking ablation: the schemes each variant leaves out of the five (vocab.MASKING_SCHEMES)
MASKING_VARIANTS = {
    "full": (),
    "no_cross_modal": _schemes("cross_modal"),
    "no_cross_no_within": _schemes("cross_modal", "within_neural", "within_behavioural"),
}
DATA_AXES = {
    "train_fraction": "fraction of each held-out session's training trials",
    "pretrain_sessions": "number of pretraining sessions",
}
"""The amounts of data an experiment can vary (:attr:`Experiment.data_axis`), and how its figure
names them."""
SWEEP_BEST = "best"
"""The name of the sweep's variant retrained with the settings its selection chose."""


@dataclass(frozen=True)
class Variant:
    """One variant of an experiment: its name and the parameters it changes in the main run.

    name : the folder ``results/experiments/<experiment>/<name>/``
    seed : ``training.seed`` of every stage (None: the main run's)
    schemes : the masking schemes every stage trains with (None: the stage's own)
    train_fraction : the fraction of each held-out session's training trials the per-session
        stages train on (None: all); pretraining is not changed
    model, training : overrides of every stage's model and training settings
    pretrain_sessions : the number of usable pretraining sessions (the first ones) a variant of an
        experiment that pretrains its own model pretrains on (None: all)
    trial : the index of its configuration in :func:`sweep_configs` (None: not a sweep trial)
    from_best : its settings are the ones its experiment's selection wrote to ``best.json``
        (passed to :meth:`settings` as ``best``), under its own overrides
    split : the split it is scored on (None: its experiment's)
    fit_heads : lower ``n_heads`` until it splits ``hidden`` into even head sizes (widths drawn
        by the sweep)
    finetune : training overrides of the stages that start from a pretrained model only (a
        fine-tuning recipe), after ``training``
    stages : the experiment's stages it trains (None: all of them)
    """

    name: str
    seed: int | None = None
    schemes: tuple[str, ...] | None = None
    train_fraction: float | None = None
    model: dict[str, Any] = field(default_factory=dict, hash=False)
    training: dict[str, Any] = field(default_factory=dict, hash=False)
    pretrain_sessions: int | None = None
    trial: int | None = None
    from_best: bool = False
    split: str | None = None
    fit_heads: bool = False
    finetune: dict[str, Any] = field(default_factory=dict, hash=False)
    stages: tuple[str, ...] | None = None

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        """Its model and training overrides, {'model': {...}, 'training': {...}} (the layout of
        ``best.json``'s ``settings``)."""
        return {"model": dict(self.model), "training": dict(self.training)}

    def settings(self, config: dict[str, Any], stage: str, best: dict | None = None) -> tuple[dict, dict]:
        """The model and training settings of one stage (:func:`neds.config.model_settings`,
        :func:`neds.config.train_settings`) with this variant applied.

        best : the content of the experiment's ``best.json`` (only for a ``from_best`` variant)
        """
        kind = vocab.stage(stage)
        model, training = model_settings(config, kind.name), train_settings(config, kind.name)
        if self.from_best:
            if best is None:
                raise ValueError(
                    f"variant {self.name!r} takes its settings from its experiment's best.json; pass best="
                )
            model.update(best["settings"]["model"])
            training.update(best["settings"]["training"])
        model.update(self.model)
        training.update(self.training)
        if kind.from_pretrained:
            training.update(self.finetune)
        if self.seed is not None:
            training["seed"] = self.seed
        if self.schemes is not None:
            training["schemes"] = list(self.schemes)
        if self.train_fraction is not None and kind.per_session:
            training["train_fraction"] = self.train_fraction
        if self.fit_heads:
            _fit_heads(model)
        return model, training


@dataclass(frozen=True)
class Experiment:
    """One experiment: a set of variants of the main run, each trained on every usable held-out
    session and scored there.

    name : its workflow target and folder ``results/experiments/<name>/``
    title : how its figure names it
    stages : the single-session stages (:data:`neds.vocab.PER_SESSION_STAGES`: NEDS's and its
        peers') each variant trains per held-out session
    own_pretrain : whether each variant pretrains its own models (its fine-tuning starts from
        them); else fine-tuning starts from the main run's pretrained model of its architecture
    variants : (config, number of usable pretraining sessions) -> its variants, in table order
    split : the split its variants are scored on (a variant's own ``split`` comes first)
    selects_best : its variants without ``from_best`` are candidates: ``best.json`` names the
        one with the best mean validation score (:func:`select_best`), and its ``from_best``
        variants train with that candidate's settings
    extra_targets : further files its target builds, by rules of their own (e.g. the peers'
        comparison table and figures)
    also_scored_on : further splits each variant's models are scored on, beside ``split``
        (e.g. chosen on the validation trials, reported on the test trials)
    in_all : whether ``snakemake experiments`` builds it (else only its own target does: an
        experiment too long to run with the others)
    summary_on_page : whether the results page shows its summary table (else only its extra
        Markdown pages, the readable view of an experiment with many variants, and a link to
        the summary)
    data_axis : the :class:`Variant` field holding the amount of data a variant trains with
        (a key of :data:`DATA_AXES`): its fine-tuned models are compared, per amount and seed,
        with the models trained from scratch (:mod:`neds.evaluate.gain`); None for the others
    """

    name: str
    title: str
    stages: tuple[str, ...]
    own_pretrain: bool
    variants: Callable[[dict[str, Any], int], list[Variant]] = field(compare=False)
    split: str = "test"
    selects_best: bool = False
    extra_targets: tuple[str, ...] = ()
    also_scored_on: tuple[str, ...] = ()
    in_all: bool = True
    summary_on_page: bool = True
    data_axis: str | None = None

    def __post_init__(self) -> None:
        if self.data_axis is not None and self.data_axis not in DATA_AXES:
            raise ValueError(f"experiment {self.name}: data_axis {self.data_axis!r} is not one of {list(DATA_AXES)}")
        for s in self.stages:
            if s not in vocab.PER_SESSION_STAGES:
                raise ValueError(
                    f"experiment {self.name}: {s!r} is not a per-session stage; use one of {vocab.PER_SESSION_STAGES}"
                )
        for split in (self.split, *self.also_scored_on):
            if split not in vocab.SPLITS:
                raise ValueError(f"experiment {self.name}: unknown split {split!r}; use one of {vocab.SPLITS}")

    def variant(self, config: dict[str, Any], name: str, n_usable_pretrain: int) -> Variant:
        """Its variant called ``name`` (ConfigError naming its variants otherwise)."""
        variants = self.variants(config, n_usable_pretrain)
        for v in variants:
            if v.name == name:
                return v
        raise ConfigError(f"experiment {self.name} has no variant {name!r}; its variants: {[v.name for v in variants]}")

    def stages_of(self, variant: Variant) -> tuple[str, ...]:
        """The stages ``variant`` trains per held-out session (its own, else all of the experiment's)."""
        if variant.stages is None:
            return self.stages
        unknown = [s for s in variant.stages if s not in self.stages]
        if unknown:
            raise ValueError(
                f"experiment {self.name}: variant {variant.name} trains {unknown}, not among {self.stages}"
            )
        return variant.stages

    def split_of(self, variant: Variant) -> str:
        """The split ``variant`` is scored on (the one its experiment's choices read)."""
        return variant.split or self.split

    def splits_of(self, variant: Variant) -> list[str]:
        """Every split ``variant``'s models are scored on: :meth:`split_of`, then ``also_scored_on``."""
        first = self.split_of(variant)
        return [first, *(s for s in self.also_scored_on if s != first)]

    def data_levels(self, config: dict[str, Any], n_usable_pretrain: int) -> dict[str, dict[str, Any]]:
        """Each variant's amount of data and seed, {name: {'level': ..., 'seed': ...}}, the level
        None for a variant that only trains from scratch (empty unless it has a ``data_axis``)."""
        if self.data_axis is None:
            return {}
        return {
            v.name: {"level": getattr(v, self.data_axis), "seed": v.seed}
            for v in self.variants(config, n_usable_pretrain)
        }

    def candidates(self, config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
        """The variants its selection chooses from (empty unless it selects a best)."""
        if not self.selects_best:
            return []
        return [v for v in self.variants(config, n_usable_pretrain) if not v.from_best]

    @property
    def pretrain_stages(self) -> tuple[str, ...]:
        """The pretraining stages its fine-tuned stages start from (in stage order)."""
        wanted = {vocab.stage(s).pretrained for s in self.stages} - {None}
        return tuple(s for s in vocab.PRETRAIN_STAGES if s in wanted)

    def trains(self, stage: str) -> bool:
        """Whether it trains ``stage`` (a pretraining stage when its variants pretrain their own models)."""
        return stage in self.stages or (self.own_pretrain and stage in self.pretrain_stages)


# ------------------------------------------------------------------------------------ variants
def scaling_sessions(config: dict[str, Any], n_usable: int) -> list[int]:
    """The pretraining-set sizes of the scaling experiment, capped at the usable sessions."""
    sizes = sorted({min(int(k), n_usable) for k in config["experiments"]["scaling_sessions"]})
    return [k for k in sizes if k >= 1]


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
        out.append(
            {
                "model": {"hidden": hidden, "n_layers": layers},
                "training": {"max_lr": lr, "weight_decay": wd, "mask_ratio": ratio},
            }
        )
    return out


def _seed_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    return [Variant(f"seed_{s}", seed=int(s)) for s in config["experiments"]["seeds"]]


def _masking_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    return [
        Variant(name, schemes=tuple(s for s in vocab.MASKING_SCHEMES if s not in left_out))
        for name, left_out in MASKING_VARIANTS.items()
    ]


def _size_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    return [Variant(name, model=dict(sizes)) for name, sizes in config["experiments"]["model_sizes"].items()]


SEED_SEPARATOR = "_seed_"
"""Variants of the experiments that compare options over seeds are named ``<option>_seed_<seed>``
(the loss balances, the fine-tuning recipes, the amounts of data of the scaling and
fine-tuning-data experiments)."""
SCRATCH_VARIANT = "scratch"
"""The option of the variants that only train from scratch (the reference the fine-tuned models
of the fine-tuning-recipe and scaling experiments are compared with)."""


def _scratch_variants(config: dict[str, Any]) -> list[Variant]:
    """A from-scratch-only variant per seed (the reference of an experiment whose other variants fine-tune)."""
    return [
        Variant(f"{SCRATCH_VARIANT}{SEED_SEPARATOR}{s}", seed=int(s), stages=(vocab.SCRATCH.name,))
        for s in config["experiments"]["seeds"]
    ]


def _scaling_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    tuned = [
        Variant(f"sessions_{k}{SEED_SEPARATOR}{s}", seed=int(s), pretrain_sessions=k, stages=(vocab.FINETUNE.name,))
        for k in scaling_sessions(config, n_usable_pretrain)
        for s in config["experiments"]["seeds"]
    ]
    return tuned + _scratch_variants(config)


def _fraction_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    fractions = sorted({float(f) for f in config["experiments"]["finetune_fractions"]})
    return [
        Variant(f"fraction_{f:g}{SEED_SEPARATOR}{s}", seed=int(s), train_fraction=f)
        for f in fractions
        for s in config["experiments"]["seeds"]
    ]


def _balance_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    return [
        Variant(f"{balance}{SEED_SEPARATOR}{s}", seed=int(s), training={"loss": balance})
        for balance in [b for b in vocab.LOSS_BALANCES if b in config["experiments"]["loss_balances"]]
        for s in config["experiments"]["seeds"]
    ]


def _recipe_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    seeds = config["experiments"]["seeds"]
    recipes = [
        Variant(f"{name}{SEED_SEPARATOR}{s}", seed=int(s), finetune=dict(recipe), stages=(vocab.FINETUNE.name,))
        for name, recipe in config["experiments"]["finetune_recipes"].items()
        for s in seeds
    ]
    return recipes + _scratch_variants(config)


def option_seed(variant: str, options: Iterable[str], what: str = "variant") -> tuple[str, int]:
    """(option, seed) of a variant named ``<option>_seed_<seed>``, the option one of ``options``."""
    option, _, seed = variant.rpartition(SEED_SEPARATOR)
    if option not in options or not seed.isdigit():
        raise ValueError(f"{variant!r} is not a {what} (<one of {list(options)}>{SEED_SEPARATOR}<seed>)")
    return option, int(seed)


def balance_of(variant: str) -> tuple[str, int]:
    """(balance, seed) of a loss-balance variant's name."""
    return option_seed(variant, vocab.LOSS_BALANCES, "loss-balance variant")


def _sweep_variants(config: dict[str, Any], n_usable_pretrain: int) -> list[Variant]:
    trials = [
        Variant(f"trial_{i:02d}", model=c["model"], training=c["training"], trial=i, split="val", fit_heads=True)
        for i, c in enumerate(sweep_configs(config))
    ]
    return trials + [Variant(SWEEP_BEST, from_best=True, fit_heads=True)]


_HELDOUT_NEDS = (vocab.FINETUNE.name, vocab.SCRATCH.name)


def _gain_targets(name: str) -> tuple[str, ...]:
    """The gain table, page and figure of an experiment with a ``data_axis`` (rule data_gain)."""
    return (
        f"results/experiments/{name}/gain.md",
        f"results/experiments/{name}/gain.tsv",
        f"results/figures/gain_{name}.png",
        f"results/figures/gain_{name}.svg",
    )


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("seeds", "NEDS over training seeds", _HELDOUT_NEDS, False, _seed_variants),
        Experiment(
            "ablation_masking",
            "masking ablation (pretrained, then fine-tuned)",
            (vocab.FINETUNE.name,),
            True,
            _masking_variants,
        ),
        Experiment("model_size", "model size (pretrained, then fine-tuned)", _HELDOUT_NEDS, True, _size_variants),
        Experiment(
            "scaling",
            "number of pretraining sessions (then fine-tuned; over seeds)",
            _HELDOUT_NEDS,
            True,
            _scaling_variants,
            summary_on_page=False,
            data_axis="pretrain_sessions",
            extra_targets=_gain_targets("scaling"),
        ),
        Experiment(
            "finetune_trials",
            "fraction of the held-out sessions' training trials (over seeds)",
            _HELDOUT_NEDS,
            False,
            _fraction_variants,
            summary_on_page=False,
            data_axis="train_fraction",
            extra_targets=_gain_targets("finetune_trials"),
        ),
        Experiment(
            "peers",
            "NEDS and its peers, fine-tuned (over seeds)",
            (vocab.FINETUNE.name, vocab.POYO_FINETUNE.name, vocab.NDT2_FINETUNE.name),
            False,
            _seed_variants,
            extra_targets=(
                "results/experiments/peers/comparison.md",
                "results/figures/peers_decoding.png",
                "results/figures/peers_encoding.png",
                "results/figures/training_curves_peers.png",
            ),
        ),
        Experiment(
            "loss_balance",
            "balance of the modalities' losses (pretrained, then fine-tuned; over seeds)",
            (*_HELDOUT_NEDS, vocab.ENCODING.name, vocab.DECODING.name),
            True,
            _balance_variants,
            split="val",
            also_scored_on=("test",),
            in_all=False,
            summary_on_page=False,
            extra_targets=("results/experiments/loss_balance/comparison.md",),
        ),
        Experiment(
            "finetune_recipe",
            "fine-tuning recipe, against training from scratch (over seeds)",
            _HELDOUT_NEDS,
            False,
            _recipe_variants,
            split="val",
            also_scored_on=("test",),
            in_all=False,
            summary_on_page=False,
            extra_targets=("results/experiments/finetune_recipe/comparison.md",),
        ),
        Experiment(
            "sweep",
            "hyper-parameter sweep (trained from scratch)",
            (vocab.SCRATCH.name,),
            False,
            _sweep_variants,
            selects_best=True,
        ),
    )
}
"""The experiments by name: the workflow's targets, in the order of ``snakemake experiments``."""
EXPERIMENT_TITLES = {name: e.title for name, e in EXPERIMENTS.items()}
"""Figure titles by experiment name."""


def _fit_heads(model: dict[str, Any]) -> None:
    """Keep a hidden size drawn by the sweep divisible into an even head size."""
    while model["hidden"] % model["n_heads"] or (model["hidden"] // model["n_heads"]) % 2:
        model["n_heads"] -= 1
        if model["n_heads"] < 1:
            raise ConfigError(f"experiments.sweep.hidden {model['hidden']} cannot be split into attention heads")


# ------------------------------------------------------------------------------------ selection
def select_best(candidate_files: dict[str, list[str | Path]], candidates: dict[str, dict]) -> dict[str, Any]:
    """The candidate with the best mean validation score over sessions.

    candidate_files : variant name ('trial_00', ...) -> its per-session evaluation JSON files
        (rows of neds.stages.run_score_models, scored on the validation split)
    candidates : variant name -> its overrides (:attr:`Variant.overrides`)
    Returns {'variant', 'settings', 'val_score', 'scores'} (settings: the best's overrides;
    scores: every candidate's mean score).
    """
    scores = {}
    for name, files in candidate_files.items():
        values = []
        for path in files:
            for row in json.loads(Path(path).read_text())["rows"]:
                values.append(float(np.nanmean([row[k] for k in vocab.SELECTION_METRICS if k in row])))
        scores[name] = float(np.mean(values)) if values else float("nan")
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        raise ValueError("no candidate of the selection has a finite validation score")
    best = max(finite, key=finite.get)
    return {"variant": best, "settings": candidates[best], "val_score": finite[best], "scores": scores}
