"""The experiments' registry (neds.experiments): every entry's variants from the default config,
their parameters, the stages they train and the settings each gives; the sweep's selection; and
the SLURM profile's settings of the training rules the experiments derive from the main ones."""

import json
import re
from pathlib import Path

import pytest
import yaml

from neds import vocab
from neds.config import ConfigError, model_settings, train_settings, validate_config
from neds.experiments import (
    EXPERIMENT_TITLES,
    EXPERIMENTS,
    MASKING_VARIANTS,
    SWEEP_BEST,
    Experiment,
    Variant,
    select_best,
    sweep_configs,
)

ROOT = Path(__file__).resolve().parent.parent
N_USABLE = 4  # the default config's simulated pretraining sessions
STAGES = (vocab.PRETRAIN.name, vocab.FINETUNE.name, vocab.SCRATCH.name)


@pytest.fixture(scope="module")
def config():
    return validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def _variants(config, name, n_usable=N_USABLE):
    return {v.name: v for v in EXPERIMENTS[name].variants(config, n_usable)}


def _main(config, stage):
    return model_settings(config, stage), train_settings(config, stage)


# the plan of each entry: its variants' names, the stages it trains, whether it pretrains
PLANS = {
    "seeds": (["seed_42", "seed_43", "seed_44"], ("finetune", "scratch"), False),
    "ablation_masking": (["full", "no_cross_modal", "no_cross_no_within"], ("finetune",), True),
    "model_size": (["small", "large"], ("finetune", "scratch"), True),
    "scaling": (
        [f"sessions_{k}_seed_{s}" for k in (1, 2, 4) for s in (42, 43, 44)]
        + [f"scratch_seed_{s}" for s in (42, 43, 44)],
        ("finetune", "scratch"),
        True,
    ),
    "finetune_trials": (
        [f"fraction_{f}_seed_{s}" for f in ("0.125", "0.25", "0.5", "1") for s in (42, 43, 44)],
        ("finetune", "scratch"),
        False,
    ),
    "peers": (["seed_42", "seed_43", "seed_44"], ("finetune", "poyo_finetune", "ndt2_finetune"), False),
    "loss_balance": (
        [f"{b}_seed_{s}" for b in vocab.LOSS_BALANCES for s in (42, 43, 44)],
        ("finetune", "scratch", "encoding", "decoding"),
        True,
    ),
    "finetune_recipe": (
        [f"{r}_seed_{s}" for r in ("paper", "session", "frozen", "slow_shared", "session_frozen") for s in (42, 43, 44)]
        + [f"scratch_seed_{s}" for s in (42, 43, 44)],
        ("finetune", "scratch"),
        False,
    ),
    "sweep": (["trial_00", "trial_01", "trial_02", "trial_03", SWEEP_BEST], ("scratch",), False),
}


def test_every_entry_has_a_plan_here():
    assert list(EXPERIMENTS) == list(PLANS)  # a new entry gets its plan (and a test below)


@pytest.mark.parametrize("name", list(PLANS))
def test_plan_of_each_experiment(config, name):
    names, stages, own_pretrain = PLANS[name]
    exp = EXPERIMENTS[name]
    assert exp.name == name and EXPERIMENT_TITLES[name] == exp.title and exp.title
    assert list(_variants(config, name)) == names
    assert exp.stages == stages and exp.own_pretrain == own_pretrain
    assert exp.trains(vocab.PRETRAIN.name) == (own_pretrain and vocab.FINETUNE.name in stages)
    assert set(exp.stages) <= set(vocab.PER_SESSION_STAGES)
    for v in exp.variants(config, N_USABLE):
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", v.name)  # a folder name and the workflow's variant wildcard
        assert exp.variant(config, v.name, N_USABLE) == v
        chosen_on_val = (name == "sweep" and v.name != SWEEP_BEST) or name in ("loss_balance", "finetune_recipe")
        assert exp.split_of(v) == ("val" if chosen_on_val else "test")
        assert exp.splits_of(v) == (
            ["val", "test"] if name in ("loss_balance", "finetune_recipe") else [exp.split_of(v)]
        )
    with pytest.raises(ConfigError, match="has no variant"):
        exp.variant(config, "nope", N_USABLE)


def test_seeds_set_the_training_seed_of_every_stage(config):
    for seed, v in zip((42, 43, 44), _variants(config, "seeds").values()):
        assert v.seed == seed
        for stage in STAGES:
            model, training = v.settings(config, stage)
            main_model, main_training = _main(config, stage)
            assert model == main_model and training == {**main_training, "seed": seed}


def test_masking_ablation_removes_the_named_schemes(config):
    variants = _variants(config, "ablation_masking")
    assert variants["full"].schemes == vocab.MASKING_SCHEMES
    assert variants["no_cross_modal"].schemes == ("neural", "behavioural", "within_neural", "within_behavioural")
    assert variants["no_cross_no_within"].schemes == ("neural", "behavioural")
    for name, v in variants.items():
        assert set(v.schemes) == set(vocab.MASKING_SCHEMES) - set(MASKING_VARIANTS[name])
        for stage in STAGES:
            model, training = v.settings(config, stage)
            assert training == {**_main(config, stage)[1], "schemes": list(v.schemes)}
            assert model == _main(config, stage)[0]


def test_model_size_overrides_the_model_of_every_stage(config):
    sizes = config["experiments"]["model_sizes"]
    for name, v in _variants(config, "model_size").items():
        assert v.model == sizes[name]
        for stage in STAGES:
            model, training = v.settings(config, stage)
            assert model == {**_main(config, stage)[0], **sizes[name]} and training == _main(config, stage)[1]
    assert _variants(config, "model_size")["large"].settings(config, "finetune")[0]["hidden"] == 128


def test_scaling_pretrains_on_the_first_k_usable_sessions_per_seed(config):
    exp = EXPERIMENTS["scaling"]
    variants = _variants(config, "scaling")
    tuned = [v for v in variants.values() if v.pretrain_sessions is not None]
    assert [(v.pretrain_sessions, v.seed) for v in tuned] == [(k, s) for k in (1, 2, 4) for s in (42, 43, 44)]
    for v in tuned:
        assert exp.stages_of(v) == ("finetune",)
        for stage in STAGES:
            assert v.settings(config, stage) == _main(config, stage)[:1] + (
                {**_main(config, stage)[1], "seed": v.seed},
            )
    # the reference: trained from scratch at each seed, pretraining nothing
    scratch = [v for v in variants.values() if v.pretrain_sessions is None]
    assert [(v.seed, exp.stages_of(v)) for v in scratch] == [(s, ("scratch",)) for s in (42, 43, 44)]
    assert exp.data_levels(config, N_USABLE)["scratch_seed_43"] == {"level": None, "seed": 43}
    assert exp.data_levels(config, N_USABLE)["sessions_2_seed_44"] == {"level": 2, "seed": 44}
    # capped at the usable pretraining sessions, without repeats
    assert list(_variants(config, "scaling", n_usable=2))[::3] == [
        "sessions_1_seed_42",
        "sessions_2_seed_42",
        "scratch_seed_42",
    ]
    levels = [v.pretrain_sessions for v in _variants(config, "scaling", n_usable=3).values()]
    assert levels == [1, 1, 1, 2, 2, 2, 3, 3, 3, None, None, None]


def test_finetune_trials_set_the_train_fraction_of_the_held_out_stages(config):
    exp = EXPERIMENTS["finetune_trials"]
    variants = _variants(config, "finetune_trials")
    assert [(v.train_fraction, v.seed) for v in variants.values()] == [
        (f, s) for f in (0.125, 0.25, 0.5, 1.0) for s in (42, 43, 44)
    ]
    for v in variants.values():
        assert exp.stages_of(v) == ("finetune", "scratch")
        for stage in ("finetune", "scratch"):
            model, training = v.settings(config, stage)
            assert training == {**_main(config, stage)[1], "train_fraction": v.train_fraction, "seed": v.seed}
        pretrain = v.settings(config, "pretrain")  # pretraining keeps all its trials
        assert pretrain == (_main(config, "pretrain")[0], {**_main(config, "pretrain")[1], "seed": v.seed})
    assert exp.data_levels(config, N_USABLE)["fraction_0.25_seed_43"] == {"level": 0.25, "seed": 43}
    one_seed = {**config["experiments"], "finetune_fractions": [1.0, 0.5, 0.5], "seeds": [7]}
    assert exp.variants({**config, "experiments": one_seed}, N_USABLE) == [
        Variant("fraction_0.5_seed_7", seed=7, train_fraction=0.5),
        Variant("fraction_1_seed_7", seed=7, train_fraction=1.0),
    ]


def test_only_the_data_experiments_have_a_data_axis(config):
    with_axis = {name for name, e in EXPERIMENTS.items() if e.data_axis}
    assert with_axis == {"scaling", "finetune_trials"}
    assert EXPERIMENTS["seeds"].data_levels(config, N_USABLE) == {}
    with pytest.raises(ValueError, match="data_axis"):
        Experiment("x", "x", ("finetune",), False, lambda c, n: [], data_axis="epochs")


def test_sweep_trials_and_best(config, tmp_path):
    exp = EXPERIMENTS["sweep"]
    variants = _variants(config, "sweep")
    drawn = sweep_configs(config)
    assert exp.selects_best and len(drawn) == config["experiments"]["sweep"]["n_configs"]
    trials = [v for v in variants.values() if not v.from_best]
    assert [v.name for v in exp.candidates(config, N_USABLE)] == [v.name for v in trials]
    for i, v in enumerate(trials):
        assert v.trial == i and v.overrides == drawn[i] and v.split == "val"
        model, training = v.settings(config, "scratch")
        assert {k: training[k] for k in drawn[i]["training"]} == drawn[i]["training"]
        assert model["hidden"] == drawn[i]["model"]["hidden"] and model["n_layers"] == drawn[i]["model"]["n_layers"]
        assert model["hidden"] % model["n_heads"] == 0 and (model["hidden"] // model["n_heads"]) % 2 == 0
    best = variants[SWEEP_BEST]
    assert best.from_best and exp.split_of(best) == "test"
    with pytest.raises(ValueError, match="best.json"):
        best.settings(config, "scratch")

    # the selection: the candidate with the best mean validation score, with its settings
    files = {}
    for i, v in enumerate(trials):
        files[v.name] = [tmp_path / f"{v.name}.json"]
        score = 0.1 * i if i != 1 else 0.9
        files[v.name][0].write_text(json.dumps({"rows": [{k: score for k in vocab.SELECTION_METRICS}]}))
    chosen = select_best(files, {v.name: v.overrides for v in trials})
    assert chosen["variant"] == "trial_01" and chosen["settings"] == drawn[1]
    assert chosen["val_score"] == pytest.approx(0.9) and set(chosen["scores"]) == set(files)
    chosen = json.loads(json.dumps(chosen))  # as read back from best.json
    assert best.settings(config, "scratch", best=chosen) == trials[1].settings(config, "scratch")


def test_sweep_widths_keep_even_heads(config):
    v = Variant("odd", model={"hidden": 20, "n_heads": 4}, fit_heads=True)
    model, _ = v.settings(config, "scratch")
    assert model["n_heads"] == 2  # 20 / 4 = 5 is odd, 3 does not divide 20: 2 heads of 10
    assert (
        Variant("even", model={"hidden": 20, "n_heads": 4}).settings(config, "scratch")[0]["n_heads"] == 4
    )  # only when asked
    with pytest.raises(ConfigError, match="cannot be split"):
        Variant("bad", model={"hidden": 3, "n_heads": 4}, fit_heads=True).settings(config, "scratch")


def test_masking_variants_use_vocabulary_names():
    for left_out in MASKING_VARIANTS.values():
        assert set(left_out) <= set(vocab.MASKING_SCHEMES)


# ------------------------------------------------------------------ the SLURM profile and the rules
def _rule_bodies(text: str) -> dict[str, str]:
    """{name: body} of the `rule NAME:` and `checkpoint NAME:` blocks of a .smk file."""
    return dict(re.findall(r"^(?:rule|checkpoint) (\w+):\n((?:(?:[ \t]+.*)?\n)*)", text, flags=re.M))


def test_slurm_profile_covers_every_gpu_rule_and_every_derived_rule():
    """A derived rule (`use rule A as B`) inherits A's resources but not the profile's settings
    for A (keyed by rule name): the profile must give B exactly A's block, and every rule asking
    for a GPU a GPU partition."""
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    per_rule, default_partition = profile["set-resources"], profile["default-resources"]["slurm_partition"]
    bodies, derived = {}, {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        bodies.update(_rule_bodies(text))
        derived.update(
            {child: parent for parent, child in re.findall(r"^use rule (\w+) as (\w+) with:", text, flags=re.M)}
        )
    gpu_rules = [name for name, body in bodies.items() if re.search(r"^\s+gpu=", body, flags=re.M)]
    assert {"pretrain_model", "train_model"} <= set(gpu_rules)
    assert {"exp_pretrain": "pretrain_model", "exp_train": "train_model"}.items() <= derived.items()
    for name in gpu_rules:
        assert per_rule.get(name, {}).get("slurm_partition", default_partition) != default_partition, name
    for child, parent in derived.items():
        assert per_rule.get(child) == per_rule.get(parent), f"{child} (use rule {parent}) lacks {parent}'s block"


def test_the_peers_experiment_fine_tunes_each_model_from_its_own_pretraining(config):
    exp = EXPERIMENTS["peers"]
    assert exp.pretrain_stages == (vocab.PRETRAIN.name, vocab.NDT2_PRETRAIN.name, vocab.POYO_PRETRAIN.name)
    assert not any(exp.trains(s) for s in exp.pretrain_stages)  # from the main run's pretrained models
    for stage in exp.stages:
        kind = vocab.stage(stage)
        assert kind.from_pretrained and vocab.stage(kind.pretrained).architecture == kind.architecture
        model, training = _variants(config, "peers")["seed_43"].settings(config, stage)
        assert training["seed"] == 43
        assert model == model_settings(config, stage)  # the architecture's own config section
    assert set(model_settings(config, vocab.NDT2_FINETUNE.name)) == set(config["ndt2"])
    assert set(model_settings(config, vocab.POYO_FINETUNE.name)) == set(config["poyo_plus"])


def test_loss_balance_trains_every_balance_with_each_seed(config):
    from neds.experiments import balance_of, option_seed

    for v in _variants(config, "loss_balance").values():
        balance, seed = balance_of(v.name)
        assert v.seed == seed and balance in vocab.LOSS_BALANCES
        for stage in (vocab.PRETRAIN.name, vocab.FINETUNE.name, vocab.DECODING.name):
            model, training = v.settings(config, stage)
            main_model, main_training = _main(config, stage)
            assert model == main_model and training == {**main_training, "loss": balance, "seed": seed}
    with pytest.raises(ValueError, match="not a loss-balance variant"):
        balance_of("seed_42")
    assert option_seed("slow_shared_seed_43", ["slow_shared"]) == ("slow_shared", 43)
    assert {balance_of(name)[0] for name in _variants(config, "loss_balance")} == set(vocab.LOSS_BALANCES)
    # a subset of the balances, in the vocabulary's order whatever the list's
    pair = {**config, "experiments": {**config["experiments"], "loss_balances": ["paper", "uncertainty"]}}
    assert list(_variants(validate_config(pair), "loss_balance")) == [
        f"{b}_seed_{s}" for b in ("uncertainty", "paper") for s in config["experiments"]["seeds"]
    ]
    for bad in (["unknown"], [], ["paper", "paper"]):
        with pytest.raises(ConfigError, match="loss_balances"):
            validate_config({**config, "experiments": {**config["experiments"], "loss_balances": bad}})
    # too long to run with the others: only its own target builds it
    long = ("loss_balance", "finetune_recipe")
    assert all(e.in_all == (n not in long) for n, e in EXPERIMENTS.items())


def test_each_recipe_changes_only_fine_tuning_and_scratch_is_its_reference(config):
    exp = EXPERIMENTS["finetune_recipe"]
    variants = _variants(config, "finetune_recipe")
    frozen = variants["session_frozen_seed_43"]
    assert exp.stages_of(frozen) == (vocab.FINETUNE.name,)
    model, training = frozen.settings(config, vocab.FINETUNE.name)
    main_model, main_training = _main(config, vocab.FINETUNE.name)
    assert model == main_model
    assert training == {**main_training, "seed": 43, "session_init": "pretrained", "frozen_epochs": 10}
    # the recipe is not applied to a stage that does not start from a pretrained model
    assert frozen.settings(config, vocab.SCRATCH.name)[1] == {**_main(config, vocab.SCRATCH.name)[1], "seed": 43}
    scratch = variants["scratch_seed_44"]
    assert exp.stages_of(scratch) == (vocab.SCRATCH.name,)
    assert scratch.settings(config, vocab.SCRATCH.name)[1] == {**_main(config, vocab.SCRATCH.name)[1], "seed": 44}
    paper = {"seed": 42, "frozen_epochs": 0, "shared_lr_scale": 1.0, "session_init": "random"}
    assert variants["paper_seed_42"].settings(config, vocab.FINETUNE.name)[1] == {**main_training, **paper}
    with pytest.raises(ValueError, match="trains \\['encoding'\\]"):
        exp.stages_of(Variant("x", stages=(vocab.ENCODING.name,)))
    bad = {**config, "experiments": {**config["experiments"], "finetune_recipes": {"scratch": {}}}}
    with pytest.raises(ConfigError, match="finetune_recipes"):
        validate_config(bad)
