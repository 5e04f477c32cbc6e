"""One function per workflow rule: file paths and settings in, files out.

The Snakemake scripts in ``workflow/scripts`` and the command line (``python -m neds``) both call
these, so every step of the pipeline runs with or without Snakemake.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd

from neds.data.session import BinningParams, bin_session
from neds.io.ibl import OneSettings, connect, download_session, load_session
from neds.io.store import SESSION_COLUMNS, write_table, write_unusable, write_zarr

__all__ = ["run_bin_session", "run_download_session", "run_summarize_sessions", "run_training", "log_to_file"]

_log = logging.getLogger(__name__)


def log_to_file(path: str | Path | None, level: int = logging.INFO) -> None:
    """Send this process's log records (neds, ONE, ibllib) and its standard error (warnings,
    progress bars) to ``path``, a rule's log file; None logs to the terminal."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 (lives as long as the job)
        handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)


def _write_json(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def run_bin_session(
    eid: str,
    settings: OneSettings,
    params: BinningParams,
    out_zarr: str | Path,
    out_dropped: str | Path,
    out_status: str | Path,
    source: str = "",
) -> dict:
    """Load one session through ONE and write its binned Zarr store, dropped table and status.

    An unusable session (e.g. no whisker motion energy, too few trials) still writes all three
    outputs: an empty store whose attrs give the reason, and a status with ``usable: false``.
    Bad input (unknown eid, missing or corrupt required dataset) raises.
    """
    one = connect(settings)
    raw = load_session(one, eid, settings)
    result = bin_session(raw, params, source=source or f"ONE {settings.mode}: {settings.cache_dir}")
    if result.dataset is None:
        _log.warning("session %s is unusable: %s", eid, result.status["reason"])
        write_unusable(out_zarr, result.status)
    else:
        write_zarr(result.dataset, out_zarr)
        _log.info(
            "session %s: %d trials x %d bins x %d units", eid, *result.dataset["spikes"].shape
        )
    write_table(result.dropped, out_dropped)
    _write_json(result.status, out_status)
    return result.status


def run_download_session(eid: str, settings: OneSettings, out_json: str | Path) -> dict:
    """Download a session into the ONE cache (remote mode) and write a summary JSON."""
    one = connect(settings)
    summary = download_session(one, eid, settings)
    _write_json(summary, out_json)
    return summary


def run_summarize_sessions(
    status_files: list[str | Path], roles: dict[str, str], out_tsv: str | Path
) -> pd.DataFrame:
    """Collect the per-session status files into ``sessions.tsv`` (one row per session).

    roles : eid -> 'pretrain' | 'heldout'
    """
    rows = []
    for path in status_files:
        status = json.loads(Path(path).read_text())
        status["role"] = roles.get(status["eid"], "")
        rows.append(status)
    table = pd.DataFrame(rows)
    for col in SESSION_COLUMNS:
        if col not in table:
            table[col] = ""
    table = table[list(SESSION_COLUMNS)]
    write_table(table, out_tsv)
    return table


def run_training(
    stage: str,
    stores: list[str | Path],
    out_dir: str | Path,
    model_config: dict,
    train_config: dict,
    pretrained: str | Path | None = None,
    threads: int | None = None,
) -> dict:
    """Train one model on binned sessions (one rule of the training stage).

    stage : 'pretrain' (multimodal, all given sessions), 'finetune' (multimodal, shared weights
        from ``pretrained``, new session-specific layers), 'scratch' (multimodal, random init),
        'encoding' or 'decoding' (the unimodal models, random init).
    stores : binned Zarr stores; their order is the model's session vocabulary
    """
    import torch

    from neds.data.dataset import load_sessions
    from neds.train import TrainConfig, build_model, init_shared_from, train

    modes = {"pretrain": "multimodal", "finetune": "multimodal", "scratch": "multimodal", "encoding": "encoding", "decoding": "decoding"}
    if stage not in modes:
        raise ValueError(f"unknown training stage {stage!r}; use one of {sorted(modes)}")
    if (stage == "finetune") != (pretrained is not None):
        raise ValueError("fine-tuning needs the pretrained checkpoint, and only fine-tuning takes one")
    if threads:
        torch.set_num_threads(threads)
    data = load_sessions(stores)
    model = build_model(model_config, data.n_units, modes[stage])
    extra = {"stage": stage, "stores": [str(s) for s in stores]}
    if pretrained is not None:
        init_shared_from(model, pretrained)
        extra["pretrained"] = str(pretrained)
    summary = train(model, data, TrainConfig.from_dict(train_config), out_dir, extra=extra)
    _log.info("%s: best epoch %s, validation %s", stage, summary.get("best_epoch"), summary.get("best_val"))
    return summary
