"""Reading a store: validated on open, verified chunk by chunk (layout: :mod:`daskglm.store.zarr`).

:func:`read_dataset` checks the commit record, every group name, every
attribute the reader uses and every array's metadata and chunk files
(:mod:`daskglm.store.validate`, :mod:`daskglm.store.integrity`) before it
returns a lazy Dataset whose chunks are read through
:class:`~daskglm.store.integrity.VerifiedArray`.  Format 3 stores carry a
CRC-32C per chunk and every chunk; format 2 stores (no checksums, empty
chunks not written) are read without the chunk checks; format 1 stores (one
flat group) are read only by ``daskglm migrate STORE``, which rewrites older
stores in format 3.
"""

from __future__ import annotations

import json
import os

import dask.array as da
import numpy as np
import xarray as xr

from daskglm.errors import StoreError
from daskglm.graph.state import FittedState
from daskglm.kernels.fit import FitOptions
from daskglm.space.build import element_space
from daskglm.store import validate as V
from daskglm.store.geometry import GEOMETRY_ATTR, geometry_from_json, mesh_variable_specs
from daskglm.store.integrity import VerifiedArray, check_array_meta, check_chunks_present
from daskglm.store.location import Location
from daskglm.store.schema import (
    AFFINE_ATTR,
    COLUMNS_ATTR,
    COMMIT_ATTRS,
    FORMAT_ATTR,
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_ATTR,
    PARAMS_ATTR,
    RUN_KEY,
    RUN_KEYS_ATTR,
    RUN_MARKER,
    RUNS_ATTR,
    SHARED_ATTR,
    TRIMMED_DIMS,
    fits_from_dataset,
)

__all__ = ["read_dataset", "read_fit", "CHECKSUM_VERSION"]

#: First format version with chunk checksums and all chunks written.
CHECKSUM_VERSION = 3


def _check_version(path, fmt, version) -> None:
    if fmt != FORMAT_NAME:
        raise StoreError(
            f"{str(path)!r} is not a complete daskglm fit store "
            f"(format attribute {fmt!r:.80}, expected {FORMAT_NAME!r})."
        )
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise StoreError(
            f"{str(path)!r} was written in daskglm store format version {version!r:.40}; "
            f"this daskglm reads versions 1 to {FORMAT_VERSION}. Upgrade daskglm to open it."
        )


def _root_attrs(loc: Location) -> dict:
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
    attrs = root.get("attributes") if isinstance(root, dict) else None
    if not isinstance(attrs, dict):
        raise StoreError(f"{loc.url!r}: zarr.json: the root group has no attributes object.")
    return attrs


def _specs(loc: Location, group: str, variables: dict, optional: dict, checksums: bool) -> dict:
    """Checked metadata of a group's arrays (required ones must exist)."""
    specs = {}
    for var, (dims, kinds) in {**variables, **optional}.items():
        try:
            meta = loc.read_json(f"{group}/{var}/zarr.json")
        except (ValueError, OSError) as err:
            raise StoreError(f"{loc.url!r}: array {group}/{var}: unreadable metadata ({err})") from err
        if meta is None:
            if var in optional:
                continue
            raise StoreError(f"{loc.url!r}: array {group}/{var} is missing.")
        spec = check_array_meta(loc.url, f"{group}/{var}", meta, checksums)
        if spec.dims != dims or spec.kind not in kinds:
            raise StoreError(f"{loc.url!r}: array {group}/{var}: dims {spec.dims} / kind {spec.kind!r} "
                             f"where {dims} / {kinds!r} are expected.")
        if checksums:
            check_chunks_present(loc, spec)
        specs[var] = spec
    return specs


def _group_meta(loc: Location, name: str, key: str | None) -> None:
    try:
        meta = loc.read_json(f"{name}/zarr.json")
    except (ValueError, OSError) as err:
        raise StoreError(f"{loc.url!r}: group {name!r}: unreadable metadata ({err})") from err
    if meta is None:
        raise StoreError(f"{loc.url!r}: run group {name!r} is missing.")
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not isinstance(attrs, dict) or attrs.get(RUN_MARKER) is not True or (
            key and attrs.get(RUN_KEY) != key):
        raise StoreError(f"{loc.url!r}: run group {name!r} is incomplete or does not match "
                         "the commit record.")


def _verified(loc, spec, valid_range=None, checksums=True):
    arr = VerifiedArray(loc, spec, valid_range, checksums)
    return da.from_array(arr, chunks=spec.chunks or (), asarray=False,
                         name=f"daskglm-store-{loc.url}-{spec.path}")


def _open_group(loc: Location, name: str, specs: dict, ranges: dict, checksums: bool) -> xr.Dataset:
    """The group as xarray opens it (coordinates included), its known arrays verified."""
    try:
        part = xr.open_zarr(loc.child(name), consolidated=False, zarr_format=3,
                            storage_options=None if loc.local else (loc.storage_options or None))
    except Exception as err:
        raise StoreError(f"{loc.url!r}: group {name!r} cannot be opened ({type(err).__name__}: {err})") \
            from err
    out = {}
    for var, spec in specs.items():
        out[var] = part[var].copy(data=_verified(loc, spec, ranges.get(var), checksums)) \
            if var in part else None
        if out[var] is None:
            raise StoreError(f"{loc.url!r}: array {name}/{var} is not readable by xarray.")
    extra = {v: part[v] for v in part.data_vars if v not in out}
    ds = xr.Dataset({**out, **extra}, coords=part.coords)
    ds.attrs = {}
    return ds


def _pad_to(part: xr.Dataset, sizes: dict) -> xr.Dataset:
    """Pad every variable of ``part`` to ``sizes`` (NaN for floats), building a new Dataset."""
    widths = {d: (0, sizes[d] - part.sizes[d]) for d in sizes if d in part.dims and sizes[d] > part.sizes[d]}
    if not widths:
        return part
    variables = {}
    for name, var in part.data_vars.items():
        w = {d: widths[d] for d in var.dims if d in widths}
        fill = np.nan if np.issubdtype(var.dtype, np.floating) else 0
        variables[name] = var.pad(w, constant_values=fill) if w else var
    coords = {k: v for k, v in part.coords.items() if not set(v.dims) & set(widths)}
    return xr.Dataset(variables, coords=coords, attrs=part.attrs)


def read_dataset(path, storage_options: dict | None = None, *, allow_format_1: bool = False) -> xr.Dataset:
    """Open a fit store lazily after validating it completely.

    Parameters
    ----------
    path : str or path
        Local directory or fsspec URL.
    storage_options : dict, optional
        Passed to fsspec.
    allow_format_1 : bool, default=False
        Format 1 stores cannot be validated like later formats: they are read
        only for ``daskglm migrate`` (:func:`daskglm.store.migrate.migrate_store`);
        otherwise they are a :class:`StoreError` asking for the migration.

    Returns
    -------
    xarray.Dataset
        Lazy (dask-backed), in the layout of :mod:`daskglm.store.schema`;
        its ``daskglm_run_keys`` attribute lists the runs' keys (JSON).

    Raises
    ------
    StoreError
        Naming the store and the field, for anything malformed, missing,
        inconsistent or (when read) corrupt.
    """
    loc = Location(path, storage_options)
    attrs = _root_attrs(loc)
    _check_version(loc.url, attrs.get(FORMAT_ATTR), attrs.get(FORMAT_VERSION_ATTR))
    version = attrs[FORMAT_VERSION_ATTR]
    if version == 1:
        if not allow_format_1:
            raise StoreError(f"{loc.url!r} is a format 1 store: run `daskglm migrate {loc.url}` to rewrite it "
                             f"in store format {FORMAT_VERSION} (format 1 stores are not read otherwise).")
        return _read_v1(loc)
    checksums = version >= CHECKSUM_VERSION
    names, keys, shared_name = V.check_commit(loc.url, attrs, RUNS_ATTR, RUN_KEYS_ATTR, SHARED_ATTR)
    params = V.check_params(loc.url, attrs, PARAMS_ATTR)
    columns = V.check_columns(loc.url, attrs, COLUMNS_ATTR, len(names))
    V.check_affine(loc.url, attrs, AFFINE_ATTR)
    _group_meta(loc, shared_name, None)
    shared_specs = _specs(loc, shared_name, V.SHARED_VARIABLES, mesh_variable_specs(), checksums)
    V.check_mask_shape(loc.url, f"{shared_name}/mask", shared_specs["mask"].shape)
    shared = _open_group(loc, shared_name, shared_specs, {}, checksums)
    n_voxels = int(np.asarray(shared["mask"].data.sum().compute(scheduler="sync")))
    parts = []
    for i, (name, key) in enumerate(zip(names, keys)):
        _group_meta(loc, name, key)
        specs = _specs(loc, name, V.RUN_VARIABLES, V.OPTIONAL_RUN_VARIABLES, checksums)
        part = _open_group(loc, name, specs, {}, checksums)
        scalars = {v: part[v].data.compute(scheduler="sync") for v in ("n_scans", "n_regressors",
                                                                          "df_residuals")}
        sizes = V.check_run_sizes(loc.url, name, specs, scalars, n_voxels, params, len(columns[i]))
        part["cov_index"] = part["cov_index"].copy(
            data=_verified(loc, specs["cov_index"], (0, sizes["cov_entry"]), checksums))
        parts.append(part)
    optional = set.intersection(*[set(p.data_vars) & set(V.OPTIONAL_RUN_VARIABLES) for p in parts])
    parts = [p.drop_vars([v for v in V.OPTIONAL_RUN_VARIABLES if v in p and v not in optional])
             for p in parts]
    sizes = {d: max(p.sizes.get(d, 0) for p in parts) for d in TRIMMED_DIMS}
    parts = [_pad_to(p, sizes) for p in parts]
    try:
        ds = xr.concat(parts, dim="run", data_vars="all", coords="minimal", compat="override",
                       join="override")
    except ValueError as err:
        raise StoreError(f"{loc.url!r}: the run groups do not fit together ({err}).") from err
    for name in shared.data_vars:
        ds[name] = shared[name]
    ds.attrs = {k: v for k, v in attrs.items() if k not in COMMIT_ATTRS}
    ds.attrs[RUN_KEYS_ATTR] = json.dumps(keys)
    ds.attrs["daskglm_store_format_version"] = version
    return ds


def _read_v1(loc: Location) -> xr.Dataset:
    try:
        ds = xr.open_zarr(loc.url, consolidated=None,
                          storage_options=None if loc.local else (loc.storage_options or None))
    except Exception as err:
        raise StoreError(f"{loc.url!r} is not a readable Zarr store: {err}") from err
    missing = [v for v in (*V.RUN_VARIABLES, "mask") if v not in ds]
    if missing or "run" not in ds.dims:
        raise StoreError(f"{loc.url!r}: format 1 store lacks {missing or ['the run dim']}.")
    return ds


def read_fit(store, storage_options: dict | None = None,
             param_names=None) -> tuple[FittedState, dict]:
    """Read a fit store back as a fitted state (lazily), with its model parameters.

    Parameters
    ----------
    store : str or path
        Local directory or fsspec URL, as written by :func:`~daskglm.store.zarr.write_dataset`.
    storage_options : dict, optional
        Passed to fsspec.
    param_names : iterable of str, optional
        The model parameters that may be stored; any other is a
        :class:`StoreError` (``open_model`` passes ``FirstLevelModel``'s).

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
        If the store is not a complete, valid daskglm fit or has an unknown
        format version.
    """
    ds = read_dataset(store, storage_options=storage_options)
    url = Location(store, storage_options).url
    params = V.check_params(url, ds.attrs, PARAMS_ATTR)
    unknown = sorted(set(params) - set(param_names)) if param_names is not None else []
    if unknown:
        raise StoreError(f"{url!r}: {PARAMS_ATTR}: unknown model parameter(s) {unknown}.")
    columns = V.check_columns(url, ds.attrs, COLUMNS_ATTR, ds.sizes["run"])
    affine = V.check_affine(url, ds.attrs, AFFINE_ATTR)
    if "signal_scaling" in params and isinstance(params["signal_scaling"], list):
        params["signal_scaling"] = tuple(params["signal_scaling"])
    geometry = _geometry(url, ds.attrs.get(GEOMETRY_ATTR), ds)  # surface / CIFTI fits
    space = element_space(ds["mask"].values, affine, geometry, params.get("smoothing_fwhm"))
    options = FitOptions(params.get("noise_model", "ar1"), 0, whitening=params.get("whitening", "binned"))
    fits, designs = fits_from_dataset(ds, columns, options.cov_kind)
    keys = json.loads(ds.attrs.get(RUN_KEYS_ATTR, "null"))
    state = FittedState(runs=tuple(fits), designs=tuple(designs), space=space, persisted=True,
                        run_keys=tuple(keys) if keys else None)
    return state, params


def _geometry(url: str, text, ds):
    """The stored surface / CIFTI geometry; any problem with it is a StoreError naming the store and field."""
    try:
        return geometry_from_json(text, ds)  # a non-standard mesh: the shared group's mesh_* arrays
    except Exception as err:
        raise StoreError(f"{url!r}: {GEOMETRY_ATTR}: {err}") from err
