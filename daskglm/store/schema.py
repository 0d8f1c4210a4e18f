"""The fit as one xarray Dataset (the store's layout), and back.

A fit is handled as one lazy :class:`xarray.Dataset`, voxels flat in the
mask's C order (unmasked only on export).  Runs may differ in scans and
regressors; such dims are NaN-padded to the largest run (and trimmed again
on disk, see :mod:`daskglm.store.zarr`).

The store holds no coordinates.  ``FirstLevelModel.results_`` (for fitted
and reopened models alike) adds them from the mask, affine and column names
(:func:`add_coordinates`): ``run`` labels, ``regressor`` names, the voxels'
``i, j, k`` and world ``x, y, z`` (mm); there the mask's dims are named
``mask_i, mask_j, mask_k``.

=================  ==============================  =====================================
variable           dims                            meaning
=================  ==============================  =====================================
beta               run, regressor, voxel           whitened GLS parameter estimates
dispersion         run, voxel                      residual variance SSE / (n - p)
ar_coef            run, ar_lag, voxel              AR coefficients used for whitening
                                                   (``max(order, 1)`` lags; 0 for OLS)
cov_index          run, voxel                      row of cov_table for each voxel
                                                   (AR(1)-binned fits)
cov_table          run, cov_entry, regressor,      pinv(WX) pinv(WX)^T per AR(1) bin; for
                   regressor_b                     binned arN and exact fits the
                                                   design-only Gram stack the per-voxel
                                                   covariance is rebuilt from
design             run, scan, regressor            design matrix
n_scans            run                             scans per run
n_regressors       run                             columns per run
df_residuals       run                             n - rank(X)
mask               x, y, z                         the analysis mask
acf_before         run, acf_lag, voxel             optional: OLS residual
                                                   autocorrelation, lags 1..k
acf_after          run, acf_lag, voxel             optional: whitened residual
                                                   autocorrelation, lags 1..k
signal_mean        run, voxel                      optional: time mean of the signal
                                                   before scaling
=================  ==============================  =====================================

The optional variables are written only when every run has them:
``acf_before``/``acf_after`` when the fit kept whitening diagnostics,
``signal_mean`` always by current fits (older stores may lack it).

=================  =====================================================================
attribute          value (JSON text)
=================  =====================================================================
affine             the 4 x 4 affine of the runs
design_columns     the design's column names, one list per run
model_params       ``FirstLevelModel.get_params()``
daskglm_version    the daskglm version that wrote the fit (plain text)
daskglm_run_keys   the runs' resume keys (set by :func:`~daskglm.store.zarr.read_dataset`)
=================  =====================================================================

The constants below name the store's format and the attributes of its groups.
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from daskglm._version import __version__
from daskglm.graph.state import RunFit
from daskglm.store.geometry import geometry_attrs, geometry_variables

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RUN_KEY",
    "RUN_SOURCE",
    "RUN_MARKER",
    "fits_to_dataset",
    "fits_from_dataset",
    "add_coordinates",
    "run_labels",
    "MASK_GRID_DIMS",
]

#: Value of the root group's ``daskglm_format`` attribute.
FORMAT_NAME = "daskglm-first-level-fit"
#: Highest store format version written and read (version 1: one flat group; version 2:
#: one group per run; version 3: as 2, with a CRC-32C per chunk and every chunk written).
FORMAT_VERSION = 3

# attributes of the root group (the commit record)
FORMAT_ATTR = "daskglm_format"
FORMAT_VERSION_ATTR = "daskglm_format_version"
RUNS_ATTR = "daskglm_runs"  # ordered run group names
RUN_KEYS_ATTR = "daskglm_run_keys"  # the runs' keys (a list on disk, JSON text in the Dataset)
SHARED_ATTR = "daskglm_shared"  # name of the group of the variables without a run dim
#: root attributes that belong to the commit record, not to the Dataset
COMMIT_ATTRS = (RUNS_ATTR, RUN_KEYS_ATTR, SHARED_ATTR)

# attributes of the run groups
RUN_KEY = "daskglm_run_key"
RUN_SOURCE = "daskglm_run_source"
RUN_MARKER = "daskglm_run_complete"
RUN_INDEX_ATTR = "daskglm_run_index"
GROUP_ATTR = "daskglm_group"  # "shared" on the shared group

# attributes of the Dataset (see the table above)
AFFINE_ATTR = "affine"
COLUMNS_ATTR = "design_columns"
PARAMS_ATTR = "model_params"
PACKAGE_VERSION_ATTR = "daskglm_version"

#: dims trimmed to a run's own size on disk, and the variable giving that size
TRIMMED_DIMS = {"regressor": "n_regressors", "regressor_b": "n_regressors", "scan": "n_scans"}


def fits_to_dataset(
    fits: list[RunFit], designs: list[pd.DataFrame], space, params: dict, coords: bool = False,
) -> xr.Dataset:
    """The fit as one lazy Dataset with a ``run`` dim, in the layout of this module.

    With ``coords=True`` (``FirstLevelModel.results_``) the Dataset also gets
    coordinates (:func:`add_coordinates`); the store is written without
    them, and they are rebuilt from the element space and column names on
    reading, so a round trip keeps them.

    Parameters
    ----------
    fits : sequence of RunFit
        One per run.
    designs : sequence of pandas.DataFrame
        The runs' design matrices.
    space : daskglm.space.base.ElementSpace
        The fit's element space: its mask (a 1-D element mask is kept as an
        (N, 1, 1) grid) and affine; a surface / CIFTI space's geometry is
        recorded as JSON in the ``surface_geometry`` attribute, a
        non-standard mesh as ``mesh_*`` arrays (:mod:`daskglm.store.geometry`).
    params : dict
        The model parameters (JSON-serialisable).
    coords : bool, default=False
        Add the coordinates (:func:`add_coordinates`).

    Returns
    -------
    xarray.Dataset
        Lazy; runs that differ in scans or regressors are NaN-padded.
    """
    mask, affine = space.mask, space.affine
    p_max = max(f.beta.shape[0] for f in fits)
    n_max = max(f.n_scans for f in fits)

    def pad_p(arr, axes):
        pads = [(0, 0)] * arr.ndim
        for ax in axes:
            pads[ax] = (0, p_max - arr.shape[ax])
        return da.pad(arr, pads, constant_values=np.nan) if any(p[1] for p in pads) else arr

    beta = da.stack([pad_p(f.beta, [0]) for f in fits])
    cov_table = da.stack([pad_p(f.cov_table, [1, 2]) for f in fits])
    design_array = np.full((len(fits), n_max, p_max), np.nan)
    for i, d in enumerate(designs):
        design_array[i, : d.shape[0], : d.shape[1]] = d.to_numpy()
    ds = xr.Dataset(
        {
            "beta": (("run", "regressor", "voxel"), beta),
            "dispersion": (("run", "voxel"), da.stack([f.dispersion for f in fits])),
            "ar_coef": (("run", "ar_lag", "voxel"), da.stack([f.ar_coef for f in fits])),
            "cov_index": (("run", "voxel"), da.stack([f.cov_index for f in fits])),
            "cov_table": (("run", "cov_entry", "regressor", "regressor_b"), cov_table),
            "design": (("run", "scan", "regressor"), design_array),
            "n_scans": (("run",), np.array([f.n_scans for f in fits])),
            "n_regressors": (("run",), np.array([f.beta.shape[0] for f in fits])),
            "df_residuals": (("run",), np.array([f.df_residuals for f in fits])),
            "mask": (("x", "y", "z"), mask if np.ndim(mask) == 3 else np.reshape(mask, (-1, 1, 1))),
            **_acf_variables(fits),
            **_optional_run_variables(fits, ("signal_mean",)),
            **geometry_variables(space.geometry),  # a non-standard mesh's arrays (store/geometry.py)
        },
        attrs={
            AFFINE_ATTR: json.dumps(np.asarray(affine).tolist()),
            COLUMNS_ATTR: json.dumps([[_jsonable(c) for c in f.columns] for f in fits]),
            PARAMS_ATTR: json.dumps(params),
            PACKAGE_VERSION_ATTR: __version__,
            **geometry_attrs(space.geometry),
        },
    )
    return add_coordinates(ds, [f.columns for f in fits], space) if coords else ds


#: dims of the mask in a Dataset with coordinates (``x, y, z`` name world coordinates there)
MASK_GRID_DIMS = ("mask_i", "mask_j", "mask_k")


def run_labels(n_runs: int) -> list[str]:
    """Labels of the ``run`` coordinate: ``run-1``, ``run-2``, ..."""
    return [f"run-{i + 1}" for i in range(n_runs)]


def add_coordinates(ds: xr.Dataset, columns: list[list], space) -> xr.Dataset:
    """Coordinates of a fit Dataset, for ``sel`` by label.

    * ``run``: ``run-1``, ``run-2``, ...
    * ``regressor`` and ``regressor_b``: the design's column names when all
      runs share them and they are unique; otherwise (runs that differ, or
      duplicated names as nilearn allows) a 2-D ``regressor_name`` (run,
      regressor) coordinate ("" in the padding) and positional ``regressor``.
    * ``voxel``: the space's coordinates (volumes: voxel indices ``i, j, k``
      and world ``x, y, z`` in mm, :func:`daskglm.io.coords.voxel_coords`).
    * the mask's grid dims are renamed :data:`MASK_GRID_DIMS` (``x, y, z``
      name the voxels' world coordinates).
    """
    grid = {"x": MASK_GRID_DIMS[0], "y": MASK_GRID_DIMS[1], "z": MASK_GRID_DIMS[2]}
    ds = ds.rename_dims({k: v for k, v in grid.items() if k in ds.dims})  # surface fits: no grid
    names = [[str(c) for c in cols] for cols in columns]
    new = {"run": ("run", run_labels(ds.sizes["run"]), {"long_name": "run"})}
    if all(n == names[0] for n in names) and len(set(names[0])) == len(names[0]):
        new["regressor"] = ("regressor", names[0], {"long_name": "design matrix column"})
        new["regressor_b"] = ("regressor_b", names[0], {"long_name": "design matrix column"})
    else:
        width = ds.sizes["regressor"]
        table = np.array([n + [""] * (width - len(n)) for n in names], dtype=object)
        new["regressor_name"] = (("run", "regressor"), table.astype(str),
                                 {"long_name": "design matrix column of each run ('' in the padding)"})
    new.update(space.coords())
    return ds.assign_coords(new)


def _acf_variables(fits) -> dict:
    """Whitening diagnostics (residual autocorrelation, lags 1..k) for the store."""
    if any(f.acf_before is None for f in fits):
        return {}
    dims = ("run", "acf_lag", "voxel")
    return {
        "acf_before": (dims, da.stack([f.acf_before for f in fits])),
        "acf_after": (dims, da.stack([f.acf_after for f in fits])),
    }


def _optional_run_variables(fits, names) -> dict:
    """Per-run (voxel,) variables that fits from older stores may lack."""
    out = {}
    for name in names:
        if all(getattr(f, name) is not None for f in fits):
            out[name] = (("run", "voxel"), da.stack([getattr(f, name) for f in fits]))
    return out


def _jsonable(value):
    """Numpy scalars (column names) as Python numbers, for JSON."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def fits_from_dataset(
    ds: xr.Dataset, columns: list[list], cov_kind: str
) -> tuple[list[RunFit], list[pd.DataFrame]]:
    """Rebuild the per-run fits and designs from a stored Dataset (lazily).

    Parameters
    ----------
    ds : xarray.Dataset
        In the layout of this module (e.g. from
        :func:`~daskglm.store.zarr.read_dataset`).
    columns : list of list
        The design's column names per run (the ``design_columns`` attribute).
    cov_kind : {'table', 'stack', 'exact'}
        How the contrasts get their covariance (see ``RunFit.cov_kind``).

    Returns
    -------
    fits : list of RunFit
        Dask-backed, padding removed.
    designs : list of pandas.DataFrame
    """
    n_scans = ds["n_scans"].values
    n_regs = ds["n_regressors"].values
    dfs = ds["df_residuals"].values
    fits, designs = [], []
    for i in range(ds.sizes["run"]):
        p, n = int(n_regs[i]), int(n_scans[i])
        designs.append(pd.DataFrame(ds["design"].values[i, :n, :p], columns=columns[i]))

        def optional(name, i=i):
            return ds[name].data[i] if name in ds else None

        fits.append(
            RunFit(
                beta=ds["beta"].data[i, :p],
                dispersion=ds["dispersion"].data[i],
                ar_coef=ds["ar_coef"].data[i],
                cov_index=ds["cov_index"].data[i],
                cov_table=ds["cov_table"].data[i, :, :p, :p],
                df_residuals=int(dfs[i]),
                n_scans=n,
                columns=columns[i],
                cov_kind=cov_kind,
                acf_before=optional("acf_before"),
                acf_after=optional("acf_after"),
                signal_mean=optional("signal_mean"),
            )
        )
    return fits, designs
