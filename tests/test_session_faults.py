"""Fault injection on simulated sessions: each fault is injected into the ALF files (or the
ONE calls) of a session in a temporary ONE cache, and the recorded outcome is checked: what is
dropped, with which reason, whether the session stays usable, and that every output is written."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from neds.data.binning import join_segments, sample_behaviour, split_at_gaps
from neds.data.session import BinningParams
from neds.io.ibl import (
    DatasetError,
    OneSettings,
    connect,
    load_session,
    one_line,
    wheel_velocity,
)
from neds.io.store import SESSION_COLUMNS, as_str, is_usable, open_binned, open_zarr
from neds.simulate import SimulationConfig, build_one_cache, session_eids, simulate_sessions
from neds.stages import run_bin_session, run_download_session

SIM = SimulationConfig(
    n_pretrain_sessions=1,
    n_heldout_sessions=1,
    n_units=(20, 24),
    n_trials=(90, 100),
    n_probes=(2, 2),
    seed=5,
)
EID = session_eids(SIM.seed, SIM.n_sessions)[0]
PARAMS = BinningParams(min_trials=20)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    manifest = simulate_sessions(root / "one_cache", root / "ground_truth", SIM, hash_files=False)
    return root / "one_cache", dict(zip(manifest["eid"], manifest["session_path"])), manifest


@pytest.fixture
def cache(pristine, tmp_path):
    """A private copy of the simulated ONE cache: (settings, session folder of EID, rebuild)."""
    src, sessions, _ = pristine
    dst = tmp_path / "one_cache"
    shutil.copytree(src, dst)
    settings = OneSettings(mode="local", cache_dir=str(dst))

    def rebuild():  # the cache tables list only what is on disk, as for a partial download
        build_one_cache(dst, sessions, hash_files=False)

    return settings, dst / sessions[EID], rebuild


def run(settings, out, eid=EID, params=PARAMS):
    """run_bin_session into ``out``; returns (returned status, status file, dropped table, store)."""
    paths = {
        "out_zarr": out / f"{eid}.zarr",
        "out_dropped": out / "dropped" / f"{eid}.tsv",
        "out_status": out / "status" / f"{eid}.json",
    }
    status = run_bin_session(eid, settings, params, **paths)
    on_disk = json.loads(paths["out_status"].read_text())
    dropped = pd.read_csv(paths["out_dropped"], sep="\t", dtype={"id": str}, keep_default_na=False)
    return status, on_disk, dropped, paths["out_zarr"]


@pytest.fixture(scope="module")
def clean(pristine, tmp_path_factory):
    """The unharmed session, binned: the reference the faults are compared with."""
    settings = OneSettings(mode="local", cache_dir=str(pristine[0]))
    status, _, dropped, store = run(settings, tmp_path_factory.mktemp("clean"))
    raw = load_session(connect(settings), EID, settings)
    return status, dropped, open_binned(store), raw


def assert_one_line_values(status: dict):
    for key, value in status.items():
        assert not isinstance(value, (dict, list)), f"{key} is not a scalar: {value!r}"
        if isinstance(value, str):
            assert "\n" not in value and "\t" not in value and "  " not in value, (key, value)


def trial_reasons(dropped: pd.DataFrame) -> dict[int, str]:
    rows = dropped[dropped["kind"] == "trial"]
    return dict(zip(rows["id"].astype(int), rows["reason"]))


# ------------------------------------------------------------------------------------------
# 1. one bad probe is dropped with its reason, the other probe is kept
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rebuild_tables", [False, True], ids=["file-deleted", "not-in-cache"])
def test_probe_without_histology_is_dropped_and_the_other_kept(cache, clean, tmp_path, rebuild_tables):
    settings, session, rebuild = cache
    (session / "alf" / "probe01" / "pykilosort" / "channels.brainLocationIds_ccf_2017.npy").unlink()
    if rebuild_tables:
        rebuild()
    status, on_disk, dropped, store = run(settings, tmp_path / "out")
    assert status == on_disk and status["usable"], status["reason"]
    assert status["probes"] == "probe00"
    assert status["probes_dropped"].startswith("probe01: no resolved histology")
    assert "brainLocationIds_ccf_2017" in status["probes_dropped"]
    probe_rows = dropped[dropped["kind"] == "probe"]
    assert probe_rows["id"].tolist() == ["probe01"]
    assert "no resolved histology" in probe_rows["reason"].iloc[0]
    ds = open_binned(store)
    assert set(as_str(ds["unit_probe"].values)) == {"probe00"}
    assert ds.attrs["probes_dropped"].keys() == {"probe01"}
    assert [p["probe"] for p in ds.attrs["spike_sorting"]] == ["probe00"]
    # probe00 is binned exactly as in the clean session
    ref = clean[2]
    sel = as_str(ref["unit_probe"].values) == "probe00"
    np.testing.assert_array_equal(ds["spikes"].values, ref["spikes"].values[:, :, sel])
    assert_one_line_values(status)


def test_inconsistent_spike_sorting_drops_that_probe_only(cache, tmp_path):
    settings, session, _ = cache
    path = session / "alf" / "probe00" / "pykilosort" / "spikes.clusters.npy"
    clusters = np.load(path)
    clusters[5] = 10_000  # refers to a cluster that does not exist
    np.save(path, clusters)
    status, _, dropped, store = run(settings, tmp_path / "out")
    assert status["usable"] and status["probes"] == "probe01"
    reason = dropped.loc[dropped["kind"] == "probe", "reason"].tolist()
    assert len(reason) == 1 and "spikes.clusters" in reason[0] and "inconsistent" in reason[0]
    assert status["probes_dropped"].startswith("probe00: spikes.clusters")


def test_no_usable_probe_makes_the_session_unusable_with_each_reason(cache, tmp_path):
    settings, session, _ = cache
    for probe in ("probe00", "probe01"):
        (session / "alf" / probe / "pykilosort" / "channels.brainLocationIds_ccf_2017.npy").unlink()
    with pytest.raises(DatasetError, match="no usable probe") as info:
        load_session(connect(settings), EID, settings)
    assert set(info.value.probes_dropped) == {"probe00", "probe01"}
    status, _, dropped, store = run(settings, tmp_path / "out")
    assert not status["usable"] and status["reason"].startswith(f"{EID}: no usable probe")
    assert dropped["kind"].tolist() == ["probe", "probe", "session"]
    assert dropped["id"].tolist() == ["probe00", "probe01", EID]
    assert all("no resolved histology" in r for r in dropped["reason"][:2])
    assert not is_usable(store) and open_zarr(store).attrs["reason"] == status["reason"]


# ------------------------------------------------------------------------------------------
# 2. a session missing a required dataset is recorded as unusable; config problems raise
# ------------------------------------------------------------------------------------------


def delete_spike_times(session):
    for path in session.glob("alf/probe*/pykilosort/spikes.times.npy"):
        path.unlink()


def delete_trials(session):
    for path in session.glob("alf/_ibl_trials.*"):
        path.unlink()


@pytest.mark.parametrize(
    "fault, expected",
    [(delete_spike_times, "spikes.times is missing"), (delete_trials, "could not read the trials object")],
    ids=["spikes.times", "trials"],
)
def test_missing_required_dataset_is_recorded_not_raised(cache, clean, tmp_path, fault, expected):
    settings, session, rebuild = cache
    out = tmp_path / "out"
    before, *_ = run(settings, out)  # a usable record first: it must not survive the fault
    assert before["usable"]
    fault(session)
    rebuild()
    status, on_disk, dropped, store = run(settings, out)
    assert status == on_disk and not status["usable"]
    assert expected in status["reason"] and "re-download" in status["reason"]
    assert status["subject"] == clean[0]["subject"] == "SIM-000"
    assert dropped["kind"].iloc[-1] == "session" and dropped["reason"].iloc[-1] == status["reason"]
    assert not is_usable(store)
    with pytest.raises(ValueError, match="unusable session"):
        open_binned(store)
    assert_one_line_values(status)
    assert list(status) == [c for c in SESSION_COLUMNS if c != "role"]


def test_unknown_eid_is_a_session_problem_but_no_cache_and_bad_align_event_raise(cache, tmp_path):
    settings, _, _ = cache
    unknown = "00000000-0000-4000-8000-000000000000"
    status, _, dropped, store = run(settings, tmp_path / "out", eid=unknown)
    assert not status["usable"] and "is not in the ONE cache" in status["reason"]
    assert dropped["kind"].tolist() == ["session"] and not is_usable(store)
    with pytest.raises(FileNotFoundError, match="no ONE cache"):
        run(OneSettings(mode="local", cache_dir=str(tmp_path / "nowhere")), tmp_path / "out2")
    with pytest.raises(KeyError, match="align_event"):
        run(settings, tmp_path / "out3", params=BinningParams(min_trials=20, align_event="stimOn_time"))


def test_download_records_an_unusable_session_instead_of_failing(cache, tmp_path):
    settings, session, rebuild = cache
    delete_trials(session)
    rebuild()
    summary = run_download_session(EID, settings, tmp_path / "download.json")
    assert summary == json.loads((tmp_path / "download.json").read_text())
    assert not summary["usable"] and "trials object" in summary["reason"] and "\n" not in summary["reason"]


# ------------------------------------------------------------------------------------------
# 3. NaN in a raw behaviour trace costs only the trials that reach into the gap
# ------------------------------------------------------------------------------------------


def wheel_files(session):
    return session / "alf" / "_ibl_wheel.timestamps.npy", session / "alf" / "_ibl_wheel.position.npy"


def trials_touching(raw, kept_ids, start, stop):
    """Kept trials with a bin centre strictly inside (start, stop)."""
    centres = raw.trials["stimOn_times"].to_numpy(float)[:, None] + np.arange(-0.49, 1.5, 0.02)[None, :]
    hit = ((centres > start) & (centres < stop)).any(axis=1)
    return {k for k in kept_ids if hit[k]}


def test_one_nan_wheel_sample_drops_only_the_trials_at_the_gap(cache, clean, tmp_path):
    settings, session, _ = cache
    ref_status, ref_dropped, ref_ds, raw = clean
    kept = set(ref_ds["trial"].values.tolist())
    ts_path, pos_path = wheel_files(session)
    ts, pos = np.load(ts_path), np.load(pos_path)
    align = raw.trials["stimOn_times"].to_numpy(float)
    # a sample whose neighbours are > 0.1 s apart, inside the window of a kept trial
    wide = np.flatnonzero(ts[2:] - ts[:-2] > 0.2) + 1
    inside = [i for i in wide if any((ts[i - 1] > align[k] - 0.5) and (ts[i + 1] < align[k] + 1.5) for k in kept)]
    i = inside[0]
    pos[i] = np.nan
    np.save(pos_path, pos)

    status, _, dropped, store = run(settings, tmp_path / "out")
    assert status["usable"], status["reason"]
    expected = trials_touching(raw, kept, ts[i - 1], ts[i + 1])
    assert expected, "the gap should reach into at least one kept trial"
    reasons = trial_reasons(dropped)
    newly = {k: r for k, r in reasons.items() if k not in trial_reasons(ref_dropped)}
    assert set(newly) == expected and set(newly.values()) == {"nan_wheel_speed"}
    assert status["n_trials_kept"] == ref_status["n_trials_kept"] - len(expected)
    assert "wheel: 1 NaN samples" in status["behaviour_gaps"] and "left as gaps" in status["behaviour_gaps"]
    # the other trials' wheel speed is that of the clean session away from the gap
    ds = open_binned(store)
    far = [k for k in ds["trial"].values.tolist() if abs(align[k] - ts[i]) > 5]
    assert len(far) > 10
    np.testing.assert_allclose(rad_per_s(ds, far), rad_per_s(ref_ds, far), atol=1e-4)


def rad_per_s(ds, trials):
    """Wheel speed of the given trials, unscaled."""
    var = ds["wheel_speed"]
    return var.sel(trial=trials).values * (var.attrs["scale_max"] - var.attrs["scale_min"]) + var.attrs["scale_min"]


def test_short_wheel_gap_is_interpolated_and_drops_nothing(cache, clean, tmp_path):
    settings, session, _ = cache
    ref_status, ref_dropped, ref_ds, raw = clean
    ts_path, pos_path = wheel_files(session)
    ts, pos = np.load(ts_path), np.load(pos_path)
    align = raw.trials["stimOn_times"].to_numpy(float)
    k = int(ref_ds["trial"].values[10])
    near = np.flatnonzero((ts > align[k]) & (ts < align[k] + 1.0))
    i = [j for j in near if ts[j + 1] - ts[j - 1] < 0.05][0]
    pos[i] = np.nan
    np.save(pos_path, pos)
    status, _, dropped, _ = run(settings, tmp_path / "out")
    assert status["usable"] and status["n_trials_kept"] == ref_status["n_trials_kept"]
    assert trial_reasons(dropped) == trial_reasons(ref_dropped)
    assert "1 stretch(es) <= 0.1 s interpolated" in status["behaviour_gaps"]
    # with no interpolation allowed, the same NaN is a gap and costs trial k
    no_fill = BinningParams(min_trials=20, max_behaviour_gap_s=0.0)
    status0, _, dropped0, _ = run(settings, tmp_path / "out0", params=no_fill)
    assert status0["usable"] and trial_reasons(dropped0).get(k) == "nan_wheel_speed"


def test_whisker_nan_stretch_drops_only_the_trials_at_the_gap(cache, clean, tmp_path):
    settings, session, _ = cache
    ref_status, ref_dropped, ref_ds, raw = clean
    kept = set(ref_ds["trial"].values.tolist())
    times = np.load(session / "alf" / "_ibl_leftCamera.times.npy")
    energy_path = session / "alf" / "leftCamera.ROIMotionEnergy.npy"
    energy = np.load(energy_path).astype(float)
    align = raw.trials["stimOn_times"].to_numpy(float)
    k = int(ref_ds["trial"].values[20])
    frames = np.flatnonzero((times > align[k]) & (times < align[k] + 0.5))
    energy[frames] = np.nan
    np.save(energy_path, energy)
    status, _, dropped, _ = run(settings, tmp_path / "out")
    assert status["usable"], status["reason"]
    expected = trials_touching(raw, kept, times[frames[0] - 1], times[frames[-1] + 1])
    newly = {t: r for t, r in trial_reasons(dropped).items() if t not in trial_reasons(ref_dropped)}
    assert k in expected and set(newly) == expected
    assert set(newly.values()) == {"nan_whisker_motion_energy"}
    assert f"whisker_motion_energy: {frames.size} NaN samples" in status["behaviour_gaps"]


def test_split_at_gaps_and_wheel_velocity_per_segment():
    t = np.arange(0.0, 10.0, 0.01)
    v = np.sin(t)
    v[100] = np.nan  # 0.02 s between valid neighbours: bridged
    v[500:560] = np.nan  # 0.61 s: a gap
    t[800] = np.nan  # a NaN time in a short stretch: bridged
    v[:3] = np.nan  # before the first valid sample
    segments, gaps = split_at_gaps(t, v, max_gap_s=0.1)
    assert len(segments) == 2 and segments[0][-1] == 499 and segments[1][0] == 560
    assert 100 not in segments[0] and 800 not in segments[1]
    assert len(gaps.filled) == 2 and gaps.kept[0][0] == -np.inf
    np.testing.assert_allclose(gaps.kept[1], (t[499], t[560]))
    jt, jv = join_segments([t[s] for s in segments], [v[s] for s in segments])
    got = sample_behaviour(jt, jv, np.array([1.0, 5.3, 8.0]), (0.0, 0.1), 0.02)
    assert np.isnan(got[1]).all() and np.isfinite(got[[0, 2]]).all()
    np.testing.assert_allclose(got[0], np.sin(1.01 + 0.02 * np.arange(5)), atol=2e-4)
    with pytest.raises(ValueError, match="max_behaviour_gap_s"):
        split_at_gaps(t, v, max_gap_s=-1)

    # wheel: without NaN, the per-segment velocity is brainbox's velocity of the whole trace
    from brainbox.behavior.wheel import interpolate_position, velocity_filtered

    ts = np.sort(np.random.default_rng(0).uniform(0, 20, 4000))
    pos = np.cumsum(np.random.default_rng(1).normal(0, 0.01, ts.size))
    times, vel, gaps = wheel_velocity(ts, pos)
    p_ref, t_ref = interpolate_position(ts, pos, freq=1000)
    np.testing.assert_array_equal(times, t_ref)
    np.testing.assert_array_equal(vel, velocity_filtered(p_ref, fs=1000, corner_frequency=20, order=8)[0])
    assert gaps.note() == ""
    # one NaN: the velocity stays finite away from the gap instead of NaN everywhere
    pos_nan = pos.copy()
    pos_nan[2000] = np.nan
    whole = velocity_filtered(interpolate_position(ts, pos_nan, freq=1000)[0], fs=1000)[0]
    assert np.isnan(whole[1:]).all()  # brainbox on the whole trace: one NaN poisons all of it
    times, vel, _ = wheel_velocity(ts, pos_nan, max_gap_s=0.0)
    assert np.isnan(vel).sum() == 1 and np.isfinite(vel).sum() > 0.99 * vel.size


# ------------------------------------------------------------------------------------------
# 4. every reason is one line
# ------------------------------------------------------------------------------------------


def test_one_line_collapses_and_keeps_both_ends():
    assert one_line("a\n  b\tc \r\n") == "a b c"
    long = "start " + "x" * 5000 + " fix: re-download"
    short = one_line(long, max_chars=200)
    assert len(short) <= 200 and short.startswith("start") and short.endswith("fix: re-download")
    head, rest = short.split(" [... ")
    cut, tail = rest.split(" characters cut ...] ")
    assert len(head) + int(cut) + len(tail) == len(long)


def test_multi_line_one_errors_give_one_line_rows(cache, tmp_path, monkeypatch):
    """ONE's ALFObjectNotFound text spans lines; a loader error may be very long."""
    from brainbox.io.one import SpikeSortingLoader

    settings, session, rebuild = cache
    delete_trials(session)
    rebuild()
    original = SpikeSortingLoader.load_spike_sorting

    def failing(self, *args, **kwargs):
        if self.pname == "probe01":
            raise OSError("could not open\n\tline two\n" + "detail " * 2000 + "\nlast line")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SpikeSortingLoader, "load_spike_sorting", failing)
    out = tmp_path / "out"
    status, on_disk, dropped, _ = run(settings, out)
    assert not status["usable"] and "ALFObjectNotFound" in status["reason"]
    assert_one_line_values(status)
    expected = "probe01: could not read the spike sorting (OSError: could not open line two detail"
    assert status["probes_dropped"].startswith(expected)
    assert len(status["probes_dropped"]) <= 600 and status["probes_dropped"].endswith("re-download them")
    assert "last line" in status["probes_dropped"] and "characters cut" in status["probes_dropped"]
    assert dropped["kind"].tolist() == ["probe", "session"]
    # the files themselves: one status row, one line per dropped row
    text = (out / "dropped" / f"{EID}.tsv").read_text()
    assert len(text.splitlines()) == 1 + len(dropped) == 3
    from neds.stages import run_summarize_sessions

    table = run_summarize_sessions([out / "status" / f"{EID}.json"], {EID: "pretrain"}, tmp_path / "sessions.tsv")
    assert len((tmp_path / "sessions.tsv").read_text().splitlines()) == 2 and len(table) == 1


# ------------------------------------------------------------------------------------------
# 5. provenance: spike sorting collection and revision, subject and lab
# ------------------------------------------------------------------------------------------


def test_provenance_of_the_spike_sorting_and_the_animal(cache, pristine, tmp_path):
    settings, session, rebuild = cache
    manifest = pristine[2].set_index("eid")
    # probe00's spike sorting in a revision folder, as the IBL server serves later releases
    folder = session / "alf" / "probe00" / "pykilosort"
    revised = folder / "#2024-05-06#"
    revised.mkdir()
    for path in folder.glob("*.*"):
        shutil.move(path, revised / path.name)
    rebuild()
    status, _, _, store = run(settings, tmp_path / "out")
    assert status["usable"]
    assert status["subject"] == manifest.loc[EID, "subject"] and status["lab"] == manifest.loc[EID, "lab"]
    assert status["spike_sorting"] == (
        "probe00: alf/probe00/pykilosort (sorter pykilosort, revision 2024-05-06) | "
        "probe01: alf/probe01/pykilosort (sorter pykilosort, revision none)"
    )
    attrs = open_binned(store).attrs
    assert attrs["subject"] == status["subject"] and attrs["lab"] == status["lab"]
    assert attrs["spike_sorting"] == [
        {
            "probe": "probe00",
            "collection": "alf/probe00/pykilosort",
            "revision": "2024-05-06",
            "requested_revision": None,
            "sorter": "pykilosort",
            "histology": "alf",
        },
        {
            "probe": "probe01",
            "collection": "alf/probe01/pykilosort",
            "revision": "",
            "requested_revision": None,
            "sorter": "pykilosort",
            "histology": "alf",
        },
    ]


# ------------------------------------------------------------------------------------------
# constant decoding targets: a legitimate session, recorded
# ------------------------------------------------------------------------------------------


def test_all_trials_unbiased_is_usable_and_noted(cache, clean, tmp_path):
    settings, session, _ = cache
    path = session / "alf" / "_ibl_trials.probabilityLeft.npy"
    np.save(path, np.full(np.load(path).shape, 0.5))
    status, _, _, store = run(settings, tmp_path / "out")
    assert status["usable"] and status["n_trials_kept"] == clean[0]["n_trials_kept"]
    assert status["constant_targets"] == "block (all 0.5)" and clean[0]["constant_targets"] == ""
    ds = open_binned(store)
    assert (ds["block"].values == 1).all() and ds.attrs["constant_targets"] == "block (all 0.5)"
