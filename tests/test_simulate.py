"""Tests of the simulated IBL sessions: identities, ALF/ONE round trip, task and neural ground truth."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neds.simulate import SIM_REGIONS, SimulationConfig, session_eids, simulate_session, simulate_sessions

TINY = SimulationConfig(
    n_pretrain_sessions=1,
    n_heldout_sessions=1,
    n_units=(20, 20),
    n_trials=(60, 60),
    n_probes=(2, 2),
    seed=7,
    missing_datasets={1: ("motion_energy",)},
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """Two tiny sessions (two probes each; session 1 without motion energy) written to disk."""
    root = tmp_path_factory.mktemp("sim")
    manifest = simulate_sessions(root / "one_cache", root / "ground_truth", TINY)
    return root / "one_cache", root / "ground_truth", manifest


@pytest.fixture(scope="module")
def long_session():
    """One in-memory session long enough for block structure and region statistics."""
    config = SimulationConfig(
        n_pretrain_sessions=1, n_heldout_sessions=0, n_units=(80, 80), n_trials=(400, 400), n_probes=(1, 1), seed=3
    )
    return simulate_session(config, 0)


@pytest.fixture(scope="module")
def one(tiny):
    from one.api import One

    return One(cache_dir=str(tiny[0]), mode="local")


@pytest.fixture(scope="module")
def atlas():
    from iblatlas.atlas import BrainAtlas
    from iblatlas.regions import BrainRegions

    return BrainAtlas(
        image=np.zeros((1, 1, 1)), label=np.zeros((1, 1, 1), dtype=int), dxyz=[1e-5] * 3, regions=BrainRegions()
    )


def _text(values) -> np.ndarray:
    """Plain str array of a string variable read from Zarr (numpy StringDType cannot cast to 'U')."""
    return np.array(list(np.asarray(values)), dtype=str)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ ids


def test_session_eids_are_deterministic_distinct_and_accepted_by_one():
    from one.alf.spec import is_uuid_string

    eids = session_eids(0, 6)
    assert eids == session_eids(0, 6)
    assert len(set(eids)) == 6
    assert session_eids(0, 3) == eids[:3]  # index -> eid does not depend on the number of sessions
    assert not set(eids) & set(session_eids(1, 6))
    assert all(is_uuid_string(e) for e in eids)  # ONE rejects uuid5 ids


def test_config_rejects_unknown_missing_dataset_and_bad_index():
    with pytest.raises(ValueError, match="unknown.*choose from"):
        SimulationConfig(missing_datasets={0: ("pupil",)})
    with pytest.raises(ValueError, match="session 9"):
        SimulationConfig(missing_datasets={9: ("wheel",)})
    with pytest.raises(ValueError, match="whole number"):
        SimulationConfig(window_s=(-0.5, 1.51))


# ----------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_files(tiny, tmp_path):
    cache, truth, manifest = tiny
    again = simulate_sessions(tmp_path / "one_cache", tmp_path / "ground_truth", TINY)
    pd.testing.assert_frame_equal(manifest, again)
    first, second = _files(cache), _files(tmp_path / "one_cache")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    first, second = _files(truth), _files(tmp_path / "ground_truth")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_different_seed_gives_different_data():
    a = simulate_session(TINY, 0)
    b = simulate_session(SimulationConfig(**{**TINY.__dict__, "seed": TINY.seed + 1}), 0)
    assert a.eid != b.eid
    assert not np.array_equal(a.trials["stimOn_times"], b.trials["stimOn_times"])
    assert not np.array_equal(a.probes[0].spikes["times"][:100], b.probes[0].spikes["times"][:100])


# ------------------------------------------------------------------------------- ONE and loaders


def test_manifest_lists_sessions_with_roles(tiny):
    cache, truth, manifest = tiny
    assert list(manifest["eid"]) == session_eids(TINY.seed, 2)
    assert list(manifest["role"]) == ["pretrain", "heldout"]
    assert list(manifest["missing_datasets"]) == ["", "motion_energy"]
    assert (manifest["n_probes"] == 2).all() and (manifest["n_units"] == 20).all()
    on_disk = pd.read_csv(truth / "manifest.tsv", sep="\t", keep_default_na=False)
    pd.testing.assert_frame_equal(on_disk, manifest, check_dtype=False)
    assert all((cache / p).is_dir() for p in manifest["session_path"])


def test_one_and_brainbox_loaders_read_every_dataset_without_warnings(tiny, one, atlas, caplog):
    from brainbox.io.one import SessionLoader, SpikeSortingLoader

    cache, truth, manifest = tiny
    eid = manifest["eid"][0]
    assert {str(e) for e in one.search()} == set(manifest["eid"])
    for e, rel in zip(manifest["eid"], manifest["session_path"]):
        assert Path(one.eid2path(e)) == cache / rel
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        loader = SessionLoader(one=one, eid=eid)
        loader.load_trials()
        loader.load_wheel()
        loader.load_motion_energy(views=["left"])
        spikes = {}
        for probe in ("probe00", "probe01"):
            ssl = SpikeSortingLoader(one=one, eid=eid, pname=probe, atlas=atlas)
            spikes[probe] = ssl.load_spike_sorting(spike_sorter="pykilosort")
    assert [str(w.message) for w in caught if "ALF" in type(w.message).__name__] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

    assert len(loader.trials) == 60 and np.isnan(loader.trials["stimOn_times"]).any()
    assert {"velocity", "position"} <= set(loader.wheel.columns) and len(loader.wheel) > 1000
    assert loader.motion_energy["leftCamera"]["whiskerMotionEnergy"].size > 1000
    gt = xr.open_zarr(truth / f"{eid}.zarr", consolidated=False)
    for probe, (sp, clusters, channels) in spikes.items():
        in_probe = gt["probe"].values == probe
        assert clusters["channels"].size == in_probe.sum()
        assert sp["times"].size > 0 and np.all(np.diff(sp["times"]) >= 0)
        assert sp["clusters"].max() < clusters["channels"].size
        np.testing.assert_array_equal(
            np.asarray(channels["acronym"])[clusters["channels"]], _text(gt["allen_acronym"].values[in_probe])
        )
        np.testing.assert_array_equal(np.asarray(clusters["uuids"], dtype=str), _text(gt["unit_uuid"].values[in_probe]))


def test_missing_motion_energy_is_really_missing(tiny, one):
    from brainbox.io.one import SessionLoader
    from one.alf.exceptions import ALFObjectNotFound

    cache, _, manifest = tiny
    eid = manifest["eid"][1]
    datasets = one.list_datasets(eid)
    assert not any("leftCamera" in d for d in datasets)
    assert "alf/_ibl_wheel.position.npy" in datasets
    assert not list((cache / manifest["session_path"][1]).rglob("*Camera*"))
    loader = SessionLoader(one=one, eid=eid)
    with pytest.raises(ALFObjectNotFound):
        loader.load_motion_energy(views=["left"])


def test_datasets_table_has_real_sizes_hashes_and_default_revision(tiny):
    from iblutil.io.hashfile import md5
    from one.alf.cache import load_tables

    cache, _, manifest = tiny
    tables = load_tables(cache)
    dsets = tables["datasets"]
    assert dsets["default_revision"].all() and dsets["exists"].all()
    assert len(dsets.index.unique()) == len(dsets)
    sessions = tables["sessions"]
    for (eid, _), row in dsets.sample(5, random_state=0).iterrows():
        file = (
            cache
            / sessions.loc[eid, "lab"]
            / "Subjects"
            / sessions.loc[eid, "subject"]
            / str(sessions.loc[eid, "date"])
            / f"{sessions.loc[eid, 'number']:03d}"
            / row["rel_path"]
        )
        assert file.stat().st_size == row["file_size"]
        assert md5(file) == row["hash"]


# ------------------------------------------------------------------------------------- the task


def test_block_structure(long_session):
    p_left = long_session.trials["probabilityLeft"]
    assert np.all(p_left[:90] == 0.5)
    assert set(np.unique(p_left[90:])) == {0.2, 0.8}
    change = np.flatnonzero(np.diff(p_left[90:])) + 91  # first trial of each new block
    values = p_left[np.r_[90, change]]
    assert np.all(values[1:] != values[:-1])  # 0.2 and 0.8 alternate
    lengths = np.diff(np.r_[90, change, p_left.size])
    assert np.all((lengths[:-1] >= 20) & (lengths[:-1] <= 100))  # the last block is cut by the session end


def test_choices_follow_the_stimulus_and_the_block(long_session):
    tr = long_session.trials
    right = np.nan_to_num(tr["contrastRight"])
    left = np.nan_to_num(tr["contrastLeft"])
    easy = (np.maximum(right, left) >= 0.25) & (tr["choice"] != 0)
    stim_right = ~np.isnan(tr["contrastRight"])
    # IBL convention: stimulus on the right -> choice -1
    correct = np.where(stim_right, tr["choice"] == -1, tr["choice"] == 1)
    assert correct[easy].mean() > 0.8
    np.testing.assert_array_equal(tr["feedbackType"][tr["choice"] != 0] == 1, correct[tr["choice"] != 0])
    assert np.all(np.isnan(tr["contrastLeft"]) != np.isnan(tr["contrastRight"]))


def test_invalid_trials_of_every_kind(long_session):
    tr = long_session.trials
    nogo = tr["choice"] == 0
    assert nogo.any() and np.all(np.isnan(tr["firstMovement_times"][nogo]))
    assert np.isnan(tr["stimOn_times"]).any()
    assert np.isnan(tr["feedback_times"]).any()
    assert np.nanmax(tr["firstMovement_times"] - tr["stimOn_times"]) > 10.0
    n_invalid = (
        nogo
        | np.isnan(tr["stimOn_times"])
        | np.isnan(tr["feedback_times"])
        | (tr["firstMovement_times"] - tr["stimOn_times"] > 10)
    ).sum()
    assert 0.02 * tr["choice"].size <= n_invalid <= 0.05 * tr["choice"].size


def test_wheel_turns_in_the_choice_direction(long_session):
    tr, wheel = long_session.trials, long_session.wheel
    valid = (tr["choice"] != 0) & (tr["response_times"] - tr["firstMovement_times"] < 5)
    position = np.interp(tr["response_times"][valid], wheel["timestamps"], wheel["position"])
    turn = position - np.interp(tr["firstMovement_times"][valid], wheel["timestamps"], wheel["position"])
    assert np.mean(np.sign(turn) == -tr["choice"][valid]) > 0.95  # choice -1 turns counter-clockwise (+)
    steps = np.diff(wheel["position"]) / (2 * np.pi / 4096)
    assert np.allclose(steps, np.round(steps)) and np.all(steps != 0)  # encoder events only


def test_whisker_motion_energy_rises_with_movement(long_session):
    tr, cam = long_session.trials, long_session.camera
    valid = (tr["choice"] != 0) & ~np.isnan(tr["stimOn_times"])

    def me(t0, t1):
        values = cam["ROIMotionEnergy"]
        return np.array([values[(cam["times"] >= a) & (cam["times"] < b)].mean() for a, b in zip(t0, t1)])

    moving = me(tr["firstMovement_times"][valid], tr["firstMovement_times"][valid] + 0.3)
    still = me(tr["stimOn_times"][valid] - 0.2, tr["stimOn_times"][valid])
    assert np.mean(moving) > 1.2 * np.mean(still)


# ----------------------------------------------------------------------------- neural ground truth


def test_ground_truth_layout(tiny):
    _, truth, manifest = tiny
    ds = xr.open_zarr(truth / f"{manifest['eid'][0]}.zarr", consolidated=False)
    assert ds["expected_counts"].dims == ("trial", "time", "unit")
    assert ds["expected_counts"].shape == (60, 100, 20) and ds["expected_counts"].dtype == np.float32
    np.testing.assert_allclose(ds["time"].values, -0.49 + 0.02 * np.arange(100), atol=1e-9)
    assert ds.attrs["eid"] == manifest["eid"][0] and ds.attrs["window_s"] == [-0.5, 1.5]
    nan_trials = np.isnan(ds["stimOn_times"].values)
    counts = ds["expected_counts"].values
    assert nan_trials.any() and np.all(np.isnan(counts[nan_trials])) and not np.isnan(counts[~nan_trials]).any()
    probe = _text(ds["probe"].values)
    assert list(probe) == sorted(probe)  # probe00 units first, then probe01
    for p in np.unique(probe):
        np.testing.assert_array_equal(ds["cluster_id"].values[probe == p], np.arange((probe == p).sum()))


def test_spike_counts_match_expected_counts(tiny):
    cache, truth, manifest = tiny
    for eid, rel in zip(manifest["eid"], manifest["session_path"]):
        ds = xr.open_zarr(truth / f"{eid}.zarr", consolidated=False)
        expected = ds["expected_counts"].values.astype(np.float64)  # (K, T, U)
        stim = ds["stimOn_times"].values
        edges = stim[:, None] + np.r_[ds["time"].values - 0.01, ds["time"].values[-1] + 0.01][None, :]
        observed = np.zeros_like(expected)
        for p in np.unique(_text(ds["probe"].values)):
            folder = cache / rel / "alf" / p / "pykilosort"
            times = np.load(folder / "spikes.times.npy")
            clusters = np.load(folder / "spikes.clusters.npy")
            units = np.flatnonzero(_text(ds["probe"].values) == p)
            for cluster, unit in enumerate(units):
                t = times[clusters == cluster]
                idx = np.searchsorted(t, edges)  # (K, T + 1)
                observed[:, :, unit] = np.diff(idx, axis=1)
        valid = ~np.isnan(stim)
        exp_unit = expected[valid].sum(axis=(0, 1))
        obs_unit = observed[valid].sum(axis=(0, 1))
        assert exp_unit.min() > 20
        z = (obs_unit - exp_unit) / np.sqrt(exp_unit)  # Poisson z-score per unit
        assert np.abs(z).max() < 4.5
        assert abs(obs_unit.sum() - exp_unit.sum()) / np.sqrt(exp_unit.sum()) < 4
        # and the time course: trial-summed PSTH of all units follows the expectation
        psth_exp = expected[valid].sum(axis=(0, 2))
        psth_obs = observed[valid].sum(axis=(0, 2))
        assert np.abs((psth_obs - psth_exp) / np.sqrt(psth_exp)).max() < 4.5


def test_spike_times_follow_the_expected_time_course(long_session):
    s = long_session
    expected = s.expected_counts.astype(np.float64)
    stim = s.trials["stimOn_times"]
    valid = ~np.isnan(stim)
    edges = stim[valid, None] + np.r_[s.bin_centres_s - 0.01, s.bin_centres_s[-1] + 0.01][None, :]
    spikes = s.probes[0].spikes
    observed = np.zeros_like(expected[valid])
    for unit in range(expected.shape[2]):
        observed[:, :, unit] = np.diff(np.searchsorted(spikes["times"][spikes["clusters"] == unit], edges), axis=1)
    psth_exp, psth_obs = expected[valid].sum(axis=(0, 2)), observed.sum(axis=(0, 2))  # (T,) all units and trials
    z = (psth_obs - psth_exp) / np.sqrt(psth_exp)
    # chi2 / T is 1 +- 0.14 for T = 100 Poisson bins; a 20 ms misalignment gives about 5
    assert (z**2).mean() < 1.6 and np.abs(z).max() < 4.5


def test_unit_regions_are_targets_and_channels_map_to_them_via_beryl(tiny):
    from iblatlas.regions import BrainRegions

    regions = BrainRegions()
    cache, truth, manifest = tiny
    for eid, rel in zip(manifest["eid"], manifest["session_path"]):
        ds = xr.open_zarr(truth / f"{eid}.zarr", consolidated=False)
        assert set(_text(ds["region"].values)) <= set(SIM_REGIONS)
        for p in np.unique(_text(ds["probe"].values)):
            folder = cache / rel / "alf" / p / "pykilosort"
            ids = np.load(folder / "channels.brainLocationIds_ccf_2017.npy")
            chan = np.load(folder / "clusters.channels.npy")
            in_probe = _text(ds["probe"].values) == p
            beryl = regions.id2acronym(ids[chan], mapping="Beryl")
            np.testing.assert_array_equal(beryl, _text(ds["region"].values[in_probe]))
            # layer / sub-field ids (not the Beryl ids themselves) are on the channels
            assert len(set(ids) - set(regions.acronym2id(list(SIM_REGIONS)))) > len(SIM_REGIONS)
            # order along the probe from the tip: PO, LP, DG, CA1, VISa, then outside the brain
            y = np.load(folder / "channels.localCoordinates.npy")[:, 1]
            along = regions.id2acronym(ids[np.argsort(y, kind="stable")], mapping="Beryl")
            first_seen = list(dict.fromkeys(along))
            assert first_seen[:5] == ["PO", "LP", "DG", "CA1", "VISa"]
            assert set(first_seen[5:]) <= {"root", "void"}


def test_regions_differ_in_rates_and_stimulus_responses(long_session):
    s = long_session
    counts = s.expected_counts  # (K, T, U)
    regions = s.units["region"]
    time = s.bin_centres_s
    tr = s.trials
    contrast = np.nan_to_num(tr["contrastLeft"]) + np.nan_to_num(tr["contrastRight"])
    full = (contrast == 1.0) & ~np.isnan(tr["stimOn_times"])
    rate = np.nanmean(counts, axis=(0, 1)) / 0.02
    psth = counts[full].mean(axis=0)  # (T, U)
    evoked = psth[(time > 0.02) & (time < 0.12)].mean(axis=0) / psth[time < 0].mean(axis=0)
    by_region = {r: (np.median(rate[regions == r]), np.median(evoked[regions == r])) for r in SIM_REGIONS}
    assert all((regions == r).sum() >= 3 for r in SIM_REGIONS)
    assert by_region["LP"][0] > 2 * by_region["DG"][0] and by_region["PO"][0] > 2 * by_region["DG"][0]
    assert by_region["LP"][1] > by_region["CA1"][1] + 0.1 and by_region["VISa"][1] > by_region["DG"][1] + 0.1
    # trial-averaged rates are realistic: most units between 1 and 30 Hz
    assert np.mean((rate > 1) & (rate < 30)) > 0.75


def test_simulated_regions_are_the_probed_regions():
    """The simulator's anatomy is keyed by region name; its regions are the vocabulary's."""
    from neds.simulate.generative import SIM_REGIONS
    from neds.vocab import REGION_NAMES

    assert sorted(SIM_REGIONS) == sorted(REGION_NAMES)
