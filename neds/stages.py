"""One function per workflow rule: file paths and settings in, files out.

The Snakemake scripts in ``workflow/scripts`` and the command line (``python -m neds``) both call
these, so every step of the pipeline runs with or without Snakemake.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from neds.config import check_no_shared_subjects
from neds.data.session import BinningParams, bin_session
from neds.io.files import atomic_write, write_json
from neds.io.ibl import OneSettings, connect, download_session, load_session, one_line
from neds.io.store import SESSION_COLUMNS, write_table, write_unusable, write_zarr
from neds.logs import log_to_file
from neds.vocab import HELDOUT_ROLE, LINEAR, ORACLE, RRR

__all__ = [
    "run_bin_session",
    "run_download_session",
    "run_summarize_sessions",
    "usable_eids",
    "run_training",
    "launch_training",
    "run_evaluate_session",
    "run_summarize_evaluation",
    "run_probe",
    "run_fit_rrr",
    "run_score_models",
    "run_summarize_experiment",
    "run_table1",
    "log_to_file",
]

_log = logging.getLogger(__name__)


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

    An unusable session still writes all three outputs: an empty store whose attrs give the
    reason (``write_unusable``), the dropped table (a ``session`` row, and ``probe`` rows for the
    probes tried) and a status with ``usable: false`` and a one-line reason, so the workflow goes
    on and ``sessions.tsv`` always describes the current data.

    What is a problem of the session (recorded as unusable, no raise):
        - ``SessionNotFoundError``: the eid is not in the ONE cache (e.g. not released, or not
          downloaded);
        - ``DatasetError``: a required dataset is missing or unreadable: no usable probe (each
          probe's reason is in the dropped table), no trials object, or trials lacking a field;
        - what :func:`neds.data.session.bin_session` finds: missing or mostly NaN behaviour, too
          few trials or units.
    What is a problem of the configuration or the environment (raises, the job fails):
        - ``FileNotFoundError`` from :func:`neds.io.ibl.connect`: no ONE cache at
          ``data.one.cache_dir``;
        - network errors that outlast the retries (remote mode; Snakemake retries the job);
        - ``KeyError``: ``binning.align_event`` is not a trials column; ``ValueError`` for
          invalid binning settings;
        - any other exception, which is a bug rather than bad data.
    """
    from neds.data.session import unusable_session
    from neds.io.ibl import DatasetError, SessionNotFoundError, session_info

    source = source or f"ONE {settings.mode}: {settings.cache_dir}"
    one = connect(settings)
    info: dict = {}
    try:
        info = session_info(one, eid)
        raw = load_session(one, eid, settings, max_behaviour_gap_s=params.max_behaviour_gap_s)
    except (SessionNotFoundError, DatasetError) as exc:
        result = unusable_session(
            eid,
            str(exc),
            source=source,
            subject=info.get("subject", ""),
            lab=info.get("lab", ""),
            probes_dropped=getattr(exc, "probes_dropped", None),
        )
    else:
        result = bin_session(raw, params, source=source)
    if result.dataset is None:
        _log.warning("session %s is unusable: %s", eid, result.status["reason"])
        write_unusable(out_zarr, result.status)
    else:
        write_zarr(result.dataset, out_zarr)
        _log.info("session %s: %d trials x %d bins x %d units", eid, *result.dataset["spikes"].shape)
    write_table(result.dropped, out_dropped)
    write_json(result.status, out_status)
    return result.status


def run_download_session(eid: str, settings: OneSettings, out_json: str | Path) -> dict:
    """Download a session into the ONE cache (remote mode) and write a summary JSON.

    A session that cannot be used (``SessionNotFoundError``, ``DatasetError``: see
    :func:`run_bin_session`) writes a summary with ``usable: false`` and the one-line reason
    instead of failing the job; ``bin_session`` then records it as unusable. Network errors that
    outlast the retries and a missing cache folder still raise.
    """
    from neds.io.ibl import DatasetError, SessionNotFoundError, one_line

    one = connect(settings)
    try:
        summary = download_session(one, eid, settings)
    except (SessionNotFoundError, DatasetError) as exc:
        _log.warning("session %s cannot be used: %s", eid, one_line(exc))
        summary = {
            "eid": eid,
            "usable": False,
            "reason": one_line(exc),
            "revision": settings.revision,
            "probes_dropped": getattr(exc, "probes_dropped", {}),
        }
    write_json(summary, out_json)
    return summary


def run_summarize_sessions(
    status_files: list[str | Path], roles: dict[str, str], out_tsv: str | Path, require_all_usable: bool = False
) -> pd.DataFrame:
    """Collect the per-session status files into ``sessions.tsv`` (one row per session).

    roles : eid -> 'pretrain' | 'heldout'
    require_all_usable : raise (after writing the table) if any session is unusable; the
        workflow's static-DAG mode (``data.require_all_usable``) planned jobs for every session.
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
    check_no_shared_subjects(rows)
    table = table[list(SESSION_COLUMNS)]
    for col in table.select_dtypes(include=object).columns:  # one row per session, whatever a reason holds
        table[col] = table[col].map(lambda v: one_line(v) if isinstance(v, str) else v)
    write_table(table, out_tsv)
    bad = table.loc[~table["usable"].astype(bool)]
    if require_all_usable and len(bad):
        listed = "; ".join(f"{r.eid} ({r.role}): {r.reason}" for r in bad.itertuples())
        raise ValueError(
            f"data.require_all_usable is true but {len(bad)} session(s) are unusable: {listed}. "
            "Remove them from the session lists, or set data.require_all_usable: false to skip them"
        )
    return table


def usable_eids(sessions_tsv: str | Path, role: str) -> list[str]:
    """The usable sessions of a role ('pretrain' | 'heldout') in ``sessions.tsv``, in its order.

    Raises
    ------
    ValueError
        If none is usable, listing every session of the role with its reason: nothing downstream
        (pretraining, fine-tuning, evaluation) can run, so the run stops here, not later.
    """
    from neds import vocab

    if role not in vocab.ROLES:
        raise ValueError(f"unknown session role {role!r}; use one of {vocab.ROLES}")
    table = pd.read_csv(sessions_tsv, sep="\t", keep_default_na=False)
    mine = table.loc[table["role"] == role]
    usable = mine.loc[mine["usable"].astype(str).str.lower() == "true", "eid"].tolist()
    if not usable:
        listed = "; ".join(f"{r.eid}: {r.reason}" for r in mine.itertuples()) or "none listed"
        what = "held-out" if role == HELDOUT_ROLE else "pretraining"
        raise ValueError(
            f"no usable {what} session in {sessions_tsv} ({listed}); the run cannot continue: list "
            f"{what} sessions that have the required datasets (data.{role}_eids, or the simulation's "
            "missing_datasets), then rerun"
        )
    return usable


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

    stage : a stage of :data:`neds.vocab.STAGES`: its architecture and model mode are the ones
        trained, and a stage that starts from a pretrained model ('finetune', 'ndt2_finetune',
        'poyo_finetune': shared weights from ``pretrained``, new session-specific layers) needs
        ``pretrained``; the others start from random weights.
    stores : binned Zarr stores; their order is the model's session vocabulary

    The stores are verified as they are read (:func:`neds.io.store.open_binned`). The run is keyed
    to its inputs (:func:`neds.train.run_fingerprint`): the stores' content fingerprints (their
    data, splits and units) and binning settings in vocabulary order, the stage, the pretrained
    checkpoint's identity, and (added by :func:`neds.train.train`) the model and training settings
    and the code version. A checkpoint of other inputs is not resumed: training starts over.
    """
    import torch

    from neds import vocab
    from neds.data.dataset import load_sessions
    from neds.io.store import open_zarr, store_fingerprint
    from neds.train import TrainConfig, build_stage_model, checkpoint_identity, initialise, model_class, train

    kind = vocab.stage(stage)  # ValueError naming the stages for an unknown one
    if kind.from_pretrained != (pretrained is not None):
        starts = [s.name for s in vocab.STAGES.values() if s.from_pretrained]
        raise ValueError(
            f"{stage}: the stages that start from a pretrained model ({', '.join(starts)}) need its checkpoint, "
            "and only they take one"
        )
    if threads:
        torch.set_num_threads(threads)
    tcfg = TrainConfig.from_dict(train_config)
    data = load_sessions(stores, events=model_class(kind.architecture).reads_events)
    torch.manual_seed(tcfg.seed)  # the initial weights, like every later draw, come from training.seed
    model = build_stage_model(stage, model_config, data)
    extra = {"stage": stage, "stores": [str(s) for s in stores]}
    inputs = {
        "stores": [store_fingerprint(s) for s in stores],
        "binning": [open_zarr(s).attrs.get("binning") for s in stores],
        "stage": stage,
        "pretrained": checkpoint_identity(pretrained) if pretrained is not None else None,
    }
    extra.update(initialise(model, data, tcfg, pretrained))
    summary = train(model, data, tcfg, out_dir, extra=extra, inputs=inputs)
    _log.info("%s: best epoch %s, validation %s", stage, summary.get("best_epoch"), summary.get("best_val"))
    return summary


def launch_training(
    stage: str,
    stores: list[str | Path],
    out_dir: str | Path,
    model_config: dict,
    train_config: dict,
    pretrained: str | Path | None = None,
    threads: int | None = None,
    nproc: int = 1,
    log: str | Path | None = None,
) -> dict:
    """:func:`run_training` in this process (``nproc`` 1), or data-parallel in ``nproc``
    processes on this node started by ``torchrun`` (one per GPU; gloo on CPU).

    The processes read their arguments from ``<out_dir>/launch_spec.json``; their output is
    appended to ``log``. Returns the run's summary.
    """
    import subprocess

    from neds import vocab

    vocab.stage(stage)  # an unknown stage fails here, not in each of the nproc processes
    if nproc <= 1:
        return run_training(stage, stores, out_dir, model_config, train_config, pretrained, threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "stage": stage,
        "stores": [str(s) for s in stores],
        "out_dir": str(out_dir),
        "model_config": model_config,
        "train_config": train_config,
        "pretrained": str(pretrained) if pretrained else None,
        "threads": threads,
    }
    spec_path = out_dir / "launch_spec.json"
    write_json(spec, spec_path)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "neds",
        "train-spec",
        str(spec_path),
    ]
    _log.info("launching %s", " ".join(cmd))
    with open(log, "a") if log else open(os.devnull, "w") as sink:
        done = subprocess.run(cmd, stdout=sink if log else None, stderr=subprocess.STDOUT if log else None)
    if done.returncode != 0:
        where = f"; see {log}" if log else ""
        raise RuntimeError(
            f"distributed {stage} training ({nproc} processes) failed with exit code {done.returncode}{where}"
        )
    return json.loads((out_dir / "summary.json").read_text())


def _predict_checkpoint(
    path: str | Path, data, splits: str | Sequence[str], per_behaviour: bool = True
) -> tuple[dict[str, dict], int]:
    """Predictions of the checkpoint ``path`` (any architecture), loaded once, on the trials of
    each of ``splits`` (split -> predictions) of ``data`` (one session, the one it was trained on,
    else ValueError), and the epoch its weights are from. ``data`` must hold the spike events for
    a model that reads them (POYO+)."""
    from neds.evaluate.evaluation import predict_model
    from neds.train import load_model

    model, ckpt = load_model(path)
    if ckpt["vocab"]["eids"] != data.eids:
        raise ValueError(f"{path} was trained on {ckpt['vocab']['eids']}, not on {data.eids}")
    if model.reads_events and data.event_time is None:
        raise ValueError(f"{path} reads spike events; load the session with load_sessions(..., events=True)")
    splits = [splits] if isinstance(splits, str) else list(splits)
    preds = {one: predict_model(model, data, one, per_behaviour=per_behaviour) for one in splits}
    return preds, ckpt["state"]["epoch"]


def _reads_events(models: Mapping[str, str | Path]) -> bool:
    """Whether a model among ``models`` (method name -> checkpoint) reads spike events (POYO+)."""
    from neds import vocab
    from neds.train import model_class

    return any(model_class(vocab.stage(vocab.stage_of_method(m)).architecture).reads_events for m in models)


def run_evaluate_session(
    store: str | Path,
    models: dict[str, str | Path],
    out_metrics: str | Path,
    out_predictions: str | Path,
    truth: str | Path | None = None,
    split: str = "test",
    rrr: str | Path | None = None,
) -> list[dict]:
    """Score every method on one held-out session's ``split`` trials.

    models : method name -> NEDS checkpoint (the methods of the held-out stages of
        :data:`neds.vocab.STAGES`). The linear baselines are fitted here; ``rrr`` (the multi-session
        reduced-rank models fitted on the pretraining sessions) is adapted to this session here;
        ``truth`` (simulated data) adds the oracle. Writes one JSON list of rows (method, eid, metrics) and one Zarr store of
        predictions and per-unit metrics per method under ``out_predictions``.
    """
    from neds.data.dataset import load_sessions
    from neds.evaluate.baselines import linear_decoding, linear_encoding
    from neds.evaluate.evaluation import oracle_rates, predictions_dataset, score

    data = load_sessions([store], events=_reads_events(models))
    eid = data.eids[0]
    methods: dict[str, tuple[dict, dict]] = {}
    for name, path in models.items():
        preds, epoch = _predict_checkpoint(path, data, split)
        methods[name] = (preds[split], {"checkpoint": str(path), "epoch": epoch})
    enc, enc_info = linear_encoding(data, split)
    dec, dec_info = linear_decoding(data, split)
    methods[LINEAR] = ({**enc, **dec}, {**enc_info, **dec_info})
    if rrr is not None:
        from neds.evaluate.rrr import load_rrr

        rrr_enc, rrr_dec = load_rrr(rrr)
        methods[RRR] = (
            {**rrr_enc.predict_session(data, split), **rrr_dec.predict_session(data, split)},
            {"fit": str(rrr)},
        )
    if truth is not None:
        idx = data.indices(split)
        methods[ORACLE] = ({"rate": oracle_rates(truth, store, data.trial[idx].numpy())}, {"source": str(truth)})
    rows = []
    out_predictions = Path(out_predictions)
    for name, (pred, info) in methods.items():
        row, per_unit = score(pred, data, split)
        rows.append(
            {
                "method": name,
                "eid": eid,
                "split": split,
                "n_trials": int(len(data.indices(split))),
                "n_units": int(data.n_units[0]),
                **row,
                "info": info,
            }
        )
        ds = predictions_dataset(pred, per_unit, data, split, {"eid": eid, "method": name, "split": split})
        write_zarr(ds, out_predictions / f"{name}.zarr")
    write_json({"rows": rows}, out_metrics)
    return rows


def run_summarize_evaluation(
    metric_files: list[str | Path],
    out_table: str | Path,
    out_summary: str | Path,
    out_gain: str | Path,
    out_markdown: str | Path,
) -> pd.DataFrame:
    """Per-session metrics files -> results/tables (per session, summary, pretraining gain) and summary.md."""
    from neds.evaluate.tables import collect_rows, pretraining_gain, summarize, summary_markdown

    df = collect_rows(metric_files)
    summary = summarize(df)
    gain = pretraining_gain(df)
    write_table(df, out_table)
    write_table(summary, out_summary)
    write_table(gain, out_gain)
    atomic_write(out_markdown, summary_markdown(summary, gain))
    return summary


def run_probe(
    target: str,
    models: Mapping[str, str | Path],
    stores: Mapping[str, str | Path],
    out_json: str | Path,
    out_embeddings: str | Path,
    seed: int = 0,
) -> dict:
    """Brain-region probing of the unit embeddings of trained models
    (:func:`neds.evaluate.probing.probe_regions`).

    models : eid -> checkpoint: the pretrained model for each of its sessions, or each held-out
        session's fine-tuned model
    stores : eid -> binned store, the same eids
    Writes the probe's summary to ``out_json`` and the probed units' embeddings and out-of-fold
    predicted regions to the Zarr store ``out_embeddings``.
    """
    from neds.evaluate.probing import probe_regions

    out, embeddings = probe_regions(target, models, stores, seed=seed)
    write_json(out, out_json)
    write_zarr(embeddings, out_embeddings)
    _log.info("probing %s: %s", target, {k: round(v["accuracy"], 3) for k, v in out["results"].items()})
    return out


def run_fit_rrr(stores: list[str | Path], out: str | Path, rank: int = 4, epochs: int = 300, seed: int = 0) -> None:
    """Fit the multi-session reduced-rank encoding and decoding baselines on the pretraining sessions."""
    from neds.data.dataset import load_sessions
    from neds.evaluate.rrr import RRRConfig, fit_rrr_decoder, fit_rrr_encoder, save_rrr

    sessions = [load_sessions([s]) for s in stores]
    cfg = RRRConfig(rank=rank, epochs=epochs, seed=seed)
    save_rrr(fit_rrr_encoder(sessions, cfg), fit_rrr_decoder(sessions, cfg), out)


# ---------------------------------------------------------------------------------------- experiments
def run_score_models(
    store: str | Path,
    models: dict[str, str | Path],
    split: str | list[str],
    out_json: str | Path,
    attrs: dict | None = None,
) -> list[dict]:
    """Score checkpoints (method name -> path) on one session's ``split`` trials (an experiment
    variant's models; a list of splits: a row per split); writes {'rows': [...]} like
    run_evaluate_session, plus ``attrs``."""
    from neds.data.dataset import load_sessions
    from neds.evaluate.evaluation import score

    data = load_sessions([store], events=_reads_events(models))
    rows = []
    for name, path in models.items():
        preds, epoch = _predict_checkpoint(path, data, split, per_behaviour=False)
        for one, pred in preds.items():
            row, _ = score(pred, data, one)
            rows.append({"method": name, "eid": data.eids[0], "split": one, **row, "epoch": epoch, **(attrs or {})})
    write_json({"rows": rows}, out_json)
    return rows


def run_summarize_experiment(
    files: dict[str, list[str | Path]], out_metrics: str | Path, out_summary: str | Path
) -> pd.DataFrame:
    """An experiment's per-session rows (variant -> evaluation files) -> metrics.tsv (one row per
    variant, method, split and session) and summary.tsv (mean, s.e.m. and sessions per variant,
    method and split)."""
    from neds.evaluate.tables import collect_rows, summarize

    parts = [collect_rows(paths).assign(variant=variant) for variant, paths in files.items() if paths]
    if not parts:
        raise ValueError("the experiment has no evaluated sessions; check results/binned/sessions.tsv")
    df = pd.concat(parts, ignore_index=True)
    df = df[["variant", *(c for c in df.columns if c != "variant")]]
    summary = summarize(df.drop(columns=["experiment", "epoch"], errors="ignore"), by=("variant", "method", "split"))
    write_table(df, out_metrics)
    write_table(summary, out_summary)
    return summary


def run_table1(metrics_tsv: str | Path, out_tsv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """The paper's Table 1 (:func:`neds.evaluate.tables.table1`) from the main evaluation's
    metrics.tsv, as a table and as Markdown."""
    from neds.evaluate.tables import table1, table1_markdown

    table = table1(pd.read_csv(metrics_tsv, sep="\t"))
    if table.empty:
        raise ValueError(f"{metrics_tsv} has no NEDS rows; run the main evaluation first")
    write_table(table, out_tsv)
    atomic_write(out_md, table1_markdown(table))
    return table
