"""Beta series in Zarr: write and read a fitted :class:`~daskglm.BetaSeriesModel`'s beta series.

Layout (one flat Zarr group, written by xarray):

=================  ==========================  =====================================
variable           dims                        meaning
=================  ==========================  =====================================
``beta``           (trial, voxel)              every trial's beta
``effect_variance``(trial, voxel)              its variance
``dof``            (trial,)                    residual degrees of freedom of its model
``run``, ``onset``, ``duration``  (trial,)   the trials table (``trial_type`` in the attributes)
``design``         (run, scan, regressor)      each run's LSA design (NaN-padded)
``mask``           (x, y, z)                   the element space's mask
=================  ==========================  =====================================

Attributes: ``daskglm_kind = "beta_series"``, the model parameters (JSON),
the affine, the design columns and a surface / CIFTI geometry record
(:mod:`daskglm.store.geometry`).  A local store is written to a temporary
sibling directory and renamed into place, so a failed write never damages
an existing store; the target is checked again at that moment, so a store
created meanwhile is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from daskglm.betas.graph import BetaSeries
from daskglm.errors import StoreError
from daskglm.io.atomic import replace_directory
from daskglm.space.build import element_space
from daskglm.store.geometry import GEOMETRY_ATTR, geometry_attrs, geometry_from_json, geometry_variables
from daskglm.store.validate import check_affine, check_columns, check_mask_shape

__all__ = ["KIND", "write_beta_series", "read_beta_series", "is_beta_series"]

#: Root attribute ``daskglm_kind`` of a beta-series store.
KIND = "beta_series"
_TRIAL_COLUMNS = ("run", "trial_type", "onset", "duration")


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
    return value


def write_beta_series(result: BetaSeries, params: dict, store, overwrite: bool = False) -> None:
    """Write a beta series (computing it) to a Zarr store.

    Parameters
    ----------
    result : BetaSeries
    params : dict
        JSON-serialisable model parameters.
    store : str or path
    overwrite : bool
    """
    path = Path(store)
    _check_target(path, overwrite)
    space = result.space
    designs = result.designs
    n_max = max(d.shape[0] for d in designs)
    p_max = max(d.shape[1] for d in designs)
    design = np.full((len(designs), n_max, p_max), np.nan)
    for i, d in enumerate(designs):
        design[i, : d.shape[0], : d.shape[1]] = d.to_numpy()
    mask = space.mask if np.ndim(space.mask) == 3 else np.reshape(space.mask, (-1, 1, 1))
    trials = result.trials
    ds = xr.Dataset(
        {
            "beta": (("trial", "voxel"), _uniform_chunks(result.betas)),
            "effect_variance": (("trial", "voxel"), _uniform_chunks(result.variances)),
            "dof": (("trial",), _uniform_chunks(result.dof)),
            **{col: (("trial",), trials[col].to_numpy()) for col in _TRIAL_COLUMNS if col != "trial_type"},
            "design": (("run", "scan", "regressor"), design),
            "mask": (("x", "y", "z"), np.asarray(mask, dtype=bool)),
            **geometry_variables(space.geometry),
        },
        attrs={
            "daskglm_kind": KIND,
            "model_params": json.dumps({k: _jsonable(v) for k, v in params.items()}),
            "affine": json.dumps(np.asarray(space.affine).tolist()),
            "design_columns": json.dumps([[str(c) for c in d.columns] for d in designs]),
            "trial_types": json.dumps([str(t) for t in trials["trial_type"]]),  # no fixed-width strings in Zarr v3
            **geometry_attrs(space.geometry),
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        ds.to_zarr(tmp / "store.zarr", mode="w", consolidated=False)
        replace_directory(tmp / "store.zarr", path, overwrite, "beta series")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it.")


def _uniform_chunks(array):
    """``array`` with chunks Zarr can write: equal along each axis but the last (smaller) one.

    A beta series is concatenated run by run, so its trial-axis chunks are the
    runs' trial counts (e.g. ``(6, 9, 7)``); xarray's Zarr writer refuses them.
    Each axis is rechunked to its largest chunk (a numpy array is left as it is).
    """
    chunks = getattr(array, "chunks", None)
    if chunks is None or isinstance(array, np.ndarray):
        return array
    uniform = {}
    for axis, sizes in enumerate(chunks):
        if len(sizes) > 1 and (len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]):
            uniform[axis] = max(sizes)
    return array.rechunk(uniform) if uniform else array


def read_beta_series(store) -> tuple[BetaSeries, dict]:
    """A stored beta series (lazy, Zarr-backed) and its model parameters.

    Parameters
    ----------
    store : str or path

    Returns
    -------
    result : BetaSeries
    params : dict
        The stored model parameters.

    Raises
    ------
    FileNotFoundError
        If there is nothing at ``store``.
    daskglm.errors.StoreError
        If ``store`` is not a complete beta-series store (a missing or damaged
        attribute or array is named).
    """
    url = str(store)
    ds = _open(url)
    if ds.attrs.get("daskglm_kind") != KIND:
        raise StoreError(f"{url!r} is not a daskglm beta-series store.")
    missing = [name for name in _VARIABLES if name not in ds.variables]
    if missing:
        raise StoreError(f"{url!r}: the beta-series store lacks the array(s) {missing}; it is damaged "
                         "(rewrite it with to_zarr).")
    params = _json_attr(url, ds.attrs, "model_params", dict)
    if isinstance(params.get("signal_scaling"), list):
        params["signal_scaling"] = tuple(params["signal_scaling"])
    check_mask_shape(url, "mask", ds["mask"].shape)
    try:
        geometry = geometry_from_json(ds.attrs.get(GEOMETRY_ATTR), ds)
    except Exception as err:
        raise StoreError(f"{url!r}: {GEOMETRY_ATTR}: {err}") from err
    space = element_space(ds["mask"].values, check_affine(url, ds.attrs, "affine"), geometry,
                          params.get("smoothing_fwhm"))
    trial_types = _json_attr(url, ds.attrs, "trial_types", list)
    _check_sizes(url, ds, len(trial_types), space.n_elements)
    trials = pd.DataFrame({col: ds[col].values if col != "trial_type" else trial_types for col in _TRIAL_COLUMNS})
    columns = check_columns(url, ds.attrs, "design_columns", ds.sizes["run"])
    design = ds["design"].values
    designs = []
    for i, cols in enumerate(columns):
        if len(cols) > design.shape[2]:
            raise StoreError(f"{url!r}: design_columns[{i}]: {len(cols)} names for {design.shape[2]} regressors.")
        d = design[i][:, : len(cols)]
        designs.append(pd.DataFrame(d[~np.isnan(d).all(axis=1)], columns=cols))
    result = BetaSeries(ds["beta"].data, ds["effect_variance"].data, ds["dof"].data, trials, tuple(designs),
                        space)
    return result, params


#: Arrays a beta-series store must hold.
_VARIABLES = ("beta", "effect_variance", "dof", "run", "onset", "duration", "design", "mask")


def _open(url: str) -> xr.Dataset:
    if not os.path.isdir(url):
        if os.path.exists(url):
            raise StoreError(f"{url!r} is a file, not a beta-series store directory.")
        raise FileNotFoundError(f"No beta-series store at {url!r}.")
    try:
        return xr.open_zarr(url, consolidated=False)
    except Exception as err:  # zarr / xarray raise many kinds for a damaged store
        raise StoreError(f"{url!r} is not a readable beta-series store ({type(err).__name__}: {err}).") from err


def _json_attr(url: str, attrs: dict, name: str, kind: type):
    text = attrs.get(name)
    if not isinstance(text, str):
        raise StoreError(f"{url!r}: attribute {name!r} is missing or not JSON text; the beta-series store is "
                         "damaged (rewrite it with to_zarr).")
    try:
        value = json.loads(text)
    except ValueError as err:
        raise StoreError(f"{url!r}: attribute {name!r} is not valid JSON ({err}).") from err
    if not isinstance(value, kind):
        raise StoreError(f"{url!r}: attribute {name!r} must be a JSON {kind.__name__}, got "
                         f"{type(value).__name__}.")
    return value


def _check_sizes(url: str, ds: xr.Dataset, n_trials: int, n_voxels: int) -> None:
    """Every trial array against the trials listed and the mask's elements."""
    want = {"beta": (n_trials, n_voxels), "effect_variance": (n_trials, n_voxels), "dof": (n_trials,),
            **{col: (n_trials,) for col in _TRIAL_COLUMNS if col != "trial_type"}}
    for name, shape in want.items():
        if ds[name].shape != shape:
            raise StoreError(f"{url!r}: array {name!r} has shape {ds[name].shape}, expected {shape} "
                             f"({n_trials} trials in 'trial_types', {n_voxels} elements in the mask).")


def is_beta_series(store) -> bool:
    """Whether ``store`` is a beta-series store (by its ``daskglm_kind`` attribute)."""
    try:
        return zarr.open_group(str(store), mode="r").attrs.get("daskglm_kind") == KIND
    except Exception:  # not a Zarr group we can read: let the first-level reader name the problem
        return False
