"""Export of NEDS predictions in the submission layout of IBL BrainWideBench (``ibl-bwb-eval``).

The benchmark scores ``.safetensors`` prediction files against ground-truth files of the same
layout with its own scorers (``python -m ibl_bwb_eval.scoring.ts1|ts2|ts3 --pred_dir --gt_dir``).
This module writes, for the tasks NEDS covers:

* ``ts1-choice``: ``predictions`` (N, 1, 2) logits, aligned by ``trial_id``; ground truth
  ``values`` (N, 1), the class (0 left, 1 right).
* ``ts1-wheel_speed``, ``ts1-whisker_motion_energy``: ``predictions`` (N, T, 1), aligned by
  ``trial_id``; ground truth ``values`` (N, T, 1).
* ``ts2-co_smoothing``: ``predictions`` (N, T, U) log-rates per bin, aligned by
  ``window_timestamps`` (each window's start, s); ground truth ``targets`` (N, T, U) spike counts.
* ``ts3-unit_cosmos``: ``pred_proba`` (U, 10) over :data:`COSMOS_LABELS`, aligned by
  ``entity_ids`` (unit uuids); ground truth ``targets`` (U,) class indices.

Prediction files go to ``<pred_dir>/<label>/<task>/<recording_id>/seed_<seed>.safetensors``
(TS3: no recording level), with the metadata the scorers read (``label``, ``task``, ``seed``,
``recording_id``; TS3 ``label_names``). Ground truth goes to
``<gt_dir>/<task>/<recording_id>/ground_truth.safetensors`` (TS3:
``<gt_dir>/<task>/ground_truth.safetensors``), where the scorers look for it.

What the export is and is not. The predictions are NEDS's, on NEDS's own trial windows (the
binning's ``window_s`` around ``align_event``, its test trials, its units), and the ground truth
written beside them is the same binned data, so the benchmark's scorers can be run on them and
their numbers checked against NEDS's own tables. The benchmark's official ground truth is built
by its own data pipeline (its TS1 behaviour targets are 1 s movement windows at 50 Hz; TS3 covers
every unit of every region); scoring against it needs NEDS binned on those windows, trials and
units. ``ts2-co_smoothing`` here holds NEDS's encoding predictions: the log-rate of every unit
from behaviour alone, with no spike of the trial seen, a conservative co-smoothing submission.
``ts3-unit_cosmos`` maps each unit's out-of-fold probed Beryl region (``neds.evaluate.probing``,
fine-tuned held-out models) to its Allen Cosmos parent as a one-hot probability row.

:func:`export_submission` writes a whole submission (every held-out session, the regions, and a
``manifest.json`` listing the files and any task left out).

Pure numpy and safetensors; ``ibl-bwb-eval`` itself is not imported (it pins its own torch and
numpy, so it runs in its own environment: ``workflow/envs/bwb.yaml``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from neds.io.files import atomic_write, write_json
from neds.io.store import as_str, open_binned, verify_store
from neds.vocab import REGIONS

__all__ = [
    "FORMAT_VERSION",
    "COSMOS_LABELS",
    "COSMOS_OF_BERYL",
    "TS1_DYNAMIC",
    "encode_ids",
    "decode_ids",
    "export_session",
    "export_regions",
    "export_submission",
]

_log = logging.getLogger(__name__)

FORMAT_VERSION = "0.1.0"
"""The ibl-bwb-eval release whose submission layout is written (stamped as ``ibl_bwb_eval_version``)."""

COSMOS_LABELS: tuple[str, ...] = ("CB", "CNU", "CTXsp", "HB", "HPF", "HY", "Isocortex", "MB", "OLF", "TH")
"""The benchmark's TS3 class order (Allen CCF Cosmos regions, alphabetical)."""

COSMOS_OF_BERYL = {name: region.cosmos for name, region in REGIONS.items()}
"""Cosmos parent of each repeated-site target (Beryl) region (:data:`neds.vocab.REGIONS`)."""

TS1_DYNAMIC: dict[str, tuple[str, str]] = {
    "wheel_speed": ("wheel", "wheel_speed"),
    "whisker_motion_energy": ("whisker", "whisker_motion_energy"),
}
"""TS1 per-timestep task -> (the NEDS prediction variable, the binned store's ground-truth variable).
The trial-level TS1 task ``choice`` is written from ``choice_prob``."""


def encode_ids(ids) -> np.ndarray:
    """ASCII ids as an (n, width) uint8 matrix, NUL-padded to the longest (the benchmark's entity ids)."""
    rows = [str(i).encode("ascii") for i in ids]
    if not rows or not all(rows):
        raise ValueError("entity ids must be a non-empty list of non-empty ASCII strings")
    out = np.zeros((len(rows), max(map(len, rows))), dtype=np.uint8)
    for i, row in enumerate(rows):
        out[i, : len(row)] = np.frombuffer(row, dtype=np.uint8)
    return out


def decode_ids(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_ids`."""
    return np.array([bytes(row).rstrip(b"\x00").decode("ascii") for row in np.asarray(matrix, dtype=np.uint8)])


def _write(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _meta(label: str, task: str, seed: int, **extra) -> dict[str, str]:
    from neds import __version__

    return {
        "label": label,
        "task": task,
        "seed": str(seed),
        "ibl_bwb_eval_version": FORMAT_VERSION,
        "writer": f"neds {__version__}",
        **{k: str(v) for k, v in extra.items()},
    }


def export_session(
    predictions: str | Path,
    store: str | Path,
    pred_dir: str | Path,
    gt_dir: str | Path,
    label: str,
    seed: int,
    rates: str | Path | None = None,
) -> list[Path]:
    """Write one held-out session's TS1 and TS2 files.

    Parameters
    ----------
    predictions : a method's prediction store written by the evaluation stage
        (``results/evaluation/<eid>/predictions/<method>.zarr``: choice_prob, wheel, whisker, rate)
    store : the session's binned store (ground truth, stimulus times, split)
    pred_dir, gt_dir : roots of the prediction and ground-truth trees
    label : the submission's model label; seed : its training seed
    rates : another method's prediction store to take the co-smoothing rates from (default: ``predictions``)

    Returns the written paths.
    """
    pred = verify_store(predictions)
    data = open_binned(store)
    eid = str(data.attrs["eid"])
    trials = np.asarray(pred["trial"].values, dtype=np.int64)
    missing = np.setdiff1d(trials, data["trial"].values)
    if missing.size:
        raise ValueError(
            f"{predictions} has trials {missing[:5].tolist()} that {store} does not; export matching files"
        )
    truth = data.sel(trial=trials)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    written = []

    def both(task: str, pred_tensors: dict, gt_tensors: dict, **extra) -> None:
        meta = _meta(label, task, seed, recording_id=eid, **extra)
        written.append(_write(pred_dir / label / task / eid / f"seed_{seed}.safetensors", pred_tensors, meta))
        gt_meta = {
            "task": task,
            "recording_id": eid,
            "ibl_bwb_eval_version": FORMAT_VERSION,
            **{k: str(v) for k, v in extra.items()},
        }
        written.append(_write(gt_dir / task / eid / "ground_truth.safetensors", gt_tensors, gt_meta))

    trial_id = trials.astype(np.int64)
    binning = data.attrs["binning"]
    window = binning["window_s"]
    prob = np.asarray(pred["choice_prob"].values, dtype=np.float64)
    logits = np.log(np.clip(prob, 1e-12, 1.0)).astype(np.float32)[:, None, :]  # (N, 1, 2)
    choice = truth["choice"].values.astype(np.int64)[:, None]  # (N, 1)
    both("ts1-choice", {"predictions": logits, "trial_id": trial_id}, {"values": choice, "trial_id": trial_id})
    for task, (key, source) in TS1_DYNAMIC.items():
        values = truth[source].values.astype(np.float32)[..., None]  # (N, T, 1)
        p = np.asarray(pred[key].values, dtype=np.float32)[..., None]
        both(
            f"ts1-{task}",
            {"predictions": p, "trial_id": trial_id},
            {"values": values, "trial_id": trial_id},
            window_s=window,
        )
    rate_source = verify_store(rates) if rates is not None else pred
    if not np.array_equal(rate_source["trial"].values, trials):
        raise ValueError(f"{rates} and {predictions} hold different trials; export one evaluation's stores")
    log_rate = np.log(np.clip(np.asarray(rate_source["rate"].values, dtype=np.float64), 1e-12, None)).astype(np.float32)
    counts = truth["spikes"].values.astype(np.float32)  # (N, T, U)
    start = (truth[f"trial_{binning['align_event']}"].values + window[0]).astype(np.float64)
    both(
        "ts2-co_smoothing",
        {"predictions": log_rate, "window_timestamps": start},
        {"targets": counts, "window_timestamps": start},
        units=",".join(as_str(data["unit_uuid"].values)),
    )
    return written


def export_regions(
    embeddings: str | Path, pred_dir: str | Path, gt_dir: str | Path, label: str, seed: int, features: str = "output"
) -> list[Path]:
    """Write the TS3 (``unit_cosmos``) files from a probing run's per-unit out-of-fold predictions.

    embeddings : ``results/probing/<target>/embeddings.zarr`` (coords region, unit_uuid; variable
        ``predicted_<features>``)
    """
    ds = verify_store(embeddings)
    key = f"predicted_{features}"
    if key not in ds:
        raise ValueError(
            f"{embeddings} has no {key} (probing was skipped or ran before per-unit predictions were stored); rerun probe_regions"
        )
    predicted, true = as_str(ds[key].values), as_str(ds["region"].values)
    unknown = sorted(set(predicted) - set(COSMOS_OF_BERYL)) + sorted(set(true) - set(COSMOS_OF_BERYL))
    if unknown:
        raise ValueError(f"regions {unknown} have no Cosmos parent; add them to neds.vocab.REGIONS")
    col = {name: i for i, name in enumerate(COSMOS_LABELS)}
    proba = np.zeros((len(predicted), len(COSMOS_LABELS)), dtype=np.float32)
    proba[np.arange(len(predicted)), [col[COSMOS_OF_BERYL[r]] for r in predicted]] = 1.0
    targets = np.array([col[COSMOS_OF_BERYL[r]] for r in true], dtype=np.int64)
    ids = encode_ids(as_str(ds["unit_uuid"].values))
    task, names = "ts3-unit_cosmos", ",".join(COSMOS_LABELS)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    return [
        _write(
            pred_dir / label / task / f"seed_{seed}.safetensors",
            {"pred_proba": proba, "entity_ids": ids},
            _meta(label, task, seed, label_names=names, features=features),
        ),
        _write(
            gt_dir / task / "ground_truth.safetensors",
            {"targets": targets, "entity_ids": ids},
            {"task": task, "label_names": names, "ibl_bwb_eval_version": FORMAT_VERSION},
        ),
    ]


def export_submission(
    stores: Mapping[str, str | Path],
    predictions: Mapping[str, str | Path],
    embeddings: str | Path | None,
    out_dir: str | Path,
    label: str,
    seed: int,
    method: str,
    rates_method: str,
    probe_features: str = "output",
) -> dict:
    """Predictions of one method in the submission layout, with ground truth and a manifest.

    Parameters
    ----------
    stores : eid -> the held-out session's binned store
    predictions : eid -> the session's predictions folder of the evaluation
        (``results/evaluation/<eid>/predictions``); the same eids as ``stores``
    embeddings : the held-out probing run's embeddings store (TS3), or None
    out_dir : where ``predictions/``, ``ground_truth/`` and ``manifest.json`` are written
    label, seed : the submission's model label and training seed
    method : whose predictions fill TS1 (``<method>.zarr`` of each predictions folder)
    rates_method : whose rates fill TS2 co-smoothing
    probe_features : which embedding's out-of-fold predicted regions fill TS3 (input, output, both)

    Returns
    -------
    dict
        The manifest: the files written and any task left out (``skipped``) with its reason.

    Raises
    ------
    ValueError
        If ``stores`` and ``predictions`` are of different sessions.
    """
    if set(stores) != set(predictions):
        raise ValueError(
            f"stores and predictions must be given for the same sessions; stores only: "
            f"{sorted(set(stores) - set(predictions))}, predictions only: {sorted(set(predictions) - set(stores))}"
        )
    out_dir = Path(out_dir)
    pred_dir, gt_dir = out_dir / "predictions", out_dir / "ground_truth"
    files, skipped = [], {}
    for eid, store in stores.items():
        folder = Path(predictions[eid])
        files += export_session(
            folder / f"{method}.zarr", store, pred_dir, gt_dir, label, seed, rates=folder / f"{rates_method}.zarr"
        )
    if embeddings is None:
        skipped["ts3-unit_cosmos"] = "no probing run given"
    else:
        try:
            files += export_regions(embeddings, pred_dir, gt_dir, label, seed, features=probe_features)
        except ValueError as exc:  # probing skipped (too few units per region): recorded, not fatal
            skipped["ts3-unit_cosmos"] = str(exc)
            _log.warning("BWB export: ts3-unit_cosmos left out: %s", exc)
    manifest = {
        "format": f"ibl-bwb-eval {FORMAT_VERSION} submission layout",
        "label": label,
        "seed": seed,
        "method": method,
        "co_smoothing_from": rates_method,
        "probe_features": probe_features,
        "sessions": sorted(stores),
        "files": sorted(str(Path(f).relative_to(out_dir)) for f in files),
        "skipped": skipped,
    }
    write_json(manifest, out_dir / "manifest.json")
    return manifest
