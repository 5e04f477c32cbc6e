"""Reading and writing the binned Zarr stores and the session table."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["text_array", "as_str", "open_zarr", "write_zarr", "open_binned", "is_usable", "write_unusable", "SESSION_COLUMNS", "write_table"]

SESSION_COLUMNS = (
    "eid",
    "role",
    "usable",
    "reason",
    "n_trials_total",
    "n_trials_kept",
    "n_units_total",
    "n_units_kept",
    "source",
    "whisker_source",
)


def text_array(values) -> np.ndarray:
    """Variable-length strings (numpy StringDType), which Zarr v3 stores with a stable spec;
    fixed-width ``<U`` text has none (zarr's UnstableSpecificationWarning)."""
    return np.asarray([str(v) for v in values], dtype=np.dtypes.StringDType())


def as_str(values) -> np.ndarray:
    """Text read back from a store (numpy StringDType) as a plain ``<U`` array."""
    return np.asarray(values, dtype=object).astype(str)


def open_zarr(path: str | Path) -> xr.Dataset:
    """Open a Zarr store lazily. Snakemake leaves a ``.snakemake_timestamp`` file inside directory
    outputs; zarr warns about it, and the warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*snakemake_timestamp.*")
        return xr.open_zarr(path, consolidated=False)


def _atomic_dir_write(path: Path, write) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_zarr(ds: xr.Dataset, path: str | Path, trial_chunk: int = 64) -> None:
    """Write a dataset as a Zarr v3 store, atomically (a temporary folder renamed into place).

    Variables with a ``trial`` dim are chunked by ``trial_chunk`` trials, so a training loader
    reads whole trials.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.ndim and "trial" in var.dims:
            encoding[name] = {"chunks": tuple(min(trial_chunk, s) if d == "trial" else s for d, s in zip(var.dims, var.shape))}
    _atomic_dir_write(path, lambda tmp: ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=encoding))


def write_unusable(path: str | Path, status: dict) -> None:
    """Write an empty store whose attrs say why the session is unusable (it keeps the DAG whole)."""
    attrs = {"usable": False, **{k: (v.item() if hasattr(v, "item") else v) for k, v in status.items()}}
    write_zarr(xr.Dataset(attrs=attrs), path)


def is_usable(path: str | Path) -> bool:
    """Whether a binned store holds data (False for the marker of an unusable session)."""
    return bool(open_zarr(path).attrs.get("usable", True))


def open_binned(path: str | Path, load: bool = True) -> xr.Dataset:
    """Open a binned session store.

    Raises
    ------
    ValueError
        If the store marks an unusable session (its attrs give the reason).
    """
    ds = open_zarr(path)
    if not ds.attrs.get("usable", True):
        raise ValueError(f"{path} marks an unusable session: {ds.attrs.get('reason')}; use only usable sessions")
    return ds.load() if load else ds


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a tab-separated table atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)
