"""Loading IBL sessions through ONE-api and the ibllib (brainbox) loaders.

This is the only module that talks to ONE. The same code path serves the public IBL server
(``mode: remote``), a user's downloaded cache and the simulated default (``mode: local``).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import pandas as pd

__all__ = [
    "OneSettings",
    "RawSession",
    "SessionNotFoundError",
    "DatasetError",
    "connect",
    "regions_only_atlas",
    "load_session",
    "download_session",
    "with_retries",
    "to_beryl",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

IBL_PUBLIC_URL = "https://openalyx.internationalbrainlab.org"
# trials attributes the binning stage reads
TRIAL_FIELDS = (
    "stimOn_times",
    "goCue_times",
    "firstMovement_times",
    "feedback_times",
    "choice",
    "feedbackType",
    "probabilityLeft",
)


class SessionNotFoundError(LookupError):
    """The session id is not in the ONE cache."""


class DatasetError(RuntimeError):
    """A dataset of a session is missing or cannot be read."""


@dataclass(frozen=True)
class OneSettings:
    """How to reach ONE.

    mode : 'local' reads a cache folder only (the simulated default, or a downloaded cache);
        'remote' queries the IBL server and downloads into ``cache_dir``.
    revision : dataset revision to pin (e.g. '2024-05-06'), or None for the default revision.
    """

    mode: str = "local"
    cache_dir: str = "resources/simulated/one_cache"
    base_url: str = IBL_PUBLIC_URL
    username: str = "intbrainlab"
    password: str = "international"
    revision: str | None = None
    spike_sorter: str = "pykilosort"
    max_retries: int = 5
    retry_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in ("local", "remote"):
            raise ValueError(f"ONE mode {self.mode!r} is not 'local' or 'remote'; fix data.one.mode")


@dataclass
class RawSession:
    """Everything the binning stage needs from one session, as loaded.

    spike_times : (S,) float64, s, sorted over all probes
    spike_units : (S,) int64, row of ``units`` each spike belongs to
    units : DataFrame, U rows: probe, cluster_id, uuid, channel, depth_um, allen_id,
        allen_acronym, region (Beryl acronym)
    trials : DataFrame, K rows, the IBL trials table
    wheel : DataFrame with ``times`` (s) and ``velocity`` (rad/s), or None if unavailable
    whisker : DataFrame with ``times`` (s) and ``motion_energy``, or None if unavailable
    missing : dataset name -> reason, for optional datasets that could not be loaded
    """

    eid: str
    session_path: str
    spike_times: np.ndarray
    spike_units: np.ndarray
    units: pd.DataFrame
    trials: pd.DataFrame
    wheel: pd.DataFrame | None
    whisker: pd.DataFrame | None
    whisker_source: str = ""
    missing: dict[str, str] = field(default_factory=dict)


def with_retries(
    fn: Callable[[], T],
    retries: int,
    backoff_s: float,
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError),
    what: str = "request",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` and retry on transient errors with exponential backoff and jitter.

    Waits ``backoff_s * 2**attempt * U(0.5, 1.5)`` between attempts; re-raises the last error
    after ``retries`` retries. Errors not in ``retry_on`` propagate at once.
    """
    for attempt in range(retries + 1):
        try:
            return fn()
        except retry_on as exc:
            if attempt == retries:
                raise
            wait = backoff_s * (2**attempt) * random.uniform(0.5, 1.5)
            _log.warning("%s failed (%s); retry %d/%d in %.1f s", what, exc, attempt + 1, retries, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def connect(settings: OneSettings):
    """Open ONE in local or remote mode on ``settings.cache_dir``.

    Raises
    ------
    FileNotFoundError
        In local mode, if the cache folder or its tables do not exist.
    """
    cache_dir = Path(settings.cache_dir)
    if settings.mode == "local":
        from one.api import One

        if not (cache_dir / "sessions.pqt").exists():
            raise FileNotFoundError(
                f"no ONE cache at {cache_dir} (sessions.pqt missing): point data.one.cache_dir at a "
                "ONE cache folder, run the simulate_sessions rule, or use data.one.mode: remote"
            )
        return One(cache_dir=str(cache_dir), mode="local")
    from one.api import ONE

    cache_dir.mkdir(parents=True, exist_ok=True)
    return with_retries(
        lambda: ONE(
            base_url=settings.base_url,
            username=settings.username,
            password=settings.password,
            cache_dir=str(cache_dir),
            silent=True,
        ),
        settings.max_retries,
        settings.retry_backoff_s,
        what=f"connecting to {settings.base_url}",
    )


def regions_only_atlas():
    """A BrainAtlas that carries the Allen/Beryl region tables and no volume.

    ``SpikeSortingLoader`` only uses ``atlas.regions`` when the channels carry
    ``brainLocationIds_ccf_2017``; passing this avoids the download of the Allen volume.
    """
    from iblatlas.atlas import BrainAtlas
    from iblatlas.regions import BrainRegions

    return BrainAtlas(
        image=np.zeros((1, 1, 1)), label=np.zeros((1, 1, 1), dtype=int), dxyz=[1e-5] * 3, regions=BrainRegions()
    )


def to_beryl(allen_ids: np.ndarray, regions=None) -> np.ndarray:
    """Map Allen CCF 2017 ids (any level, lateralised or not) to Beryl acronyms (str array)."""
    if regions is None:
        from iblatlas.regions import BrainRegions

        regions = BrainRegions()
    ids = np.abs(np.asarray(allen_ids, dtype=np.int64))
    return np.asarray(regions.id2acronym(ids, mapping="Beryl"), dtype=str)


def _session_path(one, eid: str) -> Path:
    try:
        path = one.eid2path(eid)
    except Exception as exc:  # ONE raises different errors per version and mode
        path, cause = None, exc
    else:
        cause = None
    if path is None:
        raise SessionNotFoundError(
            f"session {eid} is not in the ONE cache at {one.cache_dir}: check the eid in the session "
            "list, or download it (data.one.mode: remote)"
        ) from cause
    return Path(path)


def _probe_names(one, eid: str) -> list[str]:
    collections = one.list_collections(eid, filename="spikes.times*", collection="alf/probe*")
    return sorted({c.split("/")[1] for c in collections})


def _load_probe(one, eid: str, probe: str, settings: OneSettings, atlas) -> tuple[dict, pd.DataFrame]:
    from brainbox.io.one import SpikeSortingLoader

    ssl = SpikeSortingLoader(one=one, eid=eid, pname=probe, atlas=atlas, revision=settings.revision)
    spikes, clusters, channels = ssl.load_spike_sorting(spike_sorter=settings.spike_sorter, revision=settings.revision)
    for key, obj in (("spikes.times", spikes), ("spikes.clusters", spikes), ("clusters.channels", clusters)):
        if key.split(".")[1] not in obj:
            raise DatasetError(f"{eid} {probe}: {key} is missing from {ssl.collection}; re-download the session")
    if "atlas_id" not in channels:
        raise DatasetError(
            f"{eid} {probe}: channels carry no brain locations (brainLocationIds_ccf_2017); this probe "
            "has no resolved histology"
        )
    n_clusters = clusters["channels"].size
    cluster_ids = np.arange(n_clusters)
    chan = np.asarray(clusters["channels"], dtype=np.int64)
    allen_ids = np.asarray(channels["atlas_id"], dtype=np.int64)[chan]
    uuids = clusters.get("uuids")
    units = pd.DataFrame(
        {
            "probe": probe,
            "cluster_id": cluster_ids,
            # ONE reads the one-column clusters.uuids.csv as a Series of uuid strings
            "uuid": (np.asarray(uuids, dtype=str) if uuids is not None else np.array([""] * n_clusters)),
            "channel": chan,
            "depth_um": np.asarray(clusters.get("depths", np.full(n_clusters, np.nan)), dtype=np.float64),
            "allen_id": allen_ids,
            "allen_acronym": np.asarray(channels["acronym"], dtype=str)[chan],
            "region": to_beryl(allen_ids, atlas.regions),
        }
    )
    spike_clusters = np.asarray(spikes["clusters"], dtype=np.int64)
    if spike_clusters.size and (spike_clusters.min() < 0 or spike_clusters.max() >= n_clusters):
        raise DatasetError(
            f"{eid} {probe}: spikes.clusters refers to clusters outside clusters.channels "
            f"(0..{n_clusters - 1}); the spike sorting files are inconsistent, re-download them"
        )
    return {"times": np.asarray(spikes["times"], dtype=np.float64), "clusters": spike_clusters}, units


def _load_whisker(loader, eid: str) -> tuple[pd.DataFrame | None, str, str]:
    """Left-camera whisker motion energy, right camera as fallback."""
    reasons = []
    for view in ("left", "right"):
        try:
            loader.load_motion_energy(views=[view])
        except Exception as exc:  # ALFObjectNotFound, shape errors, corrupt files
            reasons.append(f"{view}Camera: {type(exc).__name__}: {exc}".strip())
            continue
        df = loader.motion_energy[f"{view}Camera"]
        return (
            pd.DataFrame({"times": df["times"].to_numpy(float), "motion_energy": df["whiskerMotionEnergy"].to_numpy(float)}),
            f"{view}Camera",
            "",
        )
    return None, "", "no whisker motion energy (" + "; ".join(reasons) + ")"


def load_session(one, eid: str, settings: OneSettings = OneSettings(), atlas=None) -> RawSession:
    """Load spikes (all probes merged), trials, wheel and whisker motion energy of one session.

    Required datasets (spikes, clusters, channels with brain locations, trials) raise
    :class:`DatasetError` naming the dataset when missing or unreadable. Optional behaviour
    (wheel, whisker) that cannot be loaded is recorded in ``RawSession.missing`` instead; the
    binning stage decides whether the session is usable.
    """
    from brainbox.io.one import SessionLoader

    session_path = _session_path(one, eid)
    atlas = atlas if atlas is not None else regions_only_atlas()
    probes = _probe_names(one, eid)
    if not probes:
        raise DatasetError(f"{eid}: no spike sorting (alf/probe*/spikes.times) in {session_path}")
    times, units_idx, tables = [], [], []
    offset = 0
    for probe in probes:
        try:
            spikes, units = _load_probe(one, eid, probe, settings, atlas)
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(
                f"{eid} {probe}: could not read the spike sorting ({type(exc).__name__}: {exc}); the files "
                f"under {session_path}/alf/{probe} are missing or corrupt: delete and re-download them"
            ) from exc
        times.append(spikes["times"])
        units_idx.append(spikes["clusters"] + offset)
        tables.append(units)
        offset += len(units)
    spike_times = np.concatenate(times)
    spike_units = np.concatenate(units_idx)
    if len(probes) > 1:  # each probe is sorted; the merge is not
        order = np.argsort(spike_times, kind="stable")
        spike_times, spike_units = spike_times[order], spike_units[order]
    elif spike_times.size and np.any(np.diff(spike_times) < 0):
        raise DatasetError(f"{eid}: spikes.times is not sorted; the file is corrupt, re-download it")
    units = pd.concat(tables, ignore_index=True)

    loader = SessionLoader(one=one, eid=eid, revision=settings.revision or "")
    try:
        loader.load_trials()
    except Exception as exc:
        raise DatasetError(
            f"{eid}: could not read the trials object ({type(exc).__name__}: {exc}); the _ibl_trials.* files "
            f"under {session_path}/alf are missing or corrupt: delete and re-download them"
        ) from exc
    absent = [c for c in TRIAL_FIELDS if c not in loader.trials.columns]
    if absent:
        raise DatasetError(
            f"{eid}: the trials object lacks {absent} (_ibl_trials.<name>.npy under {session_path}/alf); "
            "re-download the session, or remove it from the session list"
        )
    missing: dict[str, str] = {}
    wheel = None
    try:
        loader.load_wheel()
        wheel = pd.DataFrame({"times": loader.wheel["times"].to_numpy(float), "velocity": loader.wheel["velocity"].to_numpy(float)})
    except Exception as exc:
        missing["wheel"] = f"no wheel data ({type(exc).__name__}: {exc})"
    whisker, source, reason = _load_whisker(loader, eid)
    if whisker is None:
        missing["whisker_motion_energy"] = reason
    return RawSession(
        eid=eid,
        session_path=str(session_path),
        spike_times=spike_times,
        spike_units=spike_units,
        units=units,
        trials=loader.trials.reset_index(drop=True),
        wheel=wheel,
        whisker=whisker,
        whisker_source=source,
        missing=missing,
    )


def download_session(one, eid: str, settings: OneSettings) -> dict[str, Any]:
    """Fetch every dataset :func:`load_session` reads into the ONE cache, with retries.

    Returns a summary (eid, probes, numbers of spikes/units/trials, missing optional datasets)
    that the workflow writes as the download rule's output.
    """
    raw = with_retries(
        lambda: load_session(one, eid, settings),
        settings.max_retries,
        settings.retry_backoff_s,
        what=f"downloading session {eid}",
    )
    return {
        "eid": eid,
        "session_path": raw.session_path,
        "revision": settings.revision,
        "probes": sorted(raw.units["probe"].unique().tolist()),
        "n_spikes": int(raw.spike_times.size),
        "n_units": int(len(raw.units)),
        "n_trials": int(len(raw.trials)),
        "missing": raw.missing,
    }
