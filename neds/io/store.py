"""Reading and writing the binned Zarr stores and the session table.

Every store written by :func:`write_zarr` carries a content fingerprint in its attrs
(``attrs["fingerprint"]``): a SHA-256 checksum of each variable's decoded values (with its dims,
shape and dtype; text by its string content), of the other attrs, and a digest over them all.
Readers of binned stores (:func:`open_binned`) recompute it, so a chunk that was deleted (Zarr
reads it back as the fill value), altered or truncated is an error naming the store instead of
zeros or NaN in a model.

A binned store may hold each trial's spikes as events beside the counts (``spike_event_time``,
``spike_event_unit``, ``n_spike_events``; stores binned before neds stored them do not).
:func:`open_binned` checks that the events are exactly the spikes the counts count, whenever a
store holds them, and requires them only when asked to (``events=True``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from zarr.codecs import BloscCodec

from neds.data.binning import mismatched_trials
from neds.io.files import atomic_write

__all__ = [
    "text_array",
    "as_str",
    "open_zarr",
    "write_zarr",
    "open_binned",
    "is_usable",
    "write_unusable",
    "SESSION_COLUMNS",
    "write_table",
    "CorruptStoreError",
    "StoreValueError",
    "MissingEventsError",
    "EVENT_VARIABLES",
    "has_spike_events",
    "check_spike_events",
    "FINGERPRINT_ALGORITHM",
    "content_fingerprint",
    "store_fingerprint",
    "verify_store",
    "check_binned_values",
]

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
    "subject",
    "lab",
    "probes",
    "probes_dropped",
    "spike_sorting",
    "behaviour_gaps",
    "constant_targets",
)


def text_array(values) -> np.ndarray:
    """Variable-length strings (numpy StringDType), which Zarr v3 stores with a stable spec;
    fixed-width ``<U`` text has none (zarr's UnstableSpecificationWarning)."""
    return np.asarray([str(v) for v in values], dtype=np.dtypes.StringDType())


def as_str(values) -> np.ndarray:
    """Text read back from a store (numpy StringDType) as a plain ``<U`` array."""
    return np.asarray(values, dtype=object).astype(str)


def open_zarr(path: str | Path) -> xr.Dataset:
    """Open a Zarr store lazily: without dask (``chunks=None``), each variable is read when it is
    indexed or loaded, and no process pays for loading xarray's chunk managers. Snakemake leaves
    a ``.snakemake_timestamp`` file inside directory outputs; zarr warns about it, and the
    warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*snakemake_timestamp.*")
        return xr.open_zarr(path, consolidated=False, chunks=None)


FINGERPRINT_ALGORITHM = "sha256"
_SPLITS = ("train", "val", "test")
_LABELS = {"choice": (0, 1), "block": (0, 1, 2)}
_SCALED = ("wheel_speed", "whisker_motion_energy")
EVENT_VARIABLES = ("spike_event_time", "spike_event_unit", "n_spike_events")


class CorruptStoreError(ValueError):
    """A Zarr store whose content cannot be trusted: it does not match the fingerprint recorded
    when it was written (a deleted, altered or truncated chunk), it has no fingerprint, or a chunk
    cannot be decoded. The message names the store, the variables and how to rebuild it."""


class StoreValueError(CorruptStoreError):
    """A binned store whose values are outside their valid range (negative or non-integer spike
    counts, behaviour outside [0, 1] or not finite, labels outside their classes, unknown splits),
    or whose spike events are not the spikes its counts count."""


class MissingEventsError(ValueError):
    """A binned store asked for its spike events (``open_binned(..., events=True)``) that holds
    none: it was binned before neds stored them. The message names the store and how to rebuild it."""


def _is_binned(attrs: dict, names) -> bool:
    return "spikes" in names or "binning" in attrs or "usable" in attrs


def _rebuild_hint(path, attrs: dict, binned: bool) -> str:
    """How to rebuild a store: for a binned session, re-run bin_session for its eid."""
    if not binned:
        return (
            f"delete {path} and re-run the workflow step that wrote it (Snakemake rebuilds a missing "
            "output; or `snakemake --forcerun <rule>`)"
        )
    eid = attrs.get("eid") or Path(str(path)).name.removesuffix(".zarr")
    return (
        f"delete {path} and re-run bin_session for session {eid} (`rm -r {path}` and rerun the workflow, "
        f"`snakemake --forcerun bin_session`, or `python -m neds bin --eid {eid}`)"
    )


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(
        f"store attribute value {value!r} ({type(value).__name__}) is not JSON-serialisable; "
        "convert it to a number, string, list or dict before writing"
    )


def _canonical_attrs(attrs: dict) -> str:
    """The attrs (without the fingerprint) as canonical JSON: what Zarr stores and reads back."""
    return json.dumps({k: v for k, v in attrs.items() if k != "fingerprint"}, sort_keys=True, default=_jsonable)


def _is_text(dtype: np.dtype) -> bool:
    return dtype.kind in "OUST"


def _hash_variable(var: xr.Variable) -> str:
    """SHA-256 of one variable's dims, shape, dtype and values (text by its string content; every
    NaN hashed alike, since decoding may change a NaN's payload bits)."""
    h = hashlib.new(FINGERPRINT_ALGORITHM)
    values = np.asarray(var.values)
    if _is_text(values.dtype):
        h.update(json.dumps({"dims": list(var.dims), "shape": list(values.shape), "dtype": "text"}).encode())
        for v in values.reshape(-1):
            b = str(v).encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.hexdigest()
    values = np.ascontiguousarray(values)
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("<"))
    if values.dtype.kind in "fc":
        nan = np.isnan(values)
        if nan.any():
            values = np.where(nan, np.array(np.nan, dtype=values.dtype), values)
    h.update(json.dumps({"dims": list(var.dims), "shape": list(values.shape), "dtype": values.dtype.str}).encode())
    h.update(values.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _digest(variables: dict[str, str], attrs: str) -> str:
    h = hashlib.new(FINGERPRINT_ALGORITHM)
    for name in sorted(variables):
        h.update(f"{name}:{variables[name]}\n".encode())
    h.update(f"attrs:{attrs}\n".encode())
    return h.hexdigest()


def content_fingerprint(ds: xr.Dataset) -> dict:
    """The content fingerprint of a dataset (reads every value).

    Returns
    -------
    dict with ``algorithm`` ('sha256'), ``variables`` (name -> checksum of every data variable and
    coordinate), ``attrs`` (checksum of the attrs other than the fingerprint) and ``digest`` (over
    the sorted per-variable checksums and the attrs checksum): the value of ``attrs["fingerprint"]``
    in a store written by :func:`write_zarr`.
    """
    variables = {str(name): _hash_variable(var) for name, var in ds.variables.items()}
    attrs = hashlib.new(FINGERPRINT_ALGORITHM, _canonical_attrs(ds.attrs).encode()).hexdigest()
    return {
        "algorithm": FINGERPRINT_ALGORITHM,
        "variables": variables,
        "attrs": attrs,
        "digest": _digest(variables, attrs),
    }


def write_zarr(ds: xr.Dataset, path: str | Path, trial_chunk: int = 64) -> None:
    """Write a dataset as a Zarr v3 store, atomically (a temporary folder renamed into place),
    with its content fingerprint in ``attrs["fingerprint"]`` (:func:`content_fingerprint`).

    Variables with a ``trial`` dim are chunked by ``trial_chunk`` trials, so a training loader
    reads whole trials. Spike events (variables along ``spike_event``) are compressed with
    byte-shuffled zstd (Blosc): a third smaller than zstd alone, and faster to read (measured in
    bench/README.md, "Spike events"). The written store is read back and verified before it is
    renamed into place, so a store that exists at ``path`` decoded to exactly the values given.

    Raises
    ------
    TypeError
        If an attribute is not JSON-serialisable.
    ValueError
        If a variable does not read back as written (an encoding that changes its values).
    """
    path = Path(path)
    ds = ds.copy(deep=False)
    ds.attrs = json.loads(_canonical_attrs(ds.attrs))  # what Zarr stores: plain JSON types
    ds.attrs["fingerprint"] = content_fingerprint(ds)
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.ndim and "trial" in var.dims:
            encoding[name] = {
                "chunks": tuple(min(trial_chunk, s) if d == "trial" else s for d, s in zip(var.dims, var.shape))
            }
        elif var.dims == ("spike_event",):
            encoding[name] = {"compressors": (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),)}

    def write(tmp: Path) -> None:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
        problems = _mismatches(_load_checked(tmp), ds.attrs["fingerprint"])
        if problems:
            raise ValueError(
                f"writing {path}: the store does not read back as written ({'; '.join(problems)}); a variable's "
                "encoding changes its values (e.g. a dtype or scale in its .encoding): drop or fix it before writing"
            )

    atomic_write(path, write)


def write_unusable(path: str | Path, status: dict) -> None:
    """Write an empty store whose attrs say why the session is unusable (it keeps the DAG whole)."""
    attrs = {"usable": False, **{k: (v.item() if hasattr(v, "item") else v) for k, v in status.items()}}
    write_zarr(xr.Dataset(attrs=attrs), path)


def is_usable(path: str | Path) -> bool:
    """Whether a binned store holds data (False for the marker of an unusable session). Reads the
    attrs only; :func:`open_binned` verifies the content."""
    return bool(open_zarr(path).attrs.get("usable", True))


def store_fingerprint(path: str | Path) -> str:
    """The content digest recorded in a store when it was written (``attrs["fingerprint"]["digest"]``).

    Reads the attrs only, without verifying the values (:func:`verify_store` does).

    Raises
    ------
    CorruptStoreError
        If the store has no fingerprint (written by an older version of neds or by hand).
    """
    attrs = open_zarr(path).attrs
    recorded = attrs.get("fingerprint")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("digest"), str):
        raise CorruptStoreError(
            f"{path} has no content fingerprint (attrs['fingerprint']; written by an older version of neds "
            f"or by hand), so what it holds cannot be identified; {_rebuild_hint(path, attrs, _is_binned(attrs, ()))}"
        )
    return recorded["digest"]


def _load_checked(path: str | Path) -> xr.Dataset:
    """Open a store and load every variable, naming the store and variable a decode error is in."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no Zarr store at {path}; create it by running the workflow step that writes it")
    try:
        ds = open_zarr(path)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise CorruptStoreError(
            f"{path} cannot be opened as a Zarr store ({type(exc).__name__}: {exc}); "
            f"{_rebuild_hint(path, {}, Path(str(path)).parent.name == 'binned')}"
        ) from exc
    try:
        return ds.load()
    except MemoryError:
        raise
    except Exception as first:  # truncated or garbled chunk: zarr / numcodecs decode errors
        hint = _rebuild_hint(path, ds.attrs, _is_binned(ds.attrs, ds.variables))
        for name, var in ds.variables.items():  # again one variable at a time, to name it
            try:
                var.load()
            except MemoryError:
                raise
            except Exception as exc:
                raise CorruptStoreError(
                    f"{path} is corrupt: variable {name!r} cannot be decoded ({type(exc).__name__}: {exc}); {hint}"
                ) from exc
        raise CorruptStoreError(f"{path} cannot be read ({type(first).__name__}: {first}); {hint}") from first


def verify_store(ds_or_path: xr.Dataset | str | Path, where: str | Path | None = None) -> xr.Dataset:
    """Check a store's values against the fingerprint recorded when it was written.

    Parameters
    ----------
    ds_or_path : a store's path (opened and loaded here) or a dataset opened from one (loaded here)
    where : the store's name in error messages (default: the path, or the dataset's source)

    Returns
    -------
    xarray.Dataset, loaded and verified

    Raises
    ------
    CorruptStoreError
        If a chunk cannot be decoded, the store has no fingerprint, or a variable or the attrs do
        not match their recorded checksums (the message names them and how to rebuild the store).
    """
    if isinstance(ds_or_path, xr.Dataset):
        ds = ds_or_path
        where = where or ds.encoding.get("source", "<dataset>")
        try:
            ds.load()
        except MemoryError:
            raise
        except Exception as exc:
            raise CorruptStoreError(
                f"{where} is corrupt: a chunk cannot be decoded ({type(exc).__name__}: {exc}); "
                f"{_rebuild_hint(where, ds.attrs, _is_binned(ds.attrs, ds.variables))}"
            ) from exc
    else:
        ds = _load_checked(ds_or_path)
        where = where or ds_or_path
    hint = _rebuild_hint(where, ds.attrs, _is_binned(ds.attrs, ds.variables))
    recorded = ds.attrs.get("fingerprint")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("variables"), dict):
        raise CorruptStoreError(
            f"{where} has no content fingerprint (attrs['fingerprint']; written by an older version of neds or "
            f"by hand), so its content cannot be verified; {hint}"
        )
    if recorded.get("algorithm") != FINGERPRINT_ALGORITHM:
        raise CorruptStoreError(
            f"{where} records a fingerprint of unknown algorithm {recorded.get('algorithm')!r}; {hint}"
        )
    problems = _mismatches(ds, recorded)
    if problems:
        raise CorruptStoreError(
            f"{where} is corrupt: {'; '.join(problems)} recorded when it was written (a deleted chunk reads back "
            f"as the fill value, an altered one as other values); {hint}"
        )
    return ds


def _mismatches(ds: xr.Dataset, recorded: dict) -> list[str]:
    """How a loaded dataset differs from a recorded fingerprint (empty if it does not)."""
    now = content_fingerprint(ds)
    old = recorded["variables"]
    problems = []
    changed = sorted(n for n in old if n in now["variables"] and now["variables"][n] != old[n])
    missing = sorted(set(old) - set(now["variables"]))
    extra = sorted(set(now["variables"]) - set(old))
    if changed:
        problems.append(f"variable(s) {', '.join(changed)} differ from their checksums")
    if missing:
        problems.append(f"variable(s) {', '.join(missing)} are missing")
    if extra:
        problems.append(f"variable(s) {', '.join(extra)} were not in the written store")
    if now["attrs"] != recorded.get("attrs"):
        problems.append("its attrs differ from their checksum")
    if not problems and _digest(old, recorded.get("attrs", "")) != recorded.get("digest"):
        problems.append("the recorded digest does not match the recorded checksums")
    return problems


def check_binned_values(ds: xr.Dataset, where: str | Path | None = None) -> None:
    """Check the ranges of a binned store's values: ``spikes`` non-negative integers,
    ``wheel_speed`` and ``whisker_motion_energy`` finite and in [0, 1], ``choice`` in {0, 1},
    ``block`` in {0, 1, 2}, ``split`` in {train, val, test} (the variables present); and the spike
    events, when the store holds them (:func:`check_spike_events`).

    Raises
    ------
    StoreValueError
        Naming the store, each bad variable, how many of its values are bad, and the fix.
    """
    where = where or ds.encoding.get("source", "<dataset>")
    problems = []
    if "spikes" in ds.variables:
        spikes = ds["spikes"].values
        if spikes.dtype.kind not in "iu":
            problems.append(f"spikes has dtype {spikes.dtype}, not integer counts")
        elif spikes.dtype.kind == "i" and (n := int((spikes < 0).sum())):
            problems.append(f"spikes has {n} negative count(s)")
    for name in _SCALED:
        if name in ds.variables:
            v = ds[name].values
            bad_nonfinite = int((~np.isfinite(v)).sum())
            with np.errstate(invalid="ignore"):
                bad_range = int(((v < 0) | (v > 1)).sum())
            if bad_nonfinite:
                problems.append(f"{name} has {bad_nonfinite} non-finite value(s) (NaN or inf)")
            if bad_range:
                problems.append(f"{name} has {bad_range} value(s) outside [0, 1]")
    for name, allowed in _LABELS.items():
        if name in ds.variables and (n := int((~np.isin(ds[name].values, allowed)).sum())):
            problems.append(f"{name} has {n} value(s) outside the classes {set(allowed)}")
    if "split" in ds.variables and (n := int((~np.isin(as_str(ds["split"].values), _SPLITS)).sum())):
        problems.append(f"split has {n} value(s) other than {', '.join(_SPLITS)}")
    problems += _event_problems(ds)
    if problems:
        raise StoreValueError(
            f"binned store {where} holds invalid values: {'; '.join(problems)}. Its checksum matches, so they were "
            f"written so: check the session's raw data and the binning code, then {_rebuild_hint(where, ds.attrs, True)}"
        )


def open_binned(path: str | Path, events: bool = False) -> xr.Dataset:
    """Open a binned session store, verified and loaded.

    The values are checked against the store's content fingerprint (:func:`verify_store`) and,
    in the binned layout (a ``spikes`` variable), their ranges (:func:`check_binned_values`),
    the spike events included when the store holds them (:func:`check_spike_events`).

    Parameters
    ----------
    path : the store
    events : require the spike events (a store binned before neds stored them has none; without
        ``events`` it opens all the same, for the models that read counts only)

    Raises
    ------
    ValueError
        If the store marks an unusable session (its attrs give the reason).
    CorruptStoreError
        If the store cannot be decoded, has no fingerprint or does not match it; or
        :class:`StoreValueError` if its values are out of range or its spike events are not the
        spikes its counts count.
    MissingEventsError
        If ``events`` and the store holds no spike events.
    """
    ds = _load_checked(path)
    if not ds.attrs.get("usable", True):
        raise ValueError(f"{path} marks an unusable session: {ds.attrs.get('reason')}; use only usable sessions")
    verify_store(ds, where=path)
    if "spikes" in ds.data_vars:
        check_binned_values(ds, where=path)
    if events and not has_spike_events(ds):
        raise MissingEventsError(
            f"{path} holds no spike events ({', '.join(EVENT_VARIABLES)}): it was binned before neds stored them, "
            f"and a model that reads events (POYO+) needs them; to add them, {_rebuild_hint(path, ds.attrs, True)}"
        )
    return ds


def has_spike_events(ds: xr.Dataset) -> bool:
    """Whether a binned dataset holds spike events (all of :data:`EVENT_VARIABLES`)."""
    return all(name in ds.variables for name in EVENT_VARIABLES)


def check_spike_events(ds: xr.Dataset, where: str | Path | None = None) -> None:
    """Check a binned store's spike events against its counts (nothing to check without events).

    ``n_spike_events`` (trial) non-negative and summing to the length of ``spike_event_time`` and
    ``spike_event_unit`` (spike_event); every time finite and in the trial window
    ``[0, T * bin_size_s)`` (``attrs["binning"]["bin_size_s"]``); every unit in ``[0, U)``; and,
    trial by trial, the events' histogram over (bin, unit), with bin ``floor(time / bin_size_s)``
    (:func:`neds.data.binning.event_bins`), equal to ``spikes``. Vectorised: a few bincount passes
    over the events.

    Raises
    ------
    StoreValueError
        Naming the store, what is wrong (for a mismatch, the trials) and the fix.
    """
    where = where or ds.encoding.get("source", "<dataset>")
    problems = _event_problems(ds)
    if problems:
        raise StoreValueError(
            f"binned store {where} holds invalid spike events: {'; '.join(problems)}. Its checksum matches, so they "
            f"were written so: check the binning code, then {_rebuild_hint(where, ds.attrs, True)}"
        )


def _event_problems(ds: xr.Dataset) -> list[str]:
    """How a binned dataset's spike events are invalid (empty if valid or absent)."""
    present = [name for name in EVENT_VARIABLES if name in ds.variables]
    if not present:
        return []
    if len(present) < len(EVENT_VARIABLES):
        missing = [name for name in EVENT_VARIABLES if name not in present]
        return [f"the spike events are incomplete: {', '.join(present)} without {', '.join(missing)}"]
    time, unit, n = (ds[name] for name in EVENT_VARIABLES)
    problems = []
    for var, dim, kinds, what in (
        (time, "spike_event", "f", "float"),
        (unit, "spike_event", "iu", "integer"),
        (n, "trial", "iu", "integer"),
    ):
        if var.dims != (dim,) or var.dtype.kind not in kinds:
            problems.append(f"{var.name} has dims {var.dims} and dtype {var.dtype}, not ({dim},) {what}")
    if problems:
        return problems
    time, unit, n = time.values, unit.values, n.values.astype(np.int64)
    if (bad := int((n < 0).sum())) > 0:
        return [f"n_spike_events has {bad} negative count(s)"]
    if int(n.sum()) != time.size or unit.size != time.size:
        return [
            f"n_spike_events sums to {int(n.sum())}, but spike_event_time holds {time.size} and spike_event_unit "
            f"{unit.size} events"
        ]
    bin_size = (ds.attrs.get("binning") or {}).get("bin_size_s")
    if not isinstance(bin_size, (int, float)) or not bin_size > 0 or "time" not in ds.sizes:
        return ["no attrs['binning']['bin_size_s'] or time dimension, so the spike events cannot be placed in bins"]
    n_bins, n_units = int(ds.sizes["time"]), int(ds.sizes.get("unit", 0))
    length = n_bins * float(bin_size)
    with np.errstate(invalid="ignore"):
        bad_time = ~(time >= 0) | ~(time < length)
    if (bad := int(bad_time.sum())) > 0:
        problems.append(f"spike_event_time has {bad} value(s) outside the trial window [0, {length:g}) s")
    if (bad := int(((unit < 0) | (unit >= n_units)).sum())) > 0:
        problems.append(f"spike_event_unit has {bad} value(s) outside the unit indices [0, {n_units})")
    if problems or "spikes" not in ds.variables:
        return problems
    try:
        wrong = mismatched_trials(time, unit, n, ds["spikes"].values, float(bin_size))
    except ValueError as exc:  # a time just below the window's end that floor(time / bin_size) puts past it
        return [f"the spike events cannot be placed in the bins of spikes ({exc})"]
    if wrong.size:
        labels = ds["trial"].values[wrong] if "trial" in ds.variables else wrong
        shown = ", ".join(str(int(k)) for k in labels[:5]) + (", ..." if wrong.size > 5 else "")
        problems.append(
            f"the spike events of {wrong.size} trial(s) (trial {shown}) differ from their spike counts: their "
            "histogram over (bin, unit) is not spikes"
        )
    return problems


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a tab-separated table (no index), atomically (:func:`neds.io.files.atomic_write`)."""
    atomic_write(path, lambda tmp: df.to_csv(tmp, sep="\t", index=False))
