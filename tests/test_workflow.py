"""End-to-end: the data stage of the workflow on a tiny config in a temporary directory."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neds.config import session_lists, validate_config
from neds.io.store import is_usable, open_binned

ROOT = Path(__file__).resolve().parent.parent


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(ROOT / "config", workdir / "config")
    shutil.copy(ROOT / "tests" / "config" / "tiny.yaml", workdir / "config" / "config.yaml")
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_data_stage_outputs(run):
    import yaml

    config = validate_config(yaml.safe_load((run / "config" / "config.yaml").read_text()))
    pretrain, heldout = session_lists(config)
    table = pd.read_csv(run / "results" / "binned" / "sessions.tsv", sep="\t")
    assert sorted(table["eid"]) == sorted(pretrain + heldout)
    assert set(table.loc[table["eid"].isin(pretrain), "role"]) == {"pretrain"}
    # the session written without motion energy is skipped with its reason, the others are usable
    skipped = table.loc[table["eid"] == heldout[1]].iloc[0]
    assert not skipped["usable"] and "motion energy" in skipped["reason"]
    assert table.loc[table["eid"] != heldout[1], "usable"].all()
    assert not is_usable(run / "results" / "binned" / f"{heldout[1]}.zarr")

    for eid in pretrain + heldout[:1]:
        ds = open_binned(run / "results" / "binned" / f"{eid}.zarr")
        assert ds["spikes"].dims == ("trial", "time", "unit") and ds.sizes["time"] == 100
        assert ds["spikes"].dtype == np.uint16
        assert set(np.unique(ds["split"].values)) == {"train", "val", "test"}
        assert set(ds["unit_region"].values) <= {"VISa", "CA1", "DG", "LP", "PO"}
        for name in ("wheel_speed", "whisker_motion_energy"):
            v = ds[name].values
            assert np.nanmin(v) == 0.0 and np.nanmax(v) == 1.0 and not np.isnan(v).any()
        assert ds.attrs["eid"] == eid and ds.attrs["neds_version"]
        assert (ds["unit_firing_rate_hz"] > 2.0).all()
        dropped = pd.read_csv(run / "results" / "binned" / "dropped" / f"{eid}.tsv", sep="\t")
        row = table.set_index("eid").loc[eid]
        assert (dropped["kind"] == "trial").sum() == row["n_trials_total"] - row["n_trials_kept"]
        assert (dropped["kind"] == "unit").sum() == row["n_units_total"] - row["n_units_kept"]
        status = json.loads((run / "results" / "binned" / "status" / f"{eid}.json").read_text())
        assert status["usable"] and status["n_units_kept"] == ds.sizes["unit"]

    # binned counts agree with the simulator's ground truth in expectation
    eid = pretrain[0]
    ds = open_binned(run / "results" / "binned" / f"{eid}.zarr")
    truth = xr.open_zarr(run / "resources" / "simulated" / "ground_truth" / f"{eid}.zarr", consolidated=False).load()
    truth_units = {(p, c): i for i, (p, c) in enumerate(zip(truth["probe"].values, truth["cluster_id"].values))}
    idx = [truth_units[(p, c)] for p, c in zip(ds["unit_probe"].values, ds["unit_cluster_id"].values)]
    expected = truth["expected_counts"].values[ds["trial"].values][:, :, idx]
    observed = ds["spikes"].values.astype(float)
    total_exp, total_obs = expected.sum(), observed.sum()
    assert abs(total_obs - total_exp) < 5 * np.sqrt(total_exp)
    np.testing.assert_array_equal(ds["unit_region"].values, truth["region"].values[idx])


@pytest.mark.slow
def test_rerun_is_a_no_op_and_lint_is_clean(run):
    proc = snakemake(run, "--cores", "1", "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
