"""Command line: every workflow step without Snakemake.

    python -m neds simulate  [--config config/config.yaml]
    python -m neds bin       --eid EID [--config ...] [--out results/binned]
    python -m neds sessions  [--config ...]            # list the configured sessions and roles
    python -m neds train     --stage pretrain|finetune|scratch|encoding|decoding [--eid EID]
    torchrun --nproc_per_node 4 -m neds train --stage pretrain   # data-parallel pretraining
    python -m neds train-spec SPEC.json   # what the workflow's torchrun processes run (neds.stages.launch_training)

The config is validated by the same function (and schema) as in the workflow (neds.config.validate_config).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from neds import vocab


def _load_config(path: str) -> dict:
    """The validated config of a YAML file; an empty or non-mapping file is refused rather than
    silently replaced by the schema's defaults."""
    from neds.config import ConfigError, validate_config

    if not Path(path).is_file():
        raise ConfigError(
            f"config file {path} does not exist; pass --config with a workflow config such as config/config.yaml"
        )
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict) or not config:
        raise ConfigError(
            f"config file {path} is empty or not a YAML mapping (it holds {type(config).__name__}); "
            "give the sections to run, e.g. copy config/config.yaml and edit it"
        )
    return validate_config(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neds", description="NEDS workflow steps")
    parser.add_argument("--config", default="config/config.yaml", help="workflow config (YAML)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("simulate", help="write the simulated IBL sessions and their ground truth")
    p_bin = sub.add_parser("bin", help="bin one session into <out>/<eid>.zarr")
    p_bin.add_argument("--eid", required=True)
    p_bin.add_argument("--out", default="results/binned")
    sub.add_parser("sessions", help="print the configured sessions with their roles")
    p_train = sub.add_parser("train", help="train one model on binned sessions (after `bin`)")
    p_train.add_argument("--stage", required=True, choices=list(vocab.STAGES))
    p_train.add_argument("--eid", help=f"held-out session (stages {', '.join(vocab.PER_SESSION_STAGES)})")
    p_train.add_argument("--binned", default="results/binned", help="folder of the binned stores and sessions.tsv")
    p_train.add_argument("--models", default="results/models", help="output folder of the models")
    p_spec = sub.add_parser("train-spec", help="train from a launch spec written by neds.stages.launch_training")
    p_spec.add_argument("spec", help="launch_spec.json")
    args = parser.parse_args(argv)
    if args.command == "train-spec":
        import json

        from neds.stages import log_to_file, run_training

        log_to_file(None)
        spec = json.loads(Path(args.spec).read_text())
        run_training(**spec)
        return 0

    from neds.config import binning_params, one_settings, session_lists, simulation_config
    from neds.stages import log_to_file

    log_to_file(None)
    config = _load_config(args.config)
    if args.command == "simulate":
        from neds.simulate import simulate_sessions

        out = Path(config["simulation"]["output_dir"])
        manifest = simulate_sessions(
            out / "one_cache",
            out / "ground_truth",
            simulation_config(config),
            hash_files=config["simulation"]["hash_files"],
        )
        print(manifest.to_string(index=False))
    elif args.command == "bin":
        from neds.stages import run_bin_session

        out = Path(args.out)
        status = run_bin_session(
            args.eid,
            one_settings(config),
            binning_params(config),
            out_zarr=out / f"{args.eid}.zarr",
            out_dropped=out / "dropped" / f"{args.eid}.tsv",
            out_status=out / "status" / f"{args.eid}.json",
            source=config["data"]["source"],
        )
        print(status)
    elif args.command == "train":
        _train(args, config)
    elif args.command == "sessions":
        pretrain, heldout = session_lists(config)
        for eid in pretrain:
            print(f"{eid}\tpretrain")
        for eid in heldout:
            print(f"{eid}\theldout")
    return 0


def _train(args, config: dict) -> None:
    import pandas as pd

    from neds.config import model_settings, train_settings
    from neds.stages import run_training

    binned, models = Path(args.binned), Path(args.models)
    table = pd.read_csv(binned / "sessions.tsv", sep="\t")
    usable = table.loc[table["usable"].astype(bool)]
    stage = vocab.stage(args.stage)
    settings = train_settings(config, stage.name)
    if not stage.per_session:
        eids = usable.loc[usable["role"] == vocab.PRETRAIN_ROLE, "eid"].tolist()
        out, pretrained = models / stage.name, None
    else:
        if args.eid is None or args.eid not in set(usable["eid"]):
            raise SystemExit(f"--eid must name a usable session of {binned / 'sessions.tsv'}")
        eids, out = [args.eid], models / stage.name / args.eid
        pretrained = models / stage.pretrained / "model.pt" if stage.from_pretrained else None
    run_training(
        stage.name,
        [binned / f"{e}.zarr" for e in eids],
        out,
        model_settings(config, stage.name),
        settings,
        pretrained=pretrained,
        threads=config["training"]["threads"],
    )


if __name__ == "__main__":
    sys.exit(main())
