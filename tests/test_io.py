"""ONE local loading of simulated sessions through the brainbox loaders, Beryl mapping, bad input,
the binned-session assembly and the Zarr round trip."""

import shutil

import numpy as np
import pytest
import xarray as xr

from neds.data.session import BinningParams, bin_session
from neds.io.ibl import DatasetError, OneSettings, SessionNotFoundError, connect, load_session, to_beryl, with_retries
from neds.io.store import is_usable, open_binned, write_unusable, write_zarr
from neds.simulate import SimulationConfig, session_eids, simulate_sessions

SIM = SimulationConfig(
    n_pretrain_sessions=1,
    n_heldout_sessions=1,
    n_units=(20, 24),
    n_trials=(90, 100),
    n_probes=(2, 2),
    seed=3,
    missing_datasets={1: ("motion_energy",)},
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate_sessions(root / "one_cache", root / "ground_truth", SIM)
    return root


@pytest.fixture(scope="module")
def settings(sim):
    return OneSettings(mode="local", cache_dir=str(sim / "one_cache"))


@pytest.fixture(scope="module")
def raw(settings):
    return load_session(connect(settings), session_eids(SIM.seed, 2)[0], settings)


def test_one_local_loading_merges_probes(raw):
    assert set(raw.units["probe"]) == {"probe00", "probe01"}
    assert np.all(np.diff(raw.spike_times) >= 0)  # merged probes re-sorted
    assert raw.spike_units.min() >= 0 and raw.spike_units.max() < len(raw.units)
    # each probe's clusters are numbered from 0 and kept apart after the merge
    per_probe = raw.units.groupby("probe")["cluster_id"].apply(list)
    assert all(ids == list(range(len(ids))) for ids in per_probe)
    assert {"stimOn_times", "choice", "probabilityLeft", "firstMovement_times"} <= set(raw.trials.columns)
    assert raw.wheel is not None and raw.whisker is not None and raw.whisker_source == "leftCamera"
    assert not raw.missing


def test_beryl_mapping(raw):
    # channel acronyms carry layers / sub-fields; the Beryl regions are the five targets
    assert set(raw.units["region"]) <= {"VISa", "CA1", "DG", "LP", "PO"}
    assert raw.units["allen_acronym"].str.match(r"VISa\d|CA1s|DG-").any()
    np.testing.assert_array_equal(
        to_beryl(np.array([312782562, 407, 632, 218, 1020, -407])), ["VISa", "CA1", "DG", "LP", "PO", "CA1"]
    )


def test_missing_motion_energy_is_recorded_not_raised(settings):
    raw = load_session(connect(settings), session_eids(SIM.seed, 2)[1], settings)
    assert raw.whisker is None and "whisker_motion_energy" in raw.missing
    result = bin_session(raw, BinningParams())
    assert result.dataset is None and not result.status["usable"]
    assert "motion energy" in result.status["reason"]


def test_unknown_eid_is_a_clear_error(settings):
    with pytest.raises(SessionNotFoundError, match="not in the ONE cache"):
        load_session(connect(settings), "00000000-0000-4000-8000-000000000000", settings)


def test_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONE cache"):
        connect(OneSettings(mode="local", cache_dir=str(tmp_path / "nowhere")))


@pytest.mark.parametrize("dataset", ["spikes.times.npy", "_ibl_trials.stimOn_times.npy"])
def test_corrupt_or_missing_alf_file_is_named(sim, tmp_path, dataset):
    copy = tmp_path / "one_cache"
    shutil.copytree(sim / "one_cache", copy)
    settings = OneSettings(mode="local", cache_dir=str(copy))
    eid = session_eids(SIM.seed, 2)[0]
    # every probe's copy: a probe with corrupt spike sorting is left out, the session fails only
    # when no probe is left (tests/test_session_faults.py covers the one-bad-probe case)
    targets = sorted(connect(settings).eid2path(eid).rglob(dataset))
    assert targets
    for target in targets:
        target.write_bytes(b"not a numpy file")
    with pytest.raises(DatasetError, match="corrupt"):
        load_session(connect(settings), eid, settings)
    for target in targets:
        target.unlink()
    with pytest.raises(DatasetError):
        load_session(connect(settings), eid, settings)


def test_bin_session_and_zarr_round_trip(raw, tmp_path):
    params = BinningParams(min_firing_rate_hz=2.0)
    result = bin_session(raw, params, source="test")
    ds = result.dataset
    assert ds is not None and result.status["usable"]
    assert ds["spikes"].shape == (result.status["n_trials_kept"], 100, result.status["n_units_kept"])
    assert ds.attrs["n_trials_dropped"] == len(raw.trials) - ds.sizes["trial"]
    assert (result.dropped["kind"] == "unit").sum() == len(raw.units) - ds.sizes["unit"]
    # no kept trial fails a rule; the split covers every kept trial
    kept = raw.trials.iloc[ds["trial"].values]
    assert not kept["choice"].isin([0]).any() and kept["stimOn_times"].notna().all()
    # unit threshold: every kept unit above it, every dropped one not
    assert (ds["unit_firing_rate_hz"] > 2.0).all()
    path = tmp_path / "s.zarr"
    write_zarr(ds, path)
    back = open_binned(path)
    back.attrs.pop("fingerprint", None)  # the content checksum write_zarr adds
    xr.testing.assert_identical(back, ds)
    # provenance of what was read
    assert ds.attrs["subject"] == "SIM-000" and ds.attrs["lab"]
    assert [p["collection"] for p in ds.attrs["spike_sorting"]] == ["alf/probe00/pykilosort", "alf/probe01/pykilosort"]
    assert back["spikes"].dtype == np.uint16
    # the threshold is a config value: a higher one keeps fewer units
    fewer = bin_session(raw, BinningParams(min_firing_rate_hz=8.0)).dataset
    assert fewer.sizes["unit"] < ds.sizes["unit"]


def test_unusable_marker_round_trip(tmp_path):
    path = tmp_path / "bad.zarr"
    write_unusable(path, {"eid": "x", "reason": "no whisker motion energy", "n_trials_kept": np.int64(3)})
    assert not is_usable(path)
    with pytest.raises(ValueError, match="no whisker motion energy"):
        open_binned(path)


def test_retries_back_off_then_succeed_or_raise():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("server busy")
        return "ok"

    assert with_retries(flaky, retries=4, backoff_s=1.0, sleep=waits.append) == "ok"
    assert len(calls) == 3 and len(waits) == 2
    assert 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0  # backoff * 2**attempt * U(0.5, 1.5)
    with pytest.raises(ConnectionError):
        with_retries(
            lambda: (_ for _ in ()).throw(ConnectionError("down")), retries=2, backoff_s=0.0, sleep=waits.append
        )
    with pytest.raises(KeyError):  # not transient: no retry
        with_retries(lambda: {}["x"], retries=5, backoff_s=0.0, sleep=lambda s: pytest.fail("retried"))


def test_atomic_write_text_bytes_folders_and_failures(tmp_path):
    import json

    from neds.io.files import atomic_write, write_json

    out = tmp_path / "sub" / "summary.md"
    assert atomic_write(out, "mean ± s.e.m.\n") == out  # parents created, text as UTF-8
    assert out.read_bytes() == "mean ± s.e.m.\n".encode()
    atomic_write(out, b"\x00\x01")  # bytes replace the file
    assert out.read_bytes() == b"\x00\x01"

    def half_written(tmp):
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(out, half_written)
    assert out.read_bytes() == b"\x00\x01"  # the previous file, whole
    folder = tmp_path / "store.zarr"
    for n in (1, 2):  # a folder written by a function, then replaced
        atomic_write(folder, lambda tmp, n=n: (tmp.mkdir(), (tmp / "x").write_text(str(n))))
    assert (folder / "x").read_text() == "2"
    write_json({"path": tmp_path, "n": 1}, tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == {"path": str(tmp_path), "n": 1}
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []  # no temporary left behind
