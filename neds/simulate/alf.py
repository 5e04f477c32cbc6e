"""Write simulated sessions as IBL ALF data, a ONE cache over them, and their ground truth.

Layout (read back unchanged by ``one.api.One(cache_dir=..., mode='local')`` and the brainbox
``SessionLoader`` / ``SpikeSortingLoader``)::

    cache_dir/sessions.pqt, cache_dir/datasets.pqt         ONE cache tables
    cache_dir/<lab>/Subjects/<subject>/<date>/001/alf/...  ALF datasets
    ground_truth_dir/<eid>.zarr                            expected counts and unit truth
    ground_truth_dir/manifest.tsv                          one row per session

The ONE tables are built here rather than with ``one.alf.cache.make_parquet_db``, which draws
random (uuid1-based) ids on every call, stores empty hashes and no ``default_revision`` column:
loading through the brainbox loaders then logs, for every dataset, "local md5 mismatch" (ONE
compares the empty hash with the file's md5) and an ALFWarning "No default revision for
dataset ...; using most recent". Here ids are name-based uuid3 (the eids of
:func:`session_eids`; ONE accepts only UUID versions 3 and 4 as ids), file sizes and md5 sums
are real and ``default_revision`` is True, as in the tables the IBL database serves; the same
loads log no warning.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from neds.simulate.generative import (
    SimulatedSession,
    SimulationConfig,
    session_eids,
    simulate_session,
)

__all__ = ["write_session", "ground_truth_dataset", "write_ground_truth", "build_one_cache", "simulate_sessions"]

TASK_PROTOCOL = "_iblrig_tasks_ephysChoiceWorld"
PROJECT = "neds_simulation"
CACHE_ORIGIN = "neds.simulate"
MANIFEST_COLUMNS = (
    "eid",
    "role",
    "index",
    "lab",
    "subject",
    "date",
    "number",
    "session_path",
    "n_units",
    "n_trials",
    "n_probes",
    "missing_datasets",
)
_TRIAL_ATTRIBUTES = (
    "intervals",
    "stimOn_times",
    "goCue_times",
    "firstMovement_times",
    "response_times",
    "feedback_times",
    "choice",
    "feedbackType",
    "probabilityLeft",
    "contrastLeft",
    "contrastRight",
)


def _text(values) -> np.ndarray:
    """Object array of str: stored as variable-length strings in Zarr v3 (read back as numpy StringDType)."""
    return np.asarray(values, dtype=object)


def write_session(session: SimulatedSession, cache_dir: Path) -> Path:
    """Write one session's ALF datasets under ``cache_dir`` (replacing the session folder).

    Returns
    -------
    The session path ``cache_dir/<lab>/Subjects/<subject>/<date>/<NNN>``.
    """
    session_path = Path(cache_dir) / session.rel_session_path
    if session_path.exists():
        shutil.rmtree(session_path)  # no stale datasets from an earlier simulation
    alf = session_path / "alf"
    for probe in session.probes:
        folder = alf / probe.name / "pykilosort"
        folder.mkdir(parents=True)
        for attr, values in probe.spikes.items():
            np.save(folder / f"spikes.{attr}.npy", values)
        np.save(folder / "clusters.channels.npy", probe.clusters["channels"])
        np.save(folder / "clusters.depths.npy", probe.clusters["depths"])
        pd.DataFrame({"uuids": probe.clusters["uuids"]}).to_csv(folder / "clusters.uuids.csv", index=False)
        for attr, values in probe.channels.items():
            np.save(folder / f"channels.{attr}.npy", values)
    for attr in _TRIAL_ATTRIBUTES:
        np.save(alf / f"_ibl_trials.{attr}.npy", session.trials[attr])
    if "wheel" not in session.missing_datasets:
        np.save(alf / "_ibl_wheel.position.npy", session.wheel["position"])
        np.save(alf / "_ibl_wheel.timestamps.npy", session.wheel["timestamps"])
    if "motion_energy" not in session.missing_datasets:
        np.save(alf / "leftCamera.ROIMotionEnergy.npy", session.camera["ROIMotionEnergy"])
        np.save(alf / "_ibl_leftCamera.times.npy", session.camera["times"])
    return session_path


def ground_truth_dataset(session: SimulatedSession, config: SimulationConfig) -> xr.Dataset:
    """The session's ground truth as an xarray Dataset.

    ``expected_counts`` (trial, time, unit) float32 is the exact expected spike count of every
    unit in every bin of every trial window (windows around the recorded ``stimOn_times``; NaN
    for trials whose stimOn_times is NaN). ``unit`` runs over probe00 clusters then probe01
    clusters, in cluster order; per-unit coords give probe, cluster_id, region (Beryl),
    allen_acronym, allen_id, channel, depth_um, unit_uuid; the other data variables on ``unit``
    are the parameters drawn from the region template (base_rate_hz, stim_latency_s, w_stim, ...,
    see :class:`neds.simulate.generative.RegionTemplate`). ``stimOn_times`` on ``trial`` is the
    recorded onset the windows are aligned to.
    """
    from neds import __version__

    u = session.units
    n_trials, n_bins, n_units = session.expected_counts.shape
    params = {
        k: ("unit", np.asarray(v, dtype=np.float64))
        for k, v in u.items()
        if k not in ("probe", "cluster_id", "region", "allen_id", "allen_acronym", "channel", "depth_um", "uuid")
    }
    ds = xr.Dataset(
        {"expected_counts": (("trial", "time", "unit"), session.expected_counts), **params},
        coords={
            "trial": np.arange(n_trials),
            "time": session.bin_centres_s,
            "unit": np.arange(n_units),
            "probe": ("unit", _text(u["probe"])),
            "cluster_id": ("unit", np.asarray(u["cluster_id"], dtype=np.int64)),
            "region": ("unit", _text(u["region"])),
            "allen_id": ("unit", np.asarray(u["allen_id"], dtype=np.int64)),
            "allen_acronym": ("unit", _text(u["allen_acronym"])),
            "channel": ("unit", np.asarray(u["channel"], dtype=np.int64)),
            "depth_um": ("unit", np.asarray(u["depth_um"], dtype=np.float64)),
            "unit_uuid": ("unit", _text(u["uuid"])),
            "stimOn_times": ("trial", session.trials["stimOn_times"]),
        },
        attrs={
            "eid": session.eid,
            "role": session.role,
            "session_path": session.rel_session_path,
            "bin_size_s": float(config.bin_size_s),
            "window_s": [float(w) for w in config.window_s],
            "seed": int(config.seed),
            "index": int(session.index),
            "source": "neds.simulate",
            "neds_version": __version__,
            "description": "expected_counts: exact integral of the simulated rate over each bin "
            "(spikes are Poisson with this mean); time: bin centres relative to stimOn_times (s)",
        },
    )
    ds["expected_counts"].attrs["units"] = "spikes per bin"
    ds["time"].attrs["units"] = "s"
    return ds


def write_ground_truth(session: SimulatedSession, config: SimulationConfig, ground_truth_dir: Path) -> Path:
    """Write :func:`ground_truth_dataset` to ``ground_truth_dir/<eid>.zarr`` (Zarr v3, with the
    content fingerprint its readers verify: :func:`neds.io.store.write_zarr`); return the path."""
    from neds.io.store import write_zarr

    path = Path(ground_truth_dir) / f"{session.eid}.zarr"
    write_zarr(ground_truth_dataset(session, config), path)
    return path


def _md5(path: Path) -> str:
    """md5 hex digest of a file (as ``iblutil.io.hashfile.md5``, without its 256 MB buffer per call)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _dataset_records(cache_dir: Path, eid: str, rel_session_path: str, hash_files: bool) -> list[dict]:
    """One datasets-table record per ALF dataset in a session folder."""
    from one.alf.path import ALFPath

    session_path = ALFPath(cache_dir / rel_session_path)
    records = []
    for file in session_path.iter_datasets(recursive=True):
        rel_path = file.relative_to_session().as_posix()
        records.append(
            {
                "eid": eid,
                "id": str(uuid.uuid3(uuid.UUID(eid), rel_path)),
                "rel_path": rel_path,
                "file_size": file.stat().st_size,
                "hash": _md5(file) if hash_files else None,
                "exists": True,
                "qc": "NOT_SET",
                "default_revision": True,
            }
        )
    return records


def build_one_cache(
    cache_dir: Path, sessions: dict[str, str], hash_files: bool = True, date_created: str | None = None
) -> tuple[Path, Path]:
    """Write ``sessions.pqt`` and ``datasets.pqt`` into ``cache_dir`` for the given sessions.

    Parameters
    ----------
    cache_dir : ONE cache root
    sessions : eid -> session path relative to ``cache_dir`` ('<lab>/Subjects/<subject>/<date>/<NNN>')
    hash_files : store md5 sums (ONE then verifies every file it loads against them); False stores
        None, which ONE skips
    date_created : 'YYYY-MM-DD HH:MM' stored in the table metadata (ONE requires the key); defaults
        to the latest session date so that the same sessions give byte-identical tables.

    Returns
    -------
    Paths of the sessions and datasets tables.
    """
    from iblutil.io import parquet
    from one.alf.cache import DATASETS_COLUMNS, QC_TYPE, SESSIONS_COLUMNS
    from one.alf.path import session_path_parts

    cache_dir = Path(cache_dir)
    ses_rows, dset_rows = [], []
    for eid, rel in sorted(sessions.items()):
        if not (cache_dir / rel).is_dir():
            raise FileNotFoundError(
                f"session folder {cache_dir / rel} of {eid} does not exist; write the session first"
            )
        lab, subject, date, number = session_path_parts(rel, as_dict=False, assert_valid=True)
        ses_rows.append(
            {
                "id": eid,
                "lab": lab,
                "subject": subject,
                "date": pd.Timestamp(date).date(),
                "number": int(number),
                "task_protocol": TASK_PROTOCOL,
                "projects": PROJECT,
            }
        )
        dset_rows += _dataset_records(cache_dir, eid, rel, hash_files)
    df_ses = (
        pd.DataFrame(ses_rows, columns=list(SESSIONS_COLUMNS)).astype(SESSIONS_COLUMNS).set_index("id").sort_index()
    )
    dtypes = {**DATASETS_COLUMNS, "qc": QC_TYPE, "default_revision": bool}
    df_dsets = (
        pd.DataFrame(dset_rows, columns=[*DATASETS_COLUMNS, "default_revision"])
        .astype(dtypes)
        .set_index(["eid", "id"])
        .sort_index()
    )
    if date_created is None:
        date_created = f"{max(r['date'] for r in ses_rows).isoformat()} 00:00" if ses_rows else "1970-01-01 00:00"
    metadata = {"date_created": date_created, "origin": CACHE_ORIGIN}
    fn_ses, fn_dsets = cache_dir / "sessions.pqt", cache_dir / "datasets.pqt"
    parquet.save(fn_ses, df_ses, metadata)
    parquet.save(fn_dsets, df_dsets, metadata)
    return fn_ses, fn_dsets


def simulate_sessions(
    cache_dir: Path, ground_truth_dir: Path, config: SimulationConfig, *, hash_files: bool = True
) -> pd.DataFrame:
    """Simulate every session of ``config``, write ALF data, ONE cache tables and ground truth.

    Parameters
    ----------
    cache_dir : ONE cache root; ``sessions.pqt``/``datasets.pqt`` list exactly these sessions
    ground_truth_dir : receives ``<eid>.zarr`` per session and ``manifest.tsv``
    config : what to simulate
    hash_files : store md5 sums in the datasets table, as the IBL database does. ONE then
        re-hashes every file it loads (about 0.15 s per file with ONE-api 3.6, whatever its
        size); False stores no hash and ONE skips the check.

    Returns
    -------
    The manifest, one row per session: eid, role ('pretrain'|'heldout'), index, lab, subject,
    date, number, session_path (relative to cache_dir), n_units, n_trials, n_probes,
    missing_datasets (comma-separated, '' if none); also written to ground_truth_dir/manifest.tsv.
    """
    cache_dir, ground_truth_dir = Path(cache_dir), Path(ground_truth_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ground_truth_dir.mkdir(parents=True, exist_ok=True)
    eids = session_eids(config.seed, config.n_sessions)
    rows = []
    for index, eid in enumerate(eids):
        session = simulate_session(config, index, eid=eid)
        write_session(session, cache_dir)
        write_ground_truth(session, config, ground_truth_dir)
        rows.append(
            {
                "eid": eid,
                "role": session.role,
                "index": index,
                "lab": session.lab,
                "subject": session.subject,
                "date": session.date.isoformat(),
                "number": session.number,
                "session_path": session.rel_session_path,
                "n_units": session.expected_counts.shape[2],
                "n_trials": session.expected_counts.shape[0],
                "n_probes": len(session.probes),
                "missing_datasets": ",".join(session.missing_datasets),
            }
        )
        del session
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    build_one_cache(cache_dir, dict(zip(manifest["eid"], manifest["session_path"])), hash_files=hash_files)
    manifest.to_csv(ground_truth_dir / "manifest.tsv", sep="\t", index=False)
    return manifest
