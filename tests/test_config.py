"""Config schema, session lists and the leakage guard."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from neds.config import (
    ConfigError,
    check_no_leakage,
    model_settings,
    read_eid_list,
    session_lists,
    train_settings,
    validate_config,
)

ROOT = Path(__file__).resolve().parent.parent
EID_A = "754b74d5-7a06-4004-ae0c-72a10b6ed2e6"
EID_B = "d23a44ef-1402-4ed7-97f5-47e9a7a504d9"


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_validates_and_gets_defaults():
    cfg = validate_config(default_config())
    assert cfg["binning"]["min_units"] == 1  # filled from the schema
    assert cfg["data"]["one"]["max_retries"] == 5


def test_default_config_sets_no_per_modality_weight():
    """The default run balances the modalities without a hand-set weight: a balance that needs
    none, in config.yaml and in the schema (so an overlay cannot fall back to 'weights')."""
    raw = default_config()["training"]
    assert "loss_weights" not in raw and not any("loss_weights" in v for v in raw.values() if isinstance(v, dict))
    cfg = validate_config(default_config())
    for stage in ("pretrain", "finetune", "scratch", "encoding", "decoding"):
        assert train_settings(cfg, stage)["loss"] == "gradnorm_lift"
    schema = yaml.safe_load((ROOT / "neds" / "schema" / "config.schema.yaml").read_text())
    assert schema["properties"]["training"]["properties"]["loss"]["default"] == "gradnorm_lift"


def test_paper_config_validates():
    cfg = validate_config(yaml.safe_load((ROOT / "config" / "ibl_repeated_site.yaml").read_text()))
    pretrain, heldout = session_lists(cfg, base_dir=ROOT)
    assert len(pretrain) == 74 and len(heldout) == 10
    assert cfg["data"]["one"]["revision"] and cfg["data"]["require_all_usable"]
    assert model_settings(cfg, "pretrain")["n_layers"] == model_settings(cfg, "finetune")["n_layers"] == 22
    assert model_settings(cfg, "scratch")["n_layers"] == model_settings(cfg, "encoding")["n_layers"] == 5
    assert "pretrain_n_layers" not in model_settings(cfg, "scratch")
    # trained the authors' way: their loss normalisation and their dropout on the attention probabilities
    assert train_settings(cfg, "finetune")["loss"] == train_settings(cfg, "pretrain")["loss"] == "paper"
    assert (
        model_settings(cfg, "finetune")["attention_dropout"] == 0.4 and model_settings(cfg, "finetune")["dropout"] == 0
    )


@pytest.mark.parametrize(
    "path,value,match",
    [
        (("binning", "bin_size_s"), "fast", "binning.bin_size_s"),
        (("binning", "min_trials"), 2.5, "binning.min_trials"),
        (("data", "source"), "allen", "data.source"),
        (("simulation", "n_units"), [10], "simulation.n_units"),
        (("binning", "unknown_key"), 1, "unknown_key"),
    ],
)
def test_wrong_types_are_named(path, value, match):
    cfg = default_config()
    cfg[path[0]][path[1]] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_cross_key_rules():
    cfg = default_config()
    cfg["binning"]["window_s"] = [-0.5, 1.51]
    with pytest.raises(ConfigError, match="multiple"):
        validate_config(cfg)
    cfg = default_config()
    cfg["data"]["one"]["cache_dir"] = "elsewhere"
    with pytest.raises(ConfigError, match="cache_dir"):
        validate_config(cfg)
    cfg = default_config()
    cfg["simulation"]["missing_datasets"] = [{"session": 99, "datasets": ["motion_energy"]}]
    with pytest.raises(ConfigError, match="session 99"):
        validate_config(cfg)


def test_leakage_guard():
    check_no_leakage([EID_A], [EID_B])
    with pytest.raises(ConfigError, match="held-out"):
        check_no_leakage([EID_A, EID_B], [EID_B])
    cfg = validate_config(
        {"data": {"source": "ibl", "pretrain_eids": [EID_A, EID_B], "heldout_eids": [EID_B], "one": {"cache_dir": "x"}}}
    )
    with pytest.raises(ConfigError, match="held-out"):
        session_lists(cfg)


def test_eid_list_file(tmp_path):
    f = tmp_path / "eids.txt"
    f.write_text(f"# pretraining\n{EID_A}\n\n{EID_B}  # a comment\n")
    assert read_eid_list(str(f), "k") == [EID_A, EID_B]
    with pytest.raises(ConfigError, match="does not exist"):
        read_eid_list(str(tmp_path / "nope.txt"), "k")
    with pytest.raises(ConfigError, match="not ONE session ids"):
        read_eid_list(["not-an-eid"], "k")
    with pytest.raises(ConfigError, match="more than once"):
        read_eid_list([EID_A, EID_A], "k")


def test_simulated_sessions_are_split_and_disjoint():
    cfg = validate_config(default_config())
    pretrain, heldout = session_lists(cfg)
    assert len(pretrain) == 4 and len(heldout) == 2
    assert not set(pretrain) & set(heldout)
    again = session_lists(validate_config(copy.deepcopy(default_config())))
    assert again == (pretrain, heldout)


def test_larger_simulation_is_other_animals():
    """config/larger_simulation.yaml over the default: other animals (no session shared with the
    default run), twice the pretraining sessions, the rest of the run as the default's."""
    from neds.docs import resolve_config

    default = validate_config(default_config())
    larger = validate_config(
        resolve_config([ROOT / "config" / "config.yaml", ROOT / "config" / "larger_simulation.yaml"])
    )
    pretrain, heldout = session_lists(larger)
    assert len(pretrain) == 8 and len(heldout) == 2
    assert not (set(pretrain) | set(heldout)) & set(sum(session_lists(default), []))
    for section in ("model", "training", "binning", "experiments"):
        assert larger[section] == default[section], section
    assert larger["docs"]["page"] == "docs/results_larger_simulation.md" != default["docs"]["page"]


def test_require_all_usable_names_each_unusable_session(tmp_path):
    from neds.stages import run_summarize_sessions

    a, b = "754b74d5-7a06-4004-ae0c-72a10b6ed2e6", "d23a44ef-1402-4ed7-97f5-47e9a7a504d9"
    (tmp_path / "a.json").write_text(json.dumps({"eid": a, "usable": True, "reason": ""}))
    (tmp_path / "b.json").write_text(json.dumps({"eid": b, "usable": False, "reason": "no whisker motion energy"}))
    files, roles = [tmp_path / "a.json", tmp_path / "b.json"], {a: "pretrain", b: "heldout"}
    table = run_summarize_sessions(files, roles, tmp_path / "ok.tsv")  # lenient: recorded, not raised
    assert table["usable"].tolist() == [True, False]
    with pytest.raises(ValueError, match=f"{b} \\(heldout\\): no whisker motion energy"):
        run_summarize_sessions(files, roles, tmp_path / "strict.tsv", require_all_usable=True)
    assert (tmp_path / "strict.tsv").exists()  # the table is written before the error


def test_masking_ablation_names_real_schemes():
    from neds.experiments import MASKING_VARIANTS
    from neds.model.masking import SCHEMES

    for left_out in MASKING_VARIANTS.values():
        assert set(left_out) <= set(SCHEMES)


# ------------------------------------------------------------------ one schema, one set of defaults
def test_defaults_inside_definitions_are_filled():
    cfg = validate_config({**default_config(), "training": {"pretrain": {"epochs": 5}, "decoding": {"max_lr": 0.01}}})
    pretrain, decoding = cfg["training"]["pretrain"], cfg["training"]["decoding"]
    assert pretrain["epochs"] == 5 and pretrain["batch_size"] == 16 and pretrain["weight_decay"] == 0.01
    assert decoding["max_lr"] == 0.01 and decoding["epochs"] == 60 and decoding["mask_ratio"] == 0.3
    assert cfg["training"]["finetune"]["epochs"] == 60  # a stage left out entirely
    assert validate_config(default_config())["training"]["pretrain"]["epochs"] == 30


def test_dataclass_defaults_are_the_schemas():
    from dataclasses import fields

    from neds.config import schema_defaults, train_settings
    from neds.model.neds import ModelConfig
    from neds.train import TrainConfig

    model = schema_defaults("model")
    for f in fields(ModelConfig):
        if f.name in model:
            assert getattr(ModelConfig(), f.name) == model[f.name], f.name
    assert set(model) - {f.name for f in fields(ModelConfig)} == {"pretrain_n_layers"}  # model_settings resolves it
    # a stage that sets nothing trains exactly as TrainConfig() does
    settings = train_settings(validate_config({**default_config(), "training": {}}), "finetune")
    assert TrainConfig.from_dict({**settings, "progress": True}) == TrainConfig()
    config_keys = set(settings)
    assert {f.name for f in fields(TrainConfig)} - config_keys == {"progress"}
    for name in config_keys:
        assert getattr(TrainConfig(), name) == settings[name], name


def test_schema_speaks_the_vocabulary():
    from neds import vocab
    from neds.config import schema

    s = schema()
    training = s["properties"]["training"]["properties"]
    assert [k for k in training if k in vocab.STAGES] == list(vocab.STAGES)
    assert s["definitions"]["stage_settings"]["properties"]["schemes"]["items"]["enum"] == list(vocab.MASKING_SCHEMES)
    assert list(s["definitions"]["loss_weights"]["properties"]) == list(vocab.MODALITIES)
    stage = s["definitions"]["stage_settings"]["properties"]
    assert s["definitions"]["loss"]["enum"] == list(vocab.LOSS_BALANCES)
    assert s["properties"]["experiments"]["properties"]["loss_balances"]["default"] == list(vocab.LOSS_BALANCES)
    assert stage["session_init"]["enum"] == list(vocab.SESSION_INITS)
    assert stage["spike_bias_init"]["enum"] == list(vocab.SPIKE_BIAS_INITS)
    bwb = s["properties"]["bwb"]["properties"]
    assert set(bwb["method"]["enum"]) | set(bwb["co_smoothing_method"]["enum"]) <= set(vocab.METHODS)


def test_schema_ships_inside_the_package():
    from importlib import resources

    from neds.config import SCHEMA_PATH

    assert resources.files("neds").joinpath("schema", "config.schema.yaml").is_file()
    assert SCHEMA_PATH.parent.parent == Path(__import__("neds").__file__).parent
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'neds = ["schema/*.yaml"]' in pyproject  # package data: a non-editable install validates too
    assert not (ROOT / "workflow" / "schemas").exists()  # no second copy


def test_paper_config_is_the_same_merged_over_the_default():
    """`snakemake --configfile config/ibl_repeated_site.yaml` merges it over config/config.yaml, so
    every model and training key the default config sets must be set by the paper config too."""
    from neds.docs import resolve_config  # merges config files as Snakemake merges a --configfile

    paper = ROOT / "config" / "ibl_repeated_site.yaml"
    alone = resolve_config([paper])
    merged = resolve_config([ROOT / "config" / "config.yaml", paper])
    for section in ("data", "binning", "model", "training", "baselines", "experiments"):
        assert merged[section] == alone[section], section
