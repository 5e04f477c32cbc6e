"""From one loaded session to the binned, self-describing xarray dataset stored in Zarr."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from neds import __version__
from neds.data.binning import bin_centres, bin_spikes, n_bins_for, sample_behaviour, spike_events
from neds.data.trials import (
    TrialCriteria,
    encode_block,
    encode_choice,
    minmax_scale,
    trial_exclusion,
    trial_split,
)
from neds.io.ibl import DEFAULT_MAX_BEHAVIOUR_GAP_S, TRIAL_FIELDS, RawSession, one_line
from neds.io.store import text_array

__all__ = [
    "BinningParams",
    "BinnedSession",
    "bin_session",
    "unusable_session",
    "session_status",
    "TRIAL_EVENT_COORDS",
    "DROPPED_COLUMNS",
]

# columns of the dropped table; kind is 'session', 'probe', 'trial' or 'unit'
DROPPED_COLUMNS = ["kind", "id", "reason"]

# trial-table columns stored as coordinates on the `trial` dim
TRIAL_EVENT_COORDS = (*TRIAL_FIELDS, "contrastLeft", "contrastRight")


@dataclass(frozen=True)
class BinningParams:
    """Settings of the binning stage (config section ``binning``).

    max_behaviour_gap_s : NaN stretches of a raw behaviour trace (wheel position, whisker motion
        energy) no longer than this (s) are interpolated linearly; longer ones stay gaps, and the
        trials whose windows reach into a gap are dropped (``nan_wheel_speed`` /
        ``nan_whisker_motion_energy``).
    """

    bin_size_s: float = 0.02
    window_s: tuple[float, float] = (-0.5, 1.5)
    align_event: str = "stimOn_times"
    min_firing_rate_hz: float = 2.0
    max_nan_behaviour_fraction: float = 0.3
    max_behaviour_gap_s: float = DEFAULT_MAX_BEHAVIOUR_GAP_S
    min_trials: int = 50
    min_units: int = 1
    min_reaction_time_s: float = 0.0
    max_reaction_time_s: float = 10.0
    max_feedback_delay_s: float = 10.0
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_seed: int = 42

    def __post_init__(self) -> None:
        n_bins_for(self.window_s, self.bin_size_s)  # validates the window
        if not self.max_behaviour_gap_s >= 0:
            raise ValueError(
                f"max_behaviour_gap_s={self.max_behaviour_gap_s} must be >= 0 s; set binning.max_behaviour_gap_s"
            )


@dataclass
class BinnedSession:
    """Result of :func:`bin_session`.

    dataset : the binned xarray dataset, or None if the session is unusable
    status : one row of ``sessions.tsv`` (see :func:`session_status`); every value is a number,
        a bool or a one-line string
    dropped : DataFrame of what was left out, columns kind, id, reason: 'session' (id the eid;
        the session is unusable), 'probe' (id the probe name), 'trial' (id the row of the ALF
        trials table; reason the failed rules joined by ';'), 'unit' (id '<probe>/<cluster_id>')
    """

    dataset: xr.Dataset | None
    status: dict
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)


def _joined(items: dict[str, str]) -> str:
    """'key: value | key: value' on one line."""
    return one_line(" | ".join(f"{k}: {v}" for k, v in items.items()))


def _spike_sorting_text(provenance: list[dict]) -> str:
    """One line per session: 'probe00: alf/probe00/pykilosort (sorter pykilosort, revision ...)'."""
    parts = []
    for p in provenance:
        revision = p.get("revision") or "none"
        requested = p.get("requested_revision")
        extra = f", requested {requested}" if requested and requested != p.get("revision") else ""
        parts.append(
            f"{p['probe']}: {p['collection']} (sorter {p.get('sorter') or 'unnamed'}, revision {revision}{extra})"
        )
    return one_line(" | ".join(parts))


def session_status(eid: str, source: str = "", **values) -> dict:
    """One row of ``sessions.tsv``, every key present (defaults: unusable, nothing kept).

    Keys: eid, usable, reason, n_trials_total, n_trials_kept, n_units_total, n_units_kept,
    source, whisker_source, subject, lab, probes (kept, comma-separated), probes_dropped
    ('probe: reason | ...'), spike_sorting ('probe: collection (sorter, revision) | ...'),
    behaviour_gaps ('wheel: note | ...'), constant_targets (e.g. 'block (all 0.5)'). Strings are
    made one line (:func:`neds.io.ibl.one_line`).
    """
    status = {
        "eid": eid,
        "usable": False,
        "reason": "",
        "n_trials_total": 0,
        "n_trials_kept": 0,
        "n_units_total": 0,
        "n_units_kept": 0,
        "source": source,
        "whisker_source": "",
        "subject": "",
        "lab": "",
        "probes": "",
        "probes_dropped": "",
        "spike_sorting": "",
        "behaviour_gaps": "",
        "constant_targets": "",
    }
    unknown = set(values) - set(status)
    if unknown:
        raise KeyError(f"unknown status keys {sorted(unknown)}; add them to session_status")
    status.update(values)
    return {k: one_line(v) if isinstance(v, str) else v for k, v in status.items()}


def unusable_session(
    eid: str,
    reason: str,
    source: str = "",
    subject: str = "",
    lab: str = "",
    probes_dropped: dict[str, str] | None = None,
) -> BinnedSession:
    """The result for a session that could not be loaded: no dataset, a status with
    ``usable: false`` and the one-line reason, and a dropped table naming the session (and the
    probes that were tried, with their reasons)."""
    probes_dropped = {p: one_line(r) for p, r in (probes_dropped or {}).items()}
    status = session_status(
        eid, source, reason=reason, subject=subject, lab=lab, probes_dropped=_joined(probes_dropped)
    )
    rows = [{"kind": "probe", "id": p, "reason": r} for p, r in probes_dropped.items()]
    rows.append({"kind": "session", "id": eid, "reason": status["reason"]})
    return BinnedSession(None, status, pd.DataFrame(rows, columns=DROPPED_COLUMNS))


def _constant_targets(trials: pd.DataFrame) -> str:
    """Decoding targets that take one value over the given trials, e.g. 'block (all 0.5)'."""
    notes = []
    if len(trials):
        for name, col, fmt in (("choice", "choice", "{:+g}"), ("block", "probabilityLeft", "{:g}")):
            values = np.unique(trials[col].to_numpy(float))
            if values.size == 1:
                notes.append(f"{name} (all {fmt.format(values[0])})")
    return "; ".join(notes)


def _reasons(fail: pd.DataFrame) -> np.ndarray:
    """Per row, the names of the failed rules joined by ';' ('' if none)."""
    names = np.asarray(fail.columns, dtype=object)
    return np.array([";".join(names[row]) for row in fail.to_numpy(dtype=bool)], dtype=object)


def bin_session(raw: RawSession, params: BinningParams, source: str = "") -> BinnedSession:
    """Apply trial exclusion, bin spikes and behaviour, filter units, scale and split.

    Steps: probes the loader left out are listed as dropped; trials failing any exclusion rule
    are dropped; each continuous behaviour is sampled at the bin centres; a behaviour that is
    missing, or NaN on at least ``max_nan_behaviour_fraction`` of the valid trials, makes the
    session unusable, otherwise the trials with NaN behaviour are dropped (a long NaN stretch of
    the raw trace, see :func:`neds.io.ibl.load_session`, costs only the trials whose bin
    centres fall in it); units whose mean rate over the kept trial windows is not above
    ``min_firing_rate_hz`` are dropped; wheel speed and whisker motion energy are min-max scaled
    to [0, 1] over the kept trials; kept trials are split train/val/test from (eid, split_seed).
    A decoding target that is constant over the kept trials (e.g. every probabilityLeft 0.5)
    does not make the session unusable; it is named in the status (``constant_targets``).

    Returns
    -------
    BinnedSession
        ``dataset`` holds ``spikes`` (trial, time, unit) uint16 counts, the same spikes as events
        (``spike_event_time`` float32 s from the start of the trial window and ``spike_event_unit``
        int32 index into ``unit``, both along ``spike_event``: the trials' events concatenated in
        trial order, ``n_spike_events`` (trial) int64 per trial; their histogram over (bin, unit)
        is ``spikes``, see :func:`neds.data.binning.spike_events`), ``wheel_speed`` and
        ``whisker_motion_energy`` (trial, time) float32 in [0, 1], ``choice`` (trial) int8 in
        {0, 1} and ``block`` (trial) int8 in {0, 1, 2}, with unit and trial coordinates and
        provenance attrs.
    """
    trials = raw.trials
    n_all = len(trials)
    probes_dropped = {p: one_line(r) for p, r in raw.probes_dropped.items()}
    status = session_status(
        raw.eid,
        source,
        n_trials_total=n_all,
        n_units_total=int(len(raw.units)),
        whisker_source=raw.whisker_source,
        subject=raw.subject,
        lab=raw.lab,
        probes=",".join(sorted(raw.units["probe"].unique())) if len(raw.units) else "",
        probes_dropped=_joined(probes_dropped),
        spike_sorting=_spike_sorting_text(raw.spike_sorting),
        behaviour_gaps=_joined(raw.behaviour_gaps),
    )
    dropped_rows: list[dict] = [{"kind": "probe", "id": p, "reason": r} for p, r in probes_dropped.items()]
    criteria = TrialCriteria(params.min_reaction_time_s, params.max_reaction_time_s, params.max_feedback_delay_s)
    fail = trial_exclusion(trials, criteria)
    align = trials[params.align_event].to_numpy(float) if params.align_event in trials else None
    if align is None:
        raise KeyError(f"align_event {params.align_event!r} is not a trials column; fix binning.align_event")

    unusable = [one_line(reason) for reason in raw.missing.values()]
    behaviour: dict[str, np.ndarray] = {}
    task_ok = ~fail.any(axis=1).to_numpy()
    sources = {
        "wheel_speed": (raw.wheel, "times", "velocity", np.abs),
        "whisker_motion_energy": (raw.whisker, "times", "motion_energy", None),
    }
    safe_align = np.where(np.isfinite(align), align, 0.0)
    for name, (df, tcol, vcol, transform) in sources.items():
        if df is None:
            continue
        values = df[vcol].to_numpy(float)
        values = transform(values) if transform is not None else values
        sampled = sample_behaviour(df[tcol].to_numpy(float), values, safe_align, params.window_s, params.bin_size_s)
        nan_trial = np.isnan(sampled).any(axis=1)
        frac = float(nan_trial[task_ok].mean()) if task_ok.any() else 1.0
        if frac >= params.max_nan_behaviour_fraction:
            unusable.append(
                f"{name} is NaN on {frac:.0%} of valid trials (limit {params.max_nan_behaviour_fraction:.0%})"
            )
        fail[f"nan_{name}"] = nan_trial
        behaviour[name] = sampled

    keep = ~fail.any(axis=1).to_numpy()
    reasons = _reasons(fail)
    for i in np.flatnonzero(~keep):
        dropped_rows.append({"kind": "trial", "id": int(i), "reason": reasons[i]})
    n_kept = int(keep.sum())
    status["n_trials_kept"] = n_kept
    status["constant_targets"] = _constant_targets(trials.loc[keep])
    if n_kept < params.min_trials:
        unusable.append(f"{n_kept} usable trials, fewer than binning.min_trials = {params.min_trials}")
    if unusable:
        status["reason"] = one_line("; ".join(unusable))
        dropped_rows.append({"kind": "session", "id": raw.eid, "reason": status["reason"]})
        return BinnedSession(None, status, pd.DataFrame(dropped_rows, columns=DROPPED_COLUMNS))

    kept_idx = np.flatnonzero(keep)
    counts = bin_spikes(
        raw.spike_times, raw.spike_units, len(raw.units), align[kept_idx], params.window_s, params.bin_size_s
    )  # (K, T, U)
    duration = params.window_s[1] - params.window_s[0]
    rates = counts.sum(axis=(0, 1), dtype=np.int64) / (n_kept * duration)  # (U,) Hz
    unit_keep = rates > params.min_firing_rate_hz
    for u in np.flatnonzero(~unit_keep):
        unit = raw.units.iloc[u]
        dropped_rows.append(
            {
                "kind": "unit",
                "id": f"{unit['probe']}/{int(unit['cluster_id'])}",
                "reason": f"mean rate {rates[u]:.3f} Hz <= {params.min_firing_rate_hz} Hz",
            }
        )
    status["n_units_kept"] = int(unit_keep.sum())
    if unit_keep.sum() < params.min_units:
        status["reason"] = (
            f"{int(unit_keep.sum())} units above {params.min_firing_rate_hz} Hz, fewer than "
            f"binning.min_units = {params.min_units}"
        )
        dropped_rows.append({"kind": "session", "id": raw.eid, "reason": status["reason"]})
        return BinnedSession(None, status, pd.DataFrame(dropped_rows, columns=DROPPED_COLUMNS))
    dropped = pd.DataFrame(dropped_rows, columns=DROPPED_COLUMNS)

    counts = counts[:, :, unit_keep]
    unit_map = np.full(len(raw.units), -1, dtype=np.int64)
    unit_map[unit_keep] = np.arange(int(unit_keep.sum()))
    event_time, event_unit, n_events = spike_events(
        raw.spike_times,
        raw.spike_units,
        align[kept_idx],
        params.window_s,
        params.bin_size_s,
        unit_map=unit_map,
        check_sorted=False,  # bin_spikes has checked the order
    )
    units = raw.units.loc[unit_keep].reset_index(drop=True)
    kept_trials = trials.iloc[kept_idx].reset_index(drop=True)
    split = trial_split(raw.eid, params.split_seed, n_kept, params.split_fractions)
    times = bin_centres(params.window_s, params.bin_size_s)

    data_vars = {
        "spikes": (("trial", "time", "unit"), counts, {"units": "spike count per bin"}),
        "n_spike_events": (
            ("trial",),
            n_events,
            {"description": "number of spike events of the trial (its spike count)"},
        ),
        "spike_event_time": (
            ("spike_event",),
            event_time,
            {
                "units": "s",
                "description": f"time from the start of the trial window ({params.align_event} + "
                f"{params.window_s[0]:g} s), in bin floor(time / bin_size_s); the trials' events concatenated "
                "in trial order (n_spike_events each), within a trial by time, ties by unit",
            },
        ),
        "spike_event_unit": (("spike_event",), event_unit, {"description": "index into the unit dimension"}),
        "choice": (
            ("trial",),
            encode_choice(kept_trials["choice"].to_numpy()),
            {"classes": "0: choice -1, 1: choice +1"},
        ),
        "block": (
            ("trial",),
            encode_block(kept_trials["probabilityLeft"].to_numpy()),
            {"classes": "0: pLeft 0.2, 1: 0.5, 2: 0.8"},
        ),
    }
    for name, sampled in behaviour.items():
        scaled, lo, hi = minmax_scale(sampled[kept_idx])
        data_vars[name] = (
            ("trial", "time"),
            scaled,
            {
                "scale_min": lo,
                "scale_max": hi,
                "units": "min-max scaled to [0, 1] per session",
                "raw_units": "rad/s (|wheel velocity|)" if name == "wheel_speed" else "a.u. (ROI motion energy)",
            },
        )
    coords = {
        "trial": ("trial", kept_idx.astype(np.int64), {"description": "index in the session's ALF trials table"}),
        "time": ("time", times, {"units": "s", "description": f"bin centre relative to {params.align_event}"}),
        "unit": ("unit", np.arange(len(units), dtype=np.int64)),
        "split": ("trial", text_array(split)),
        "unit_probe": ("unit", text_array(units["probe"])),
        "unit_cluster_id": ("unit", units["cluster_id"].to_numpy(np.int64)),
        "unit_uuid": ("unit", text_array(units["uuid"])),
        "unit_region": ("unit", text_array(units["region"])),
        "unit_allen_acronym": ("unit", text_array(units["allen_acronym"])),
        "unit_depth_um": ("unit", units["depth_um"].to_numpy(np.float64)),
        "unit_channel": ("unit", units["channel"].to_numpy(np.int64)),
        "unit_firing_rate_hz": ("unit", rates[unit_keep].astype(np.float64)),
    }
    for col in TRIAL_EVENT_COORDS:
        if col in kept_trials:
            coords[f"trial_{col}"] = ("trial", kept_trials[col].to_numpy(np.float64))
    attrs = {
        "eid": raw.eid,
        "source": source,
        "session_path": raw.session_path,
        "neds_version": __version__,
        "whisker_source": raw.whisker_source,
        "subject": raw.subject,
        "lab": raw.lab,
        "spike_sorting": [dict(p) for p in raw.spike_sorting],
        "probes_dropped": probes_dropped,
        "behaviour_gaps": dict(raw.behaviour_gaps),
        "constant_targets": status["constant_targets"],
        "n_trials_total": n_all,
        "n_trials_dropped": int(n_all - n_kept),
        "trials_dropped_by_rule": {c: int(fail[c].sum()) for c in fail.columns},
        "n_units_total": int(len(raw.units)),
        "n_units_dropped": int((~unit_keep).sum()),
        "units_dropped_reason": f"mean rate over kept trial windows <= {params.min_firing_rate_hz} Hz",
        "binning": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
    }
    ds = xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)
    status["usable"] = True
    return BinnedSession(ds, status, dropped)
