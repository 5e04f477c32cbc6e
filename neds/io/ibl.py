"""Loading IBL sessions through ONE-api and the ibllib (brainbox) loaders.

This is the only module that talks to ONE. The same code path serves the public IBL server
(``mode: remote``), a user's downloaded cache and the simulated default (``mode: local``).

What cannot be used is recorded rather than raised where the rest of the session stays usable:
a probe without histology or with unreadable spike sorting is left out and named in
``RawSession.probes_dropped``; missing wheel or whisker data is named in ``RawSession.missing``;
NaN stretches of the raw wheel and whisker traces are bridged or kept as gaps (see
:func:`load_session`). Every reason is one line (:func:`one_line`), so it fits a TSV row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from neds.data.binning import TraceGaps, is_sorted, join_segments, split_at_gaps

__all__ = [
    "OneSettings",
    "RawSession",
    "SessionNotFoundError",
    "DatasetError",
    "connect",
    "regions_only_atlas",
    "session_info",
    "load_session",
    "download_session",
    "with_retries",
    "to_beryl",
    "one_line",
    "describe_error",
    "wheel_velocity",
    "DEFAULT_MAX_BEHAVIOUR_GAP_S",
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
# NaN stretches of a raw behaviour trace up to this long (s) are interpolated linearly
DEFAULT_MAX_BEHAVIOUR_GAP_S = 0.1
# longest reason string written to a status or a dropped table
MAX_REASON_CHARS = 600
# SessionLoader.load_wheel's resampling rate and low-pass filter, used per valid segment here
WHEEL_FS_HZ = 1000
WHEEL_CORNER_HZ = 20
WHEEL_FILTER_ORDER = 8


def one_line(text: Any, max_chars: int = MAX_REASON_CHARS) -> str:
    """``text`` as one line: every run of whitespace (newlines, tabs) becomes one space.

    Text longer than ``max_chars`` keeps its beginning and its end (where the fix usually is)
    and says how many characters were cut from the middle.
    """
    text = " ".join(str(text).split())
    if len(text) <= max_chars:
        return text
    template = " [... {} characters cut ...] "
    keep = max(0, max_chars - len(template.format(len(text))))
    marker = template.format(len(text) - keep)
    head = (2 * keep) // 3
    tail = keep - head
    return text[:head] + marker + (text[-tail:] if tail else "")


def describe_error(exc: BaseException, max_chars: int = 200) -> str:
    """'<ExceptionType>: <message>' on one line, the message shortened to ``max_chars``."""
    return f"{type(exc).__name__}: {one_line(exc, max_chars)}"


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Network errors that say nothing about the session: they propagate (and are retried)."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        import requests

        errors += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - requests comes with ONE
        pass
    return errors


_TRANSIENT = _transient_errors()


class SessionNotFoundError(LookupError):
    """The session id is not in the ONE cache."""


class DatasetError(RuntimeError):
    """A required dataset of a session is missing or cannot be read.

    probes_dropped : probe -> reason, for the probes that were tried and could not be used
        before the error (all of them when no probe is usable)
    """

    def __init__(self, message: str, probes_dropped: dict[str, str] | None = None):
        super().__init__(message)
        self.probes_dropped = dict(probes_dropped or {})


class _ProbeUnusable(Exception):
    """A probe that is left out of the session; the message is the one-line reason."""


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

    spike_times : (S,) float64, s, sorted over all kept probes
    spike_units : (S,) int64, row of ``units`` each spike belongs to
    units : DataFrame, U rows: probe, cluster_id, uuid, channel, depth_um, allen_id,
        allen_acronym, region (Beryl acronym)
    trials : DataFrame, K rows, the IBL trials table
    wheel : DataFrame with ``times`` (s) and ``velocity`` (rad/s), or None if unavailable; NaN
        over the long NaN stretches of the raw wheel position
    whisker : DataFrame with ``times`` (s) and ``motion_energy``, or None if unavailable; NaN
        over its long NaN stretches
    missing : dataset name -> reason, for optional datasets that could not be loaded
    lab, subject : from the session path ``<lab>/Subjects/<subject>/<date>/<number>``
    probes_dropped : probe -> reason, for probes left out (no histology, unreadable or
        inconsistent spike sorting)
    spike_sorting : one dict per kept probe: probe, collection (read), revision (of the files
        read, '' when they carry no revision folder), requested_revision, sorter (the sorter
        sub-collection, '' when the spike sorting sits in ``alf/<probe>`` itself), histology
        (SpikeSortingLoader's source of the channel locations, e.g. 'alf')
    behaviour_gaps : behaviour ('wheel', 'whisker_motion_energy') -> one-line note on the NaN
        stretches of its raw trace (only behaviours whose raw trace has NaN)
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
    lab: str = ""
    subject: str = ""
    probes_dropped: dict[str, str] = field(default_factory=dict)
    spike_sorting: list[dict] = field(default_factory=list)
    behaviour_gaps: dict[str, str] = field(default_factory=dict)


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
    except _TRANSIENT:
        raise
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


def session_info(one, eid: str) -> dict[str, str]:
    """eid, session_path, lab, subject, date and number of a session in the ONE cache.

    The parts come from the session path ``<lab>/Subjects/<subject>/<date>/<number>``; a part
    that the path does not give is ''.

    Raises
    ------
    SessionNotFoundError
        If the eid is not in the cache.
    """
    from one.alf.path import session_path_parts

    path = _session_path(one, eid)
    parts = session_path_parts(path, as_dict=True, assert_valid=False)
    return {"eid": eid, "session_path": str(path), **{k: str(v or "") for k, v in parts.items()}}


def _probe_names(one, eid: str) -> list[str]:
    """Every probe with a dataset under ``alf/<probe>`` (with or without spike sorting)."""
    collections = one.list_collections(eid, collection="alf/probe*")
    return sorted({c.split("/")[1] for c in collections if len(c.split("/")) > 1})


def _revision_of(files) -> str:
    """The revision folder of the files read ('' when they carry none)."""
    from one.alf.path import ALFPath

    return ",".join(sorted({ALFPath(f).revision for f in files or []} - {"", None}))


def _load_probe(one, eid: str, probe: str, settings: OneSettings, atlas) -> tuple[dict, pd.DataFrame, dict]:
    """Spikes, units table and provenance of one probe.

    Raises
    ------
    _ProbeUnusable
        With a one-line reason, if the probe has no spike sorting, unreadable or inconsistent
        spike sorting files, or no brain locations for its channels.
    """
    from brainbox.io.one import SpikeSortingLoader

    try:
        ssl = SpikeSortingLoader(one=one, eid=eid, pname=probe, atlas=atlas, revision=settings.revision)
        spikes, clusters, channels = ssl.load_spike_sorting(
            spike_sorter=settings.spike_sorter, revision=settings.revision
        )
    except _TRANSIENT:
        raise
    except Exception as exc:  # ALFObjectNotFound, numpy load errors on corrupt files, ...
        raise _ProbeUnusable(
            f"could not read the spike sorting ({describe_error(exc)}); the files under alf/{probe} "
            "are missing or corrupt: delete and re-download them"
        ) from exc
    where = ssl.collection or f"alf/{probe}"
    if not spikes:
        raise _ProbeUnusable(f"no spike sorting (spikes.times) under alf/{probe}; re-download the session")
    for key, obj in (("spikes.times", spikes), ("spikes.clusters", spikes), ("clusters.channels", clusters)):
        if key.split(".")[1] not in obj:
            raise _ProbeUnusable(f"{key} is missing from {where}; re-download the session")
    if "atlas_id" not in channels:
        raise _ProbeUnusable(
            f"no resolved histology: the channels carry no brain locations (channels.brainLocationIds_ccf_2017 "
            f"in {where}, nor an alignment from Alyx), so its units have no region; resolve the probe's "
            "alignment or leave the probe out"
        )
    spike_times = np.asarray(spikes["times"], dtype=np.float64)
    spike_clusters = np.asarray(spikes["clusters"], dtype=np.int64)
    if spike_times.shape != spike_clusters.shape:
        raise _ProbeUnusable(
            f"spikes.times ({spike_times.size}) and spikes.clusters ({spike_clusters.size}) in {where} differ "
            "in length; the spike sorting files are inconsistent, re-download them"
        )
    if not np.all(np.isfinite(spike_times)) or not is_sorted(spike_times):
        raise _ProbeUnusable(f"spikes.times in {where} is not finite and sorted; the file is corrupt, re-download it")
    chan = np.asarray(clusters["channels"], dtype=np.int64)
    n_clusters = chan.size
    allen_all = np.asarray(channels["atlas_id"], dtype=np.int64)
    if n_clusters and (chan.min() < 0 or chan.max() >= allen_all.size):
        raise _ProbeUnusable(
            f"clusters.channels in {where} refers to channels outside the {allen_all.size} channels; the "
            "spike sorting files are inconsistent, re-download them"
        )
    if spike_clusters.size and (spike_clusters.min() < 0 or spike_clusters.max() >= n_clusters):
        raise _ProbeUnusable(
            f"spikes.clusters in {where} refers to clusters outside clusters.channels (0..{n_clusters - 1}); "
            "the spike sorting files are inconsistent, re-download them"
        )
    allen_ids = allen_all[chan]
    uuids = clusters.get("uuids")
    units = pd.DataFrame(
        {
            "probe": probe,
            "cluster_id": np.arange(n_clusters),
            # ONE reads the one-column clusters.uuids.csv as a Series of uuid strings
            "uuid": (np.asarray(uuids, dtype=str) if uuids is not None else np.array([""] * n_clusters)),
            "channel": chan,
            "depth_um": np.asarray(clusters.get("depths", np.full(n_clusters, np.nan)), dtype=np.float64),
            "allen_id": allen_ids,
            "allen_acronym": np.asarray(channels["acronym"], dtype=str)[chan],
            "region": to_beryl(allen_ids, atlas.regions),
        }
    )
    parts = where.split("/")
    provenance = {
        "probe": probe,
        "collection": where,
        "revision": _revision_of(ssl.files.get("spikes")),
        "requested_revision": settings.revision,
        "sorter": parts[2] if len(parts) > 2 else "",
        "histology": str(getattr(ssl, "histology", "") or ""),
    }
    return {"times": spike_times, "clusters": spike_clusters}, units, provenance


def wheel_velocity(
    timestamps: np.ndarray,
    position: np.ndarray,
    max_gap_s: float = DEFAULT_MAX_BEHAVIOUR_GAP_S,
    fs: float = WHEEL_FS_HZ,
    corner_frequency: float = WHEEL_CORNER_HZ,
    order: int = WHEEL_FILTER_ORDER,
) -> tuple[np.ndarray, np.ndarray, TraceGaps]:
    """Wheel velocity from the raw wheel position, computed per valid segment.

    The raw trace is split at its NaN stretches longer than ``max_gap_s``
    (:func:`neds.data.binning.split_at_gaps`; shorter ones are bridged linearly). Each segment is
    resampled and differentiated through a zero-phase low-pass filter with brainbox's own
    ``interpolate_position`` and ``velocity_filtered``, as ``SessionLoader.load_wheel`` does for a
    whole trace; a trace without NaN gives the same velocity. Filtering segment by segment keeps
    a NaN from spreading over the whole trace. Segments are joined with a NaN sample between them;
    a segment too short for the filter is left out and counted in ``TraceGaps.too_short``.

    Returns
    -------
    times : (N,) float64, s
    velocity : (N,) float64, rad/s (NaN between segments)
    gaps : :class:`neds.data.binning.TraceGaps`
    """
    from brainbox.behavior.wheel import interpolate_position, velocity_filtered

    timestamps = np.asarray(timestamps, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    segments, gaps = split_at_gaps(timestamps, position, max_gap_s)
    out_t, out_v = [], []
    for seg in segments:
        t_seg, p_seg = timestamps[seg], position[seg]
        try:
            if seg.size < 2:
                raise ValueError("one sample")
            pos, t = interpolate_position(t_seg, p_seg, freq=fs)
            vel, _ = velocity_filtered(pos, fs=fs, corner_frequency=corner_frequency, order=order)
        except (ValueError, IndexError):  # too few samples for the resampling or the filter's padding
            gaps.too_short.append((float(t_seg[0]), float(t_seg[-1])))
            continue
        out_t.append(t)
        out_v.append(vel)
    times, velocity = join_segments(out_t, out_v)
    return times, velocity, gaps


def _load_wheel(one, loader, eid: str, revision: str | None, max_gap_s: float) -> tuple[pd.DataFrame, TraceGaps]:
    """Raw wheel position through ONE, velocity per segment (see :func:`wheel_velocity`)."""
    collection = loader._find_behaviour_collection("wheel")  # as SessionLoader.load_wheel
    raw = one.load_object(
        eid, "wheel", collection=collection, attribute=["position", "timestamps"], revision=revision or None
    )
    for key in ("position", "timestamps"):
        if key not in raw:
            raise ValueError(f"_ibl_wheel.{key} is missing from {collection}")
    if np.shape(raw["position"]) != np.shape(raw["timestamps"]):
        raise ValueError(
            f"wheel.position {np.shape(raw['position'])} and wheel.timestamps {np.shape(raw['timestamps'])} differ"
        )
    times, velocity, gaps = wheel_velocity(raw["timestamps"], raw["position"], max_gap_s)
    # float32, as SessionLoader.load_wheel returns them: a trace without NaN bins exactly as before
    return pd.DataFrame({"times": times.astype(np.float32), "velocity": velocity.astype(np.float32)}), gaps


def _load_whisker(loader, eid: str, max_gap_s: float) -> tuple[pd.DataFrame | None, str, str, TraceGaps | None]:
    """Left-camera whisker motion energy, right camera as fallback.

    NaN stretches no longer than ``max_gap_s`` are bridged linearly; longer ones stay NaN.
    Returns (frame, camera, reason it is missing, gaps).
    """
    reasons = []
    for view in ("left", "right"):
        try:
            loader.load_motion_energy(views=[view])
        except _TRANSIENT:
            raise
        except Exception as exc:  # ALFObjectNotFound, shape errors, corrupt files
            reasons.append(f"{view}Camera: {describe_error(exc)}")
            continue
        df = loader.motion_energy[f"{view}Camera"]
        times = df["times"].to_numpy(float)
        energy = df["whiskerMotionEnergy"].to_numpy(float)
        segments, gaps = split_at_gaps(times, energy, max_gap_s)
        times, energy = join_segments([times[i] for i in segments], [energy[i] for i in segments])
        return pd.DataFrame({"times": times, "motion_energy": energy}), f"{view}Camera", "", gaps
    return None, "", "no whisker motion energy (" + "; ".join(reasons) + ")", None


def load_session(
    one,
    eid: str,
    settings: OneSettings = OneSettings(),
    atlas=None,
    max_behaviour_gap_s: float = DEFAULT_MAX_BEHAVIOUR_GAP_S,
) -> RawSession:
    """Load spikes (usable probes merged), trials, wheel and whisker motion energy of one session.

    Probes: every probe with datasets under ``alf/<probe>`` is tried. A probe whose spike sorting
    is missing, unreadable or inconsistent, or whose channels carry no brain locations, is left
    out and named with its reason in ``RawSession.probes_dropped``; the other probes are kept.

    Required datasets raise :class:`DatasetError` naming the problem: no usable probe at all
    (``DatasetError.probes_dropped`` gives each probe's reason), or a trials object that is
    missing, unreadable or lacks a field the binning reads.

    Optional behaviour (wheel, whisker) that cannot be loaded is recorded in
    ``RawSession.missing``; the binning stage decides whether the session is usable.

    NaN in a raw behaviour trace (wheel position, whisker motion energy): a NaN stretch no longer
    than ``max_behaviour_gap_s`` (the time between the valid samples around it) is interpolated
    linearly; a longer one stays a gap, NaN in the loaded trace, so only the trials whose windows
    reach into it lose that behaviour. The wheel velocity is computed per segment between gaps
    (:func:`wheel_velocity`), so a NaN does not spread through the filter to the whole session.
    Each trace's NaN stretches are summarised in ``RawSession.behaviour_gaps``.

    Raises
    ------
    SessionNotFoundError
        If the eid is not in the ONE cache.
    DatasetError
        If no probe is usable or the trials object cannot be used.
    """
    from brainbox.io.one import SessionLoader

    info = session_info(one, eid)
    session_path = info["session_path"]
    atlas = atlas if atlas is not None else regions_only_atlas()
    probes = _probe_names(one, eid)
    if not probes:
        raise DatasetError(
            f"{eid}: no probe (no dataset under alf/probe*) in {session_path}; the session has no spike "
            "sorting: re-download it, or remove it from the session list"
        )
    times, units_idx, tables, provenance = [], [], [], []
    dropped: dict[str, str] = {}
    offset = 0
    for probe in probes:
        try:
            spikes, units, prov = _load_probe(one, eid, probe, settings, atlas)
        except _ProbeUnusable as exc:
            dropped[probe] = one_line(exc)
            _log.warning("%s %s is left out: %s", eid, probe, dropped[probe])
            continue
        times.append(spikes["times"])
        units_idx.append(spikes["clusters"] + offset)
        tables.append(units)
        provenance.append(prov)
        offset += len(units)
    if not tables:
        listed = "; ".join(f"{p}: {r}" for p, r in dropped.items())
        raise DatasetError(one_line(f"{eid}: no usable probe ({listed})"), probes_dropped=dropped)
    spike_times = np.concatenate(times)
    spike_units = np.concatenate(units_idx)
    if len(tables) > 1:  # each probe is sorted; the merge is not
        order = np.argsort(spike_times, kind="stable")
        spike_times, spike_units = spike_times[order], spike_units[order]
    units = pd.concat(tables, ignore_index=True)

    loader = SessionLoader(one=one, eid=eid, revision=settings.revision or "")
    try:
        loader.load_trials()
    except _TRANSIENT:
        raise
    except Exception as exc:
        raise DatasetError(
            one_line(
                f"{eid}: could not read the trials object ({describe_error(exc)}); the _ibl_trials.* files "
                f"under {session_path}/alf are missing or corrupt: delete and re-download them"
            ),
            probes_dropped=dropped,
        ) from exc
    absent = [c for c in TRIAL_FIELDS if c not in loader.trials.columns]
    if absent:
        raise DatasetError(
            one_line(
                f"{eid}: the trials object lacks {absent} (_ibl_trials.<name>.npy under {session_path}/alf); "
                "re-download the session, or remove it from the session list"
            ),
            probes_dropped=dropped,
        )
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    wheel = None
    try:
        wheel, wheel_gaps = _load_wheel(one, loader, eid, settings.revision, max_behaviour_gap_s)
    except _TRANSIENT:
        raise
    except Exception as exc:
        missing["wheel"] = f"no wheel data ({describe_error(exc)})"
    else:
        if wheel_gaps.note():
            notes["wheel"] = wheel_gaps.note()
    whisker, source, reason, whisker_gaps = _load_whisker(loader, eid, max_behaviour_gap_s)
    if whisker is None:
        missing["whisker_motion_energy"] = one_line(reason)
    elif whisker_gaps is not None and whisker_gaps.note():
        notes["whisker_motion_energy"] = whisker_gaps.note()
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
        lab=info["lab"],
        subject=info["subject"],
        probes_dropped=dropped,
        spike_sorting=provenance,
        behaviour_gaps=notes,
    )


def download_session(one, eid: str, settings: OneSettings) -> dict[str, Any]:
    """Fetch every dataset :func:`load_session` reads into the ONE cache, with retries.

    Returns a summary (eid, subject, lab, probes kept and dropped with reasons, spike sorting
    provenance, numbers of spikes/units/trials, missing optional datasets) that the workflow
    writes as the download rule's output. Errors of the session itself (SessionNotFoundError,
    DatasetError) are not retried and propagate.
    """
    raw = with_retries(
        lambda: load_session(one, eid, settings),
        settings.max_retries,
        settings.retry_backoff_s,
        what=f"downloading session {eid}",
    )
    return {
        "eid": eid,
        "usable": True,
        "reason": "",
        "session_path": raw.session_path,
        "subject": raw.subject,
        "lab": raw.lab,
        "revision": settings.revision,
        "probes": sorted(raw.units["probe"].unique().tolist()),
        "probes_dropped": raw.probes_dropped,
        "spike_sorting": raw.spike_sorting,
        "n_spikes": int(raw.spike_times.size),
        "n_units": int(len(raw.units)),
        "n_trials": int(len(raw.trials)),
        "missing": raw.missing,
        "behaviour_gaps": raw.behaviour_gaps,
    }
