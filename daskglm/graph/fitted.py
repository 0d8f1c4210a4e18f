"""The fitted state of a run, and its round trip through an xarray Dataset."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["RunFit", "fits_to_dataset", "fits_from_dataset"]


@dataclass
class RunFit:
    """One run's fitted arrays (dask-backed; from a fit or from a store)."""

    beta: da.Array  # (p, V)
    dispersion: da.Array  # (V,)
    ar_coef: da.Array  # (order, V)
    cov_index: da.Array  # (V,) int
    cov_table: da.Array  # (n_tables, p, p)
    df_residuals: int
    n_scans: int
    columns: list
    #: "table" (AR(1) bins: cov_index into cov_table), "stack" (binned arN) or
    #: "exact": per-voxel Gram rebuilt from ar_coef and the design-only stack.
    cov_kind: str = "table"
    acf_before: da.Array | None = None  # (k, V) OLS residual autocorrelation, lags 1..k
    acf_after: da.Array | None = None  # (k, V) whitened residual autocorrelation
    signal_mean: da.Array | None = None  # (V,) time mean of the signal before scaling

    #: the dask-backed fields, persisted together
    LAZY_FIELDS = (
        "beta", "dispersion", "ar_coef", "cov_index", "cov_table", "acf_before", "acf_after",
        "signal_mean",
    )

    def arrays(self) -> dict[str, da.Array]:
        """The fit's dask arrays by name (optional ones only when present)."""
        return {k: getattr(self, k) for k in self.LAZY_FIELDS if getattr(self, k) is not None}

    def with_arrays(self, arrays: dict) -> RunFit:
        return dataclasses.replace(self, **arrays)


def fits_to_dataset(
    fits: list[RunFit], designs: list[pd.DataFrame], mask: np.ndarray, affine: np.ndarray,
    params: dict,
) -> xr.Dataset:
    """The fit as one lazy Dataset with a ``run`` dim (layout: :mod:`daskglm.store.zarr`).

    Runs may differ in scans and regressors; such dims are NaN-padded.
    """
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
            "mask": (("x", "y", "z"), mask),
            **_acf_variables(fits),
            **_optional_run_variables(fits, ("signal_mean",)),
        },
        attrs={
            "affine": json.dumps(np.asarray(affine).tolist()),
            "design_columns": json.dumps([[_jsonable(c) for c in f.columns] for f in fits]),
            "model_params": json.dumps(params),
            "daskglm_version": _version(),
        },
    )
    return ds


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
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _version() -> str:
    from .._version import __version__

    return __version__


def fits_from_dataset(
    ds: xr.Dataset, columns: list[list], cov_kind: str
) -> tuple[list[RunFit], list[pd.DataFrame]]:
    """Rebuild the per-run fits and designs from a stored Dataset (lazily)."""
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
