"""Per-voxel and per-scan outputs of a fitted first-level model.

nilearn keeps ``residuals_``, ``predicted_`` and ``r_square_`` in a base class
beside ``FirstLevelModel``; so does daskglm.  :class:`FirstLevelOutputs` reads
the model's frozen :class:`~daskglm.graph.state.FittedState` (``self._state``)
and its ``minimize_memory`` and ``signal_scaling`` parameters.  Per-scan
outputs come from a second streaming pass written to Zarr
(:mod:`daskglm.graph.timeseries`), never held in memory.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
import weakref

import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr

from daskglm.errors import NotFittedError
from daskglm.graph.resources import compute
from daskglm.graph.timeseries import timeseries_tasks

__all__ = ["FirstLevelOutputs", "report_threshold"]

#: Scans per chunk of the per-scan Zarr arrays.
TIMESERIES_CHUNK = 16


class FirstLevelOutputs:
    """Mixin: whitening diagnostics and nilearn's per-scan outputs."""

    _timeseries: dict | None = None

    def whitening_diagnostics(self, lags=None, output_type: str = "images"):
        """Residual autocorrelation before and after whitening, per voxel.

        ``acf_before`` is the lag-l autocorrelation ``a_l / a_0`` of the OLS
        residuals, ``acf_after`` that of the whitened GLS residuals
        ``W (Y - X beta)``; both are computed from the sufficient statistics
        during the fit.  After a good whitening ``acf_after`` is ~0 (within
        about ``+-2 / sqrt(n)``).  Stored by default for ``whitening='exact'``
        (lags 1..3); for a binned fit pass ``diagnostic_lags=k`` to the model.

        Parameters
        ----------
        lags : int or sequence of int, optional
            Lags to return (default: all stored).  ``3`` means ``1, 2, 3``.
        output_type : {'images', 'dataset'}
            ``'images'``: dict ``{'acf_before': [img, ...], 'acf_after': [...]}``
            with one 4D Nifti image per run (4th axis = lag).  ``'dataset'``: a
            lazy :class:`xarray.Dataset` over ``(run, acf_lag, voxel)``.

        Returns
        -------
        dict of list of Nifti1Image, or xarray.Dataset
        """
        self._check_fitted()
        runs = self._state.runs
        if any(f.acf_before is None for f in runs):
            raise ValueError(
                "This fit holds no whitening diagnostics: they are stored for "
                "whitening='exact', or pass diagnostic_lags=k to the model before fit."
            )
        stored = runs[0].acf_before.shape[0]
        if lags is None:
            lags = list(range(1, stored + 1))
        elif np.isscalar(lags):
            lags = list(range(1, int(lags) + 1))
        lags = [int(lag) for lag in lags]
        if not lags or min(lags) < 1 or max(lags) > stored:
            raise ValueError(f"lags must lie in 1..{stored} (stored diagnostics), got {lags}.")
        rows = [lag - 1 for lag in lags]
        ds = xr.Dataset(
            {
                name: (("run", "acf_lag", "voxel"),
                       da.stack([getattr(f, name)[rows] for f in runs]))
                for name in ("acf_before", "acf_after")
            },
            coords={"acf_lag": lags},
        )
        if output_type == "dataset":
            return ds
        if output_type != "images":
            raise ValueError(f"output_type must be 'images' or 'dataset', got {output_type!r}.")
        before, after = compute(ds["acf_before"].data, ds["acf_after"].data)
        return {
            "acf_before": [self._state.space.unmask(b, "OLS residual autocorrelation") for b in before],
            "acf_after": [self._state.space.unmask(a, "whitened residual autocorrelation") for a in after],
        }

    def write_timeseries(self, store=None):
        """Stream the runs a second time and write residuals and predictions to Zarr.

        Needs ``minimize_memory=False``.  Memory stays bounded: each run is
        read chunk by chunk and the per-scan outputs go straight to the store,
        never into RAM.  Called automatically by :attr:`residuals_`,
        :attr:`predicted_` and :attr:`r_square_`.

        Parameters
        ----------
        store : str or path, optional
            Zarr directory for the per-scan outputs; default: a temporary
            directory removed when the model is garbage-collected.

        Returns
        -------
        self
        """
        self._check_fitted()
        if self.minimize_memory:
            raise AttributeError(
                "To access voxelwise attributes like R-squared, residuals, and predictions, "
                "the FirstLevelModel needs to keep them: set minimize_memory=False when "
                "creating it."
            )
        if not self._state.sources:
            raise NotFittedError(
                "Residuals and predictions need the original runs: this model was reopened "
                "from a store; fit it again with minimize_memory=False."
            )
        import zarr

        if store is None:
            store = tempfile.mkdtemp(prefix="daskglm-timeseries-")
            weakref.finalize(self, shutil.rmtree, store, True)
        self.persist()
        group = zarr.open_group(str(store), mode="w")
        chunk = min(TIMESERIES_CHUNK, max(s.n_scans for s in self._state.sources))
        tasks = timeseries_tasks(self._state, self._fit_options().signal_scaling, group, chunk)
        r_square = compute(*tasks)
        self._timeseries = {"group": group, "r_square": list(r_square)}
        return self

    def _timeseries_images(self, name: str) -> list[nib.Nifti1Image]:
        if self._timeseries is None:
            self.write_timeseries()
        group = self._timeseries["group"]
        space = self._state.space
        return [space.unmask_series(da.from_zarr(group[f"run{i}/{name}"]), name)
                for i in range(len(self._state.runs))]

    @property
    def residuals_(self) -> list[nib.Nifti1Image]:
        """Per-run 4D residual images ``Y - (WX) beta`` (nilearn 0.14's ``residuals_``).

        Backed lazily by the Zarr store of :meth:`write_timeseries`.
        """
        self._check_fitted()
        return self._timeseries_images("residuals")

    @property
    def predicted_(self) -> list[nib.Nifti1Image]:
        """Per-run 4D predicted images ``(WX) beta`` (nilearn 0.14's ``predicted_``)."""
        self._check_fitted()
        return self._timeseries_images("predicted")

    @property
    def r_square_(self) -> list[nib.Nifti1Image]:
        """Per-run ``var(predicted) / var(W Y)`` maps (nilearn 0.14's ``r_square_``).

        Like nilearn's, each is a 4D image with one volume.
        """
        self._check_fitted()
        if self._timeseries is None:
            self.write_timeseries()
        return [self._state.space.unmask(r2[None], "r_square") for r2 in self._timeseries["r_square"]]

    #: nilearn's ``RegressionResults`` attributes (``_get_element_wise_model_attribute``)
    _ELEMENT_WISE = ("residuals", "normalized_residuals", "predicted", "SSE", "r_square", "MSE")

    def _get_element_wise_model_attribute(self, attribute: str, result_as_time_series: bool) -> list:
        """nilearn's (private) accessor of per-voxel attributes, for code written against it.

        ``residuals``, ``predicted`` and ``r_square`` are available (as
        :attr:`residuals_`, :attr:`predicted_`, :attr:`r_square_`); nilearn's
        messages for an unknown attribute and for ``minimize_memory=True``.
        """
        self._check_fitted()
        if attribute not in self._ELEMENT_WISE:
            raise ValueError(
                f"'attribute' must be one of {list(self._ELEMENT_WISE)}.\n'{attribute}' was provided."
            )
        if attribute not in ("residuals", "predicted", "r_square"):
            raise ValueError(
                f"'{attribute}' is not kept by daskglm; available: residuals, predicted, r_square."
            )
        return list(getattr(self, f"{attribute}_"))

    @property
    def residuals(self) -> list[nib.Nifti1Image]:
        """Deprecated alias of :attr:`residuals_`, as in nilearn 0.14."""
        warnings.warn("'residuals' is deprecated; use 'residuals_'.", FutureWarning, stacklevel=2)
        return self.residuals_

    @property
    def predicted(self) -> list[nib.Nifti1Image]:
        """Deprecated alias of :attr:`predicted_`, as in nilearn 0.14."""
        warnings.warn("'predicted' is deprecated; use 'predicted_'.", FutureWarning, stacklevel=2)
        return self.predicted_

    @property
    def r_square(self) -> list[nib.Nifti1Image]:
        """Deprecated alias of :attr:`r_square_`, as in nilearn 0.14."""
        warnings.warn("'r_square' is deprecated; use 'r_square_'.", FutureWarning, stacklevel=2)
        return self.r_square_


#: nilearn 0.14's ``generate_report`` threshold when ``height_control=None`` and none is given.
REPORT_THRESHOLD = 3.09


def report_threshold(threshold, height_control) -> float:
    """nilearn 0.14's ``generate_report`` threshold rules and warnings.

    With ``height_control=None`` a missing threshold is 3.09, with nilearn's
    ``FutureWarning`` about its next default; with a height control a given
    threshold is unused (nilearn's warning) and the control's own applies.
    """
    if height_control is None:
        threshold = REPORT_THRESHOLD if threshold is None else threshold
        if threshold == REPORT_THRESHOLD:
            from scipy.stats import norm

            warnings.warn(
                "\nFrom nilearn version>=0.15, the default 'threshold' will be set to "
                f"{norm.isf(0.001)}.", FutureWarning, stacklevel=3,
            )
        return float(threshold)
    if threshold is not None:
        warnings.warn(
            f"\n'threshold={float(threshold)}' is not used with 'height_control={height_control!r}'."
            "\n'threshold' is only used when 'height_control=None'. \n'threshold' was set to 'None'. ",
            UserWarning, stacklevel=3,
        )
    return REPORT_THRESHOLD  # unused with a height control
