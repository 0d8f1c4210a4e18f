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
an existing store.
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
from daskglm.space.build import element_space
from daskglm.store.geometry import GEOMETRY_ATTR, geometry_attrs, geometry_from_json, geometry_variables

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
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it.")
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
            "beta": (("trial", "voxel"), result.betas),
            "effect_variance": (("trial", "voxel"), result.variances),
            "dof": (("trial",), result.dof),
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
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            os.replace(path, old)
            os.replace(tmp / "store.zarr", path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp / "store.zarr", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_beta_series(store) -> tuple[BetaSeries, dict]:
    """A stored beta series (lazy, Zarr-backed) and its model parameters."""
    ds = xr.open_zarr(str(store), consolidated=False)
    if ds.attrs.get("daskglm_kind") != KIND:
        raise StoreError(f"{str(store)!r} is not a daskglm beta-series store.")
    params = json.loads(ds.attrs["model_params"])
    if isinstance(params.get("signal_scaling"), list):
        params["signal_scaling"] = tuple(params["signal_scaling"])
    geometry = geometry_from_json(ds.attrs.get(GEOMETRY_ATTR), ds)
    space = element_space(ds["mask"].values, np.array(json.loads(ds.attrs["affine"])), geometry,
                          params.get("smoothing_fwhm"))
    trials = pd.DataFrame({col: ds[col].values if col != "trial_type" else json.loads(ds.attrs["trial_types"])
                           for col in _TRIAL_COLUMNS})
    columns = json.loads(ds.attrs["design_columns"])
    design = ds["design"].values
    designs = []
    for i, cols in enumerate(columns):
        d = design[i][:, : len(cols)]
        designs.append(pd.DataFrame(d[~np.isnan(d).all(axis=1)], columns=cols))
    result = BetaSeries(ds["beta"].data, ds["effect_variance"].data, ds["dof"].data, trials, tuple(designs),
                        space)
    return result, params


def is_beta_series(store) -> bool:
    """Whether ``store`` is a beta-series store (by its ``daskglm_kind`` attribute)."""
    try:
        return zarr.open_group(str(store), mode="r").attrs.get("daskglm_kind") == KIND
    except Exception:  # not a Zarr group we can read: let the first-level reader name the problem
        return False
