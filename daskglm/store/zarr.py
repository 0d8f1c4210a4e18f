"""The results store: one Zarr group per fit, one subgroup per run, committed last.

The fit's Dataset (variables and attributes: :mod:`daskglm.store.schema`) is
split on disk (format version 2) so that runs can be written, and resumed, one
at a time::

    fit.zarr/
      zarr.json              root group; its attributes are the commit record:
                             daskglm_format, daskglm_format_version, daskglm_runs
                             (ordered run group names), daskglm_run_keys,
                             daskglm_shared, plus the dataset's own attributes
                             (affine, design_columns, model_params, daskglm_version)
      run0-1a2b3c4d/         one group per run: every variable with a ``run`` dim,
                             that run's slice, padding trimmed; attributes
                             daskglm_run_key (input identity + parameters + design
                             hash, :mod:`daskglm.store.keys`), daskglm_run_index,
                             daskglm_run_source and daskglm_run_complete
      run1-5e6f7a8b/
      shared-9c0d1e2f/       variables without a ``run`` dim (the mask, ...);
                             attributes daskglm_group and daskglm_run_complete

Atomicity.  A group counts only once its ``daskglm_run_complete`` attribute is
set, which is done after all of its arrays are written.  Locally a group is
written to a hidden temporary directory, marked, then renamed into place.  On
object stores (no rename) it is written in place and the marker is the last
object written.  The root ``zarr.json`` is written last of all (one atomic
``os.replace`` locally, one PUT on object stores), so a reader sees either the
previous complete fit or the new complete fit, never a half-written one.  Group
names are unique per write, so a commit never modifies a group that the
previous commit references; unreferenced groups are deleted after the commit.

Resume.  ``write_dataset(..., resume=True)`` reuses every complete run group
of the store whose ``daskglm_run_key`` equals the key of a run being written,
referenced or not (an interrupted write leaves complete but uncommitted run
groups behind), and computes only the others.

Attributes are JSON; no pickles.  Format version 1 (one flat group, written by
daskglm 0.1 before this layout) is still read.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import StoreError
from ..graph.state import FittedState
from ..kernels.fit import FitOptions
from .location import Location
from .schema import (
    AFFINE_ATTR,
    COLUMNS_ATTR,
    COMMIT_ATTRS,
    FORMAT_ATTR,
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_ATTR,
    GROUP_ATTR,
    PARAMS_ATTR,
    RUN_INDEX_ATTR,
    RUN_KEY,
    RUN_KEYS_ATTR,
    RUN_MARKER,
    RUN_SOURCE,
    RUNS_ATTR,
    SHARED_ATTR,
    TRIMMED_DIMS,
    fits_from_dataset,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RUN_MARKER",
    "StoreError",
    "WriteSummary",
    "write_dataset",
    "read_dataset",
    "read_fit",
    "complete_run_keys",
]


@dataclass
class WriteSummary:
    """What :func:`write_dataset` did.

    Attributes
    ----------
    store : str
        The store written (local path or URL).
    written : list of int
        Runs computed and written.
    reused : list of int
        Runs found complete in the store (same key) and not recomputed.
    """

    store: str
    written: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)


def _group_attrs(loc: Location, name: str) -> dict | None:
    """The attributes of group ``name``, or None if it is not a group."""
    meta = loc.read_json(f"{name}/zarr.json")
    if meta is None or meta.get("node_type") != "group":
        return None
    return meta.get("attributes", {})


def complete_run_keys(path, storage_options: dict | None = None) -> dict[str, str]:
    """Complete run groups of a store, as ``{run key: group name}``.

    Committed or not: an interrupted write leaves complete run groups that a
    resumed write reuses.

    Parameters
    ----------
    path : str or path
        Local directory or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec.

    Returns
    -------
    dict
        The first complete group (in name order) of each key.
    """
    loc = Location(path, storage_options)
    found: dict[str, str] = {}
    for name in loc.children():
        if name.startswith("."):
            continue
        attrs = _group_attrs(loc, name)
        if attrs and attrs.get(RUN_MARKER) is True and attrs.get(RUN_KEY):
            found.setdefault(attrs[RUN_KEY], name)
    return found


# ------------------------------------------------------------------ writing
def _regular_chunks(ds: xr.Dataset) -> xr.Dataset:
    """Zarr needs equal chunks (but the last); rechunk dask variables that lack them."""
    out = ds.copy()
    for name in list(out.variables):
        var = out.variables[name]
        chunks = getattr(var.data, "chunks", None)
        new = {}
        for dim, c in zip(var.dims, chunks or ()):
            if len(c) > 1 and (len(set(c[:-1])) > 1 or c[-1] > c[0]):
                new[dim] = max(c)
        if new:
            out[name] = var.chunk(new)
        out.variables[name].encoding = {}
    return out


def _split_runs(ds: xr.Dataset) -> tuple[list[xr.Dataset], xr.Dataset]:
    """Per-run datasets (padding trimmed) and the run-independent variables."""
    run_vars = [v for v in ds.data_vars if "run" in ds[v].dims]
    shared_vars = [v for v in ds.data_vars if "run" not in ds[v].dims]
    runs = []
    for i in range(ds.sizes["run"]):
        part = ds[run_vars].isel(run=i)
        part.attrs = {}
        cut = {}
        for dim, size_var in TRIMMED_DIMS.items():
            if dim in part.dims and size_var in part:
                cut[dim] = slice(0, int(np.asarray(part[size_var].values)))
        runs.append(_regular_chunks(part.isel(cut)))
    shared = ds[shared_vars]
    shared.attrs = {}
    return runs, _regular_chunks(shared)


def _set_group_attrs(loc: Location, name: str, extra: dict) -> None:
    meta = loc.read_json(f"{name}/zarr.json")
    if meta is None:
        raise StoreError(f"Group {name!r} of {loc.url!r} vanished while being written.")
    meta.setdefault("attributes", {}).update(extra)
    loc.write_json(f"{name}/zarr.json", meta)


def _finalize_group(_written, loc: Location, tmp_name: str | None, name: str) -> str:
    """Mark a fully written group complete; locally, then rename it into place."""
    if tmp_name is None:  # object store: the marker is the last object written
        _set_group_attrs(loc, name, {RUN_MARKER: True})
        return name
    _set_group_attrs(loc, tmp_name, {RUN_MARKER: True})
    os.rename(os.path.join(loc.url, tmp_name), os.path.join(loc.url, name))
    return name


def _write_group(loc: Location, name: str, part: xr.Dataset, attrs: dict):
    """Delayed write of one group; its value is the group name once complete."""
    from dask import delayed

    part = part.copy()
    part.attrs = dict(attrs)
    if loc.local:
        tmp_name = f".tmp-{name}"
        written = part.to_zarr(loc.child(tmp_name), mode="w", zarr_format=3,
                               consolidated=False, compute=False)
    else:
        tmp_name = None
        written = part.to_zarr(loc.url, group=name, mode="w", zarr_format=3, consolidated=False,
                               compute=False, storage_options=loc.storage_options or None)
    return delayed(_finalize_group, pure=False)(written, loc, tmp_name, name)


def _commit(loc: Location, attrs: dict, run_keys: list, shared_name: str, run_names: list,
            shared_done: str) -> str:
    """Write the root record (the commit), then delete groups it does not reference."""
    root_attrs = dict(attrs)
    root_attrs.update({
        FORMAT_ATTR: FORMAT_NAME,
        FORMAT_VERSION_ATTR: FORMAT_VERSION,
        RUNS_ATTR: list(run_names),
        RUN_KEYS_ATTR: list(run_keys),
        SHARED_ATTR: shared_done,
    })
    loc.write_json("zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": root_attrs})
    keep = set(run_names) | {shared_name}
    for name in loc.children():
        if name not in keep:
            loc.remove(name)
    return loc.url


def _summary(_committed, summary: WriteSummary) -> WriteSummary:
    return summary


def write_dataset(
    ds: xr.Dataset,
    path,
    overwrite: bool = False,
    compute: bool = True,
    storage_options: dict | None = None,
    resume: bool = False,
    run_keys: list[str] | None = None,
    run_sources: list[dict] | None = None,
):
    """Write a fit dataset to ``path`` (local directory or fsspec URL), atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        The fit, as :func:`daskglm.store.schema.fits_to_dataset` builds it (lazy).
    path : str or path
        Local directory or fsspec URL (``s3://bucket/fit.zarr``, ``gs://...``).
    overwrite : bool, default=False
        Replace an existing store; the old fit stays readable until the new
        one is committed.
    compute : bool, default=True
        If False, return a :class:`dask.delayed.Delayed` that writes and
        commits the store (its value is the :class:`WriteSummary`).
    storage_options : dict, optional
        Passed to fsspec (e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}``).
    resume : bool, default=False
        Reuse the store's complete run groups whose key matches ``run_keys``
        and compute only the other runs.  Runs that do not match are
        replaced.
    run_keys : list of str, optional
        One key per run (see :func:`daskglm.store.keys.run_key`); without keys
        nothing is reused.
    run_sources : list of dict, optional
        Input identity of each run, recorded in its group.

    Returns
    -------
    WriteSummary or dask.delayed.Delayed
    """
    from dask import delayed

    loc = Location(path, storage_options)
    if loc.exists() and not (overwrite or resume):
        raise FileExistsError(
            f"{loc.url!r} already exists; pass overwrite=True to replace it, or resume=True "
            "to keep its complete runs and fit the rest."
        )
    n_runs = ds.sizes["run"]
    keys = list(run_keys) if run_keys is not None else [None] * n_runs
    sources = list(run_sources) if run_sources is not None else [None] * n_runs
    if len(keys) != n_runs or len(sources) != n_runs:
        raise ValueError(f"{len(keys)} run keys / {len(sources)} sources for {n_runs} runs.")
    existing = complete_run_keys(loc.url, loc.storage_options) if resume and loc.exists() else {}
    loc.makedirs()
    runs, shared = _split_runs(ds)
    summary = WriteSummary(store=loc.url)
    names = []
    stamp = uuid.uuid4().hex[:8]
    for i, (part, key, source) in enumerate(zip(runs, keys, sources)):
        if key is not None and key in existing:
            names.append(existing[key])
            summary.reused.append(i)
            continue
        attrs = {RUN_KEY: key or f"unkeyed-{uuid.uuid4().hex}", RUN_INDEX_ATTR: i,
                 RUN_SOURCE: json.dumps(source, default=str)}
        names.append(_write_group(loc, f"run{i}-{stamp}", part, attrs))
        summary.written.append(i)
    shared_name = f"shared-{stamp}"
    shared_done = _write_group(loc, shared_name, shared, {GROUP_ATTR: "shared"})
    stored_keys = [k if k is not None else "" for k in keys]
    committed = delayed(_commit, pure=False)(
        loc, dict(ds.attrs), stored_keys, shared_name, names, shared_done
    )
    result = delayed(_summary, pure=False)(committed, summary)
    if not compute:
        return result
    try:
        return result.compute()
    except BaseException:
        _discard(loc, [f"run{i}-{stamp}" for i in summary.written] + [shared_name])
        raise


def _discard(loc: Location, names: list[str]) -> None:
    """Remove the groups (and their temporaries) of a failed write; they are unreferenced."""
    for name in names:
        for candidate in (name, f".tmp-{name}"):
            try:
                loc.remove(candidate)
            except Exception:  # best effort: the next commit collects leftovers
                pass


# ------------------------------------------------------------------ reading
def _check_version(path, fmt, version) -> None:
    if fmt != FORMAT_NAME:
        raise StoreError(
            f"{str(path)!r} is not a complete daskglm fit store "
            f"(format attribute {fmt!r}, expected {FORMAT_NAME!r})."
        )
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise StoreError(
            f"{str(path)!r} was written in daskglm store format version {version!r}; "
            f"this daskglm reads versions 1 to {FORMAT_VERSION}. Upgrade daskglm to open it."
        )


def _pad_to(part: xr.Dataset, sizes: dict) -> xr.Dataset:
    widths = {d: (0, sizes[d] - part.sizes[d]) for d in sizes if d in part.dims and sizes[d] > part.sizes[d]}
    if not widths:
        return part
    out = part.copy()
    for name, var in part.data_vars.items():
        w = {d: widths[d] for d in var.dims if d in widths}
        if w:
            fill = np.nan if np.issubdtype(var.dtype, np.floating) else 0
            out[name] = var.pad(w, constant_values=fill)
    return out


def _open_group(loc: Location, name: str) -> xr.Dataset:
    return xr.open_zarr(loc.child(name), consolidated=False, zarr_format=3,
                        storage_options=None if loc.local else (loc.storage_options or None))


def read_dataset(path, storage_options: dict | None = None) -> xr.Dataset:
    """Open a fit store lazily, check its format and that it is complete.

    Parameters
    ----------
    path : str or path
        Local directory or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec.

    Returns
    -------
    xarray.Dataset
        Lazy (dask-backed), in the layout of :mod:`daskglm.store.schema`;
        its ``daskglm_run_keys`` attribute lists the runs' keys (JSON).
    """
    loc = Location(path, storage_options)
    if loc.local and not os.path.isdir(loc.url):
        if os.path.exists(loc.url):
            raise StoreError(f"{loc.url!r} is a file, not a daskglm store directory.")
        raise FileNotFoundError(f"No daskglm store at {loc.url!r}.")
    try:
        root = loc.read_json("zarr.json")
    except (ValueError, OSError) as err:
        raise StoreError(f"{loc.url!r} is not a readable Zarr store: {err}") from err
    if root is None:
        if not loc.local and not loc.exists():
            raise FileNotFoundError(f"No daskglm store at {loc.url!r}.")
        raise StoreError(
            f"{loc.url!r} is not a complete daskglm fit store (no committed root group); "
            "a write may be in progress or was interrupted (resume it with resume=True)."
        )
    attrs = root.get("attributes", {})
    _check_version(loc.url, attrs.get(FORMAT_ATTR), attrs.get(FORMAT_VERSION_ATTR))
    if attrs[FORMAT_VERSION_ATTR] == 1:
        return _read_v1(loc)
    names, keys = attrs.get(RUNS_ATTR), attrs.get(RUN_KEYS_ATTR)
    if not names or keys is None or len(keys) != len(names):
        raise StoreError(f"{loc.url!r} has a malformed commit record (daskglm_runs).")
    parts = []
    for name, key in zip(names, keys):
        try:
            part = _open_group(loc, name)
        except FileNotFoundError as err:
            raise StoreError(f"{loc.url!r}: run group {name!r} is missing ({err}).") from err
        if part.attrs.get(RUN_MARKER) is not True or (key and part.attrs.get(RUN_KEY) != key):
            raise StoreError(f"{loc.url!r}: run group {name!r} is incomplete or does not match "
                             "the commit record.")
        part.attrs = {}
        parts.append(part)
    sizes = {d: max(p.sizes.get(d, 0) for p in parts) for d in TRIMMED_DIMS}
    parts = [_pad_to(p, sizes) for p in parts]
    ds = xr.concat(parts, dim="run", data_vars="all", coords="minimal", compat="override",
                   join="override")
    shared = _open_group(loc, attrs[SHARED_ATTR])
    if shared.attrs.get(RUN_MARKER) is not True:
        raise StoreError(f"{loc.url!r}: group {attrs[SHARED_ATTR]!r} is incomplete.")
    for name in shared.data_vars:
        ds[name] = shared[name]
    ds.attrs = {k: v for k, v in attrs.items() if k not in COMMIT_ATTRS}
    ds.attrs[RUN_KEYS_ATTR] = json.dumps(keys)
    return ds


def _read_v1(loc: Location) -> xr.Dataset:
    try:
        return xr.open_zarr(loc.url, consolidated=None,
                            storage_options=None if loc.local else (loc.storage_options or None))
    except Exception as err:
        raise StoreError(f"{loc.url!r} is not a readable Zarr store: {err}") from err


def read_fit(store, storage_options: dict | None = None) -> tuple[FittedState, dict]:
    """Read a fit store back as a fitted state (lazily), with its model parameters.

    Parameters
    ----------
    store : str or path
        Local directory or fsspec URL, as written by :func:`write_dataset`.
    storage_options : dict, optional
        Passed to fsspec.

    Returns
    -------
    state : daskglm.graph.state.FittedState
        Dask-backed runs read from the store (``persisted=True``: the store is
        the persisted state), with the stored run keys.
    params : dict
        The model parameters the fit was made with (``signal_scaling`` as a
        tuple if it is a pair).

    Raises
    ------
    StoreError
        If the store is not a complete daskglm fit, has an unknown format
        version or lacks the daskglm metadata.
    """
    ds = read_dataset(store, storage_options=storage_options)
    try:
        params = json.loads(ds.attrs[PARAMS_ATTR])
        columns = json.loads(ds.attrs[COLUMNS_ATTR])
        affine = np.asarray(json.loads(ds.attrs[AFFINE_ATTR]))
    except (KeyError, ValueError) as err:
        raise StoreError(f"{str(store)!r} lacks the daskglm metadata ({err}).") from err
    if "signal_scaling" in params and isinstance(params["signal_scaling"], list):
        params["signal_scaling"] = tuple(params["signal_scaling"])
    mask = np.asarray(ds["mask"].values, dtype=bool)
    options = FitOptions(params.get("noise_model", "ar1"), 0, whitening=params.get("whitening", "binned"))
    fits, designs = fits_from_dataset(ds, columns, options.cov_kind)
    keys = json.loads(ds.attrs.get(RUN_KEYS_ATTR, "null"))
    state = FittedState(
        runs=tuple(fits), designs=tuple(designs), mask=mask, affine=affine,
        smoothing_fwhm=params.get("smoothing_fwhm"), persisted=True,
        run_keys=tuple(keys) if keys else None,
    )
    return state, params
