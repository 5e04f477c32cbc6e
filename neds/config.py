"""Workflow configuration: validation against the schema, session lists and the leakage guard."""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from neds.vocab import HELDOUT_ROLE, PRETRAIN_ROLE, ROLES

__all__ = [
    "EID_PATTERN",
    "ConfigError",
    "read_eid_list",
    "check_no_leakage",
    "check_no_shared_subjects",
    "session_lists",
    "one_settings",
    "binning_params",
    "simulation_config",
    "validate_config",
    "model_settings",
    "train_settings",
    "schema",
    "schema_defaults",
    "SCHEMA_PATH",
]

EID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SCHEMA_PATH = Path(str(resources.files("neds") / "schema" / "config.schema.yaml"))
"""The configuration's JSON schema, shipped inside the package: every key, its type, its
description and its default. It is the only place defaults live (:func:`schema_defaults`)."""


class ConfigError(ValueError):
    """The configuration is inconsistent; the message names the key and the fix."""


def read_eid_list(value: str | list[str] | None, key: str, base_dir: Path | None = None) -> list[str]:
    """Session ids from a YAML list or from a text file (one eid per line, '#' comments).

    Raises
    ------
    ConfigError
        If the file does not exist, an entry is not a UUID, or an eid is listed twice.
    """
    if value is None:
        return []
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            raise ConfigError(f"{key}: eid list file {path} does not exist; give an existing file or a YAML list")
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        eids = [line for line in lines if line]
    else:
        eids = [str(e).strip() for e in value]
    bad = [e for e in eids if not EID_PATTERN.match(e)]
    if bad:
        raise ConfigError(f"{key}: {bad[:3]} are not ONE session ids (lower-case UUIDs); fix the list")
    dupes = sorted({e for e in eids if eids.count(e) > 1})
    if dupes:
        raise ConfigError(f"{key}: {dupes[:3]} listed more than once; remove the duplicates")
    return eids


def check_no_leakage(pretrain: list[str], heldout: list[str]) -> None:
    """Refuse a configuration in which a held-out session is also a pretraining session (the
    animals are compared later, once known: :func:`check_no_shared_subjects`)."""
    overlap = sorted(set(pretrain) & set(heldout))
    if overlap:
        raise ConfigError(
            f"{len(overlap)} held-out session(s) also appear in the pretraining list (e.g. {overlap[0]}): "
            "a held-out animal must never be seen in pretraining; remove it from data.pretrain_eids"
        )


def check_no_shared_subjects(sessions: list[dict]) -> None:
    """Refuse held-out sessions whose animal is also a pretraining animal.

    sessions : one dict per session with ``eid``, ``role`` ('pretrain' | 'heldout') and
        ``subject`` (empty or missing when the session could not be read: not checked)

    The session lists name sessions, not animals; the subject is known once a session has been
    read through ONE, so the workflow checks this when it collects the sessions' status.

    Raises
    ------
    ConfigError
        Naming the subject and both sessions, for the first shared subject (and how many there are).
    """
    by_subject: dict[str, dict[str, list[str]]] = {}
    for s in sessions:
        subject = str(s.get("subject") or "").strip()
        if subject and subject.lower() != "nan" and s.get("role") in ROLES:
            by_subject.setdefault(subject, {role: [] for role in ROLES})[s["role"]].append(str(s["eid"]))
    shared = {k: v for k, v in sorted(by_subject.items()) if v[PRETRAIN_ROLE] and v[HELDOUT_ROLE]}
    if shared:
        subject, roles = next(iter(shared.items()))
        raise ConfigError(
            f"{len(shared)} animal(s) are both held out and pretrained on: subject {subject} recorded held-out "
            f"session {roles[HELDOUT_ROLE][0]} and pretraining session {roles[PRETRAIN_ROLE][0]}"
            + (f" (also {', '.join(list(shared)[1:4])})" if len(shared) > 1 else "")
            + "; a held-out animal must never be seen in pretraining: remove its sessions from data.pretrain_eids "
            "(or the session from data.heldout_eids)"
        )


def session_lists(config: dict[str, Any], base_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """(pretraining eids, held-out eids) of a validated config, after the leakage guard.

    No I/O beyond reading list files: for simulated data the eids derive from the seed.
    """
    data = config["data"]
    if data["source"] == "simulated":
        from neds.simulate import session_eids

        sim = config["simulation"]
        eids = session_eids(sim["seed"], sim["n_pretrain_sessions"] + sim["n_heldout_sessions"])
        pretrain, heldout = eids[: sim["n_pretrain_sessions"]], eids[sim["n_pretrain_sessions"] :]
    else:
        pretrain = read_eid_list(data.get("pretrain_eids"), "data.pretrain_eids", base_dir)
        heldout = read_eid_list(data.get("heldout_eids"), "data.heldout_eids", base_dir)
        if not pretrain and not heldout:
            raise ConfigError(
                "data.source is 'ibl' but data.pretrain_eids and data.heldout_eids are empty; list sessions"
            )
    check_no_leakage(pretrain, heldout)
    return pretrain, heldout


@lru_cache(maxsize=1)
def _schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema() -> dict:
    """The configuration's JSON schema (a copy)."""
    return copy.deepcopy(_schema())


def schema_defaults(*path: str) -> dict[str, Any]:
    """The defaults of one object of the schema, filled in by the validator that fills a config.

    path : property names from the top (``"model"``, ``"training"``) or, starting with
        ``"definitions"``, a shared definition (``"definitions", "stage_settings"``)

    The dataclasses of the package (:class:`neds.model.neds.ModelConfig`,
    :class:`neds.train.TrainConfig`) take their defaults from here, so they cannot disagree with
    the schema.
    """
    where = ".".join(path) or "the top level"
    node: dict = _schema()
    if path and path[0] == "definitions":
        node, path = node["definitions"][path[1]], path[2:]
    for key in path:
        node = node["properties"][key]
    defaults: dict[str, Any] = {}
    errors = list(_validator_with_defaults().evolve(schema=node).iter_errors(defaults))
    if errors:  # the schema's own defaults break its rules
        raise ConfigError(f"the schema's defaults of {where} are invalid: {errors[0].message}")
    return defaults


@lru_cache(maxsize=1)
def _validator_with_defaults():
    """A JSON-schema validator that fills each missing key with its default before validating it,
    also inside ``$ref`` definitions (as ``snakemake.utils.validate(..., set_default=True)`` does)."""
    import jsonschema

    base = jsonschema.validators.validator_for(_schema())
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, node):
        if validator.is_type(instance, "object"):
            for key, sub in properties.items():
                if key not in instance and "default" in sub:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, node)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})(_schema())


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a config dict against the schema, filling in every default, then check the rules
    across keys that the schema cannot express (:func:`check_consistency`).

    The one validator of the project: the workflow (``workflow/rules/common.smk``) and the command
    line (``python -m neds``) both call it. Returns the same dict, completed.

    Raises
    ------
    ConfigError
        Naming the key, what is wrong and, for the rules across keys, the fix.
    """
    import jsonschema

    errors = list(_validator_with_defaults().iter_errors(config))
    if errors:
        exc = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ConfigError(f"config key {where}: {exc.message}")
    check_consistency(config)
    return config


def check_consistency(config: dict[str, Any]) -> None:
    """Rules across keys: ranges ordered, the simulated cache where the simulation writes it."""
    from neds.data.binning import n_bins_for

    b = config["binning"]
    try:
        n_bins_for(tuple(b["window_s"]), b["bin_size_s"])
    except ValueError as exc:
        raise ConfigError(f"binning: {exc}") from None
    if abs(sum(b["split_fractions"]) - 1.0) > 1e-6:
        raise ConfigError(f"binning.split_fractions {b['split_fractions']} must sum to 1")
    if config["data"]["source"] == "simulated":
        sim = config["simulation"]
        for key in ("n_units", "n_trials", "n_probes"):
            if sim[key][0] > sim[key][1]:
                raise ConfigError(f"simulation.{key} {sim[key]} must be [min, max] with min <= max")
        n = sim["n_pretrain_sessions"] + sim["n_heldout_sessions"]
        for entry in sim["missing_datasets"]:
            if entry["session"] >= n:
                raise ConfigError(
                    f"simulation.missing_datasets names session {entry['session']}, but only {n} are simulated"
                )
        expected = (Path(sim["output_dir"]) / "one_cache").as_posix()
        if config["data"]["one"]["mode"] != "local" or Path(config["data"]["one"]["cache_dir"]).as_posix() != expected:
            raise ConfigError(
                f"data.source simulated reads the simulated ONE cache: set data.one.mode: local and "
                f"data.one.cache_dir: {expected}"
            )


def one_settings(config: dict[str, Any]):
    """:class:`neds.io.ibl.OneSettings` from ``config['data']['one']``."""
    from neds.io.ibl import OneSettings

    return OneSettings(**config["data"]["one"])


def binning_params(config: dict[str, Any]):
    """:class:`neds.data.session.BinningParams` from ``config['binning']``."""
    from neds.data.session import BinningParams

    b = dict(config["binning"])
    b["window_s"] = tuple(b["window_s"])
    b["split_fractions"] = tuple(b["split_fractions"])
    return BinningParams(**b)


def simulation_config(config: dict[str, Any]):
    """:class:`neds.simulate.SimulationConfig` from ``config['simulation']`` and the binning window."""
    from neds.simulate import SimulationConfig

    sim = config["simulation"]
    return SimulationConfig(
        n_pretrain_sessions=sim["n_pretrain_sessions"],
        n_heldout_sessions=sim["n_heldout_sessions"],
        n_units=tuple(sim["n_units"]),
        n_trials=tuple(sim["n_trials"]),
        n_probes=tuple(sim["n_probes"]),
        seed=sim["seed"],
        missing_datasets={e["session"]: tuple(e["datasets"]) for e in sim["missing_datasets"]},
        bin_size_s=config["binning"]["bin_size_s"],
        window_s=tuple(config["binning"]["window_s"]),
    )


_EXECUTOR_KEYS = ("threads", "gpus", "pretrain_gpus")  # resources of the jobs, not TrainConfig fields


def train_settings(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """:class:`neds.train.TrainConfig` fields of one stage of a validated config:
    ``training.<stage>`` over the shared ``training`` keys (device, seed, val_every, ...)."""
    from neds.vocab import STAGES
    from neds.vocab import stage as check_stage

    check_stage(stage)
    training = config["training"]
    shared = {k: v for k, v in training.items() if k not in (*STAGES, *_EXECUTOR_KEYS)}
    return copy.deepcopy({**shared, **training[stage]})


def model_settings(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The model settings of one stage: its architecture's config section
    (:data:`neds.vocab.ARCHITECTURE_SECTIONS`: ``model`` for NEDS, ``ndt2``, ``poyo_plus``). For
    NEDS, ``n_layers`` is replaced by ``pretrain_n_layers`` (when set) for the pretrained model and
    the models fine-tuned from it."""
    from neds.vocab import ARCHITECTURE_SECTIONS, NEDS_ARCHITECTURE
    from neds.vocab import stage as check_stage

    kind = check_stage(stage)
    model = copy.deepcopy(dict(config[ARCHITECTURE_SECTIONS[kind.architecture]]))
    if kind.architecture == NEDS_ARCHITECTURE:
        deep = model.pop("pretrain_n_layers", None)
        if deep is not None and (not kind.per_session or kind.from_pretrained):
            model["n_layers"] = deep
    return model
