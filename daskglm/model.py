"""``FirstLevelModel``: nilearn's API over the streaming dask engine.

This module validates inputs and wires the graph; the statistics live in
:mod:`daskglm.kernels` and :mod:`daskglm.contrasts`, the dask plumbing in
:mod:`daskglm.graph.engine`, storage in :mod:`daskglm.io`.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from .graph import engine as _engine
from .contrasts import (
    OUTPUT_TYPES,
    ContrastError,
    as_contrast_matrix,
    contrast_kind,
    fixed_effect_sum,
    pad_contrast,
)
from .design import DesignError, build_design, load_design
from .errors import NotFittedError
from .graph.contrast import contrast_statistics, run_contrast
from .graph.fitted import RunFit, fits_from_dataset, fits_to_dataset
from .io.export import lazy_unmask_4d, unmask
from .io.nifti import NiftiInputError, RunSource, as_run_source, load_image
from .kernels.fit import FitOptions, unpack
from .kernels.glm import design_rank
from .store.zarr import read_dataset, write_dataset

__all__ = ["FirstLevelModel", "open_model", "NotFittedError"]

#: Highest AR order accepted (``"ar1"`` .. ``"ar8"``).
MAX_AR_ORDER = 8
NOISE_MODELS = ("ols",) + tuple(f"ar{k}" for k in range(1, MAX_AR_ORDER + 1))
WHITENING_MODES = ("binned", "exact")
#: Residual autocorrelation lags stored by default (``whitening="exact"``; binned
#: fits store none unless ``model.diagnostic_lags`` is set before ``fit``, to
#: keep nilearn's statistics pass unchanged).
DIAGNOSTIC_LAGS = 3
MAX_SMOOTHING_MM = 100.0



class FirstLevelModel:
    """First-level fMRI GLM, a drop-in for :class:`nilearn.glm.first_level.FirstLevelModel`.

    Runs are read lazily and streamed once; voxel blocks are solved
    independently with dask.  With the defaults the maps equal nilearn's.

    Parameters
    ----------
    t_r : float or None
        Repetition time in seconds; needed to build designs from events.
    slice_time_ref : float, default=0.0
        Fraction of the TR at which the design is sampled.
    hrf_model, drift_model, high_pass, drift_order, fir_delays, min_onset
        Passed to nilearn's ``make_first_level_design_matrix`` when designs are
        built from events.
    mask_img : path, Nifti1Image, False or None
        Analysis mask.  ``None`` computes nilearn's EPI mask from the runs;
        ``False`` uses every voxel.
    smoothing_fwhm : float or None
        Gaussian smoothing FWHM in mm, applied to each volume before masking.
    signal_scaling : {0, (0, 1), False}, default=0
        ``0`` converts each voxel to percent signal change, as nilearn.
    noise_model : {'ar1', 'ols', 'arN'}, default='ar1'
        ``'arN'`` (N = 2..8) fits AR(N) noise.  With ``whitening='binned'``
        each voxel's Yule-Walker coefficients are truncated on the 0.01 grid
        (nilearn clusters them with a whole-brain KMeans instead; see
        ``docs/statistics.md``).
    minimize_memory : bool, default=True
        As nilearn: ``False`` makes ``residuals_``, ``predicted_`` and
        ``r_square_`` available.  They come from a second streaming pass
        written to Zarr (:meth:`write_timeseries`), never held in memory.
    whitening : {'binned', 'exact'}, default='binned'
        ``'binned'`` truncates AR(1) coefficients on nilearn's 0.01 grid
        (nilearn-identical).  ``'exact'`` estimates per-voxel AR(p)
        coefficients bias-corrected for the design projection, whitens
        exactly (first samples scaled) and refers statistics to per-voxel
        Satterthwaite degrees of freedom, so that p and z maps are valid
        under the null (``docs/statistics.md``).
    chunks : 'auto' or dict
        ``{'time': volumes per read, 'voxel': voxels per solve block}``.
    **nilearn_kwargs
        nilearn parameters without effect here (``memory``, ``verbose``,
        ``n_jobs``, ``reports``, ...) are accepted and ignored.

    Attributes
    ----------
    design_matrices_ : list of pandas.DataFrame
    mask_img_ : nibabel.Nifti1Image
    results_ : xarray.Dataset
        Lazy dataset of the fit (see :mod:`daskglm.store.zarr`).
    labels_ : list of ndarray
        AR coefficient used to whiten each voxel, per run (nilearn's labels).
    residuals_, predicted_, r_square_ : list of Nifti1Image
        With ``minimize_memory=False`` (lazy, Zarr-backed).
    """

    def __init__(
        self,
        t_r=None,
        slice_time_ref=0.0,
        hrf_model="glover",
        drift_model="cosine",
        high_pass=0.01,
        drift_order=1,
        fir_delays=None,
        min_onset=-24,
        mask_img=None,
        target_affine=None,
        target_shape=None,
        smoothing_fwhm=None,
        memory=None,
        memory_level=1,
        standardize=False,
        signal_scaling=0,
        noise_model="ar1",
        verbose=0,
        n_jobs=1,
        minimize_memory=True,
        subject_label=None,
        random_state=None,
        reports=True,
        whitening="binned",
        chunks="auto",
    ):
        self.t_r = t_r
        self.slice_time_ref = slice_time_ref
        self.hrf_model = hrf_model
        self.drift_model = drift_model
        self.high_pass = high_pass
        self.drift_order = drift_order
        self.fir_delays = fir_delays
        self.min_onset = min_onset
        self.mask_img = mask_img
        self.target_affine = target_affine
        self.target_shape = target_shape
        self.smoothing_fwhm = smoothing_fwhm
        self.memory = memory
        self.memory_level = memory_level
        self.standardize = standardize
        self.signal_scaling = signal_scaling
        self.noise_model = noise_model
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.minimize_memory = minimize_memory
        self.subject_label = subject_label
        self.random_state = random_state
        self.reports = reports
        self.whitening = whitening
        self.chunks = chunks

    # ------------------------------------------------------------------ params
    _PARAM_NAMES = (
        "t_r", "slice_time_ref", "hrf_model", "drift_model", "high_pass", "drift_order",
        "fir_delays", "min_onset", "smoothing_fwhm", "signal_scaling", "noise_model",
        "minimize_memory", "whitening", "subject_label",
    )

    def get_params(self) -> dict[str, Any]:
        """Model parameters (JSON-serialisable ones), as scikit-learn's ``get_params``."""
        params = {}
        for name in self._PARAM_NAMES:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            params[name] = value
        return params

    def _check_params(self) -> None:
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(
                f"Unknown noise_model {self.noise_model!r}; choose one of {list(NOISE_MODELS)}."
            )
        if self.whitening not in WHITENING_MODES:
            raise ValueError(
                f"Unknown whitening mode {self.whitening!r}; choose one of {list(WHITENING_MODES)}."
            )
        if self.signal_scaling not in (0, 1, (0, 1), [0, 1], False):
            raise ValueError(
                f"signal_scaling must be 0, 1, (0, 1) or False, got {self.signal_scaling!r}."
            )
        if isinstance(self.signal_scaling, list):
            self.signal_scaling = tuple(self.signal_scaling)
        fwhm = self.smoothing_fwhm
        if fwhm is not None:
            values = np.atleast_1d(np.asarray(fwhm, dtype=object))
            try:
                values = np.array([0.0 if v is None else float(v) for v in values])
            except (TypeError, ValueError) as err:
                raise TypeError(f"smoothing_fwhm must be a number or None, got {fwhm!r}.") from err
            if values.size not in (1, 3) or np.any(~np.isfinite(values)) or np.any(values < 0):
                raise ValueError(
                    f"smoothing_fwhm must be a non-negative number (mm) or 3 of them, got {fwhm!r}."
                )
            if np.any(values > MAX_SMOOTHING_MM):
                raise ValueError(
                    f"smoothing_fwhm={fwhm!r} mm is absurd for fMRI (limit {MAX_SMOOTHING_MM} mm)."
                )
            if np.all(values == 0):
                warnings.warn(
                    f"The parameter 'fwhm' for smoothing is specified as {fwhm}. "
                    "Setting it to None (no smoothing will be performed)",
                    UserWarning,
                    stacklevel=3,
                )
                self._fwhm = None
                return
        self._fwhm = fwhm
        if self.target_affine is not None or self.target_shape is not None:
            raise ValueError(
                "target_affine/target_shape (resampling) are not supported; resample the runs "
                "beforehand, e.g. with nilearn.image.resample_img."
            )

    def _chunk_sizes(self, source: RunSource, n_regressors: int) -> tuple[int, int]:
        chunks = {} if self.chunks in (None, "auto") else dict(self.chunks)
        time = chunks.get("time") or _engine.time_chunk_size(source.spatial_shape, source.dtype)
        voxel = chunks.get("voxel") or _engine.voxel_block_size(n_regressors)
        if int(time) < 1 or int(voxel) < 1:
            raise ValueError(f"chunks must be positive integers, got {self.chunks!r}.")
        return int(time), int(voxel)

    # --------------------------------------------------------------------- fit
    def fit(
        self,
        run_imgs,
        events=None,
        confounds=None,
        sample_masks=None,
        design_matrices=None,
        bins=100,
    ) -> FirstLevelModel:
        """Build the lazy fit of one run or a list of runs.

        Nothing is read here beyond headers (and, with ``mask_img=None``, the
        runs' mean images for the EPI mask).  The fit is computed the first
        time a contrast or the store is asked for, then kept.

        Parameters
        ----------
        run_imgs : path, Nifti1Image, xarray.DataArray, or a list of them
            One 4D image per run.
        events : DataFrame, path, or list of them, optional
            One events table per run (``onset``, ``duration``, ``trial_type``).
        confounds : DataFrame, array, path, or list of them, optional
        sample_masks : None
            Not supported yet (scrubbing); must be None.
        design_matrices : DataFrame, array, path (.npz key ``X``, .csv, .tsv), or a list
            One design per run; if given, ``events``/``confounds`` are ignored.
        bins : int, default=100
            nilearn's AR(1) grid; only 100 is supported.

        Returns
        -------
        self
        """
        self._check_params()
        if sample_masks is not None:
            raise ValueError("sample_masks is not supported by daskglm yet; pass None.")
        if bins != 100:
            raise ValueError("Only nilearn's default bins=100 is supported.")
        runs = run_imgs if isinstance(run_imgs, (list, tuple)) else [run_imgs]
        if len(runs) == 0:
            raise ValueError("run_imgs is empty; give at least one 4D image.")
        sources = [as_run_source(r, i) for i, r in enumerate(runs)]
        _check_same_geometry(sources)
        designs = self._designs(sources, events, confounds, design_matrices)
        mask = self._prepare_mask(sources)
        self._build(sources, designs, mask)
        return self

    def _designs(self, sources, events, confounds, design_matrices) -> list[pd.DataFrame]:
        n_runs = len(sources)
        if design_matrices is not None:
            if events is not None or confounds is not None:
                ignored = " and ".join(
                    n for n, v in (("confounds", confounds), ("events", events)) if v is not None
                )
                warnings.warn(f"If design matrices are supplied, {ignored} will be ignored.",
                              UserWarning, stacklevel=3)
            items = _per_run(design_matrices, n_runs, "design matrices")
            designs = [load_design(d, i) for i, d in enumerate(items)]
        else:
            if events is None:
                raise ValueError("events or design matrices must be provided")
            if self.t_r is None:
                raise ValueError("t_r not given to FirstLevelModel object to compute design from events")
            if not isinstance(self.t_r, (int, float, np.number)) or not self.t_r > 0:
                raise ValueError(f"t_r must be a positive number of seconds, got {self.t_r!r}.")
            events_list = _per_run(events, n_runs, "events")
            confounds_list = _per_run(confounds, n_runs, "confounds") if confounds is not None else [None] * n_runs
            designs = [
                build_design(
                    s.n_scans, ev, cf, t_r=self.t_r, slice_time_ref=self.slice_time_ref,
                    hrf_model=self.hrf_model, drift_model=self.drift_model,
                    high_pass=self.high_pass, drift_order=self.drift_order,
                    fir_delays=self.fir_delays, min_onset=self.min_onset, index=i,
                )
                for i, (s, ev, cf) in enumerate(zip(sources, events_list, confounds_list))
            ]
        for i, (s, d) in enumerate(zip(sources, designs)):
            if d.shape[0] != s.n_scans:
                raise DesignError(
                    f"Design matrix {i} has {d.shape[0]} rows but run {i} ({s.name}) has "
                    f"{s.n_scans} scans."
                )
            if d.shape[0] <= d.shape[1]:
                raise DesignError(
                    f"Design matrix {i} has {d.shape[1]} columns for only {d.shape[0]} scans; "
                    "the GLM needs more scans than regressors."
                )
        return designs

    def _prepare_mask(self, sources: list[RunSource]) -> np.ndarray:
        ref = sources[0]
        if self.mask_img is False:
            mask = np.ones(ref.spatial_shape, dtype=bool)
        elif self.mask_img is None:
            from .masking import compute_epi_mask_from_runs

            mask = compute_epi_mask_from_runs(sources)
        else:
            img = load_image(self.mask_img, "mask")
            if len(img.shape) == 4 and img.shape[3] == 1:
                img = nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine)
            _check_grid(img.shape, img.affine, ref, "The mask")
            data = np.asarray(img.dataobj)
            if not np.all(np.isfinite(data)):
                raise NiftiInputError("The mask contains NaN or infinite values.")
            mask = data != 0
        if not mask.any():
            raise NiftiInputError("The mask is empty: it selects no voxel.")
        return mask

    def _build(self, sources, designs, mask) -> None:
        diag = getattr(self, "diagnostic_lags", None)
        if diag is None:
            diag = DIAGNOSTIC_LAGS if self.whitening == "exact" else 0
        options = FitOptions(
            self.noise_model, self.signal_scaling, whitening=self.whitening,
            diagnostic_lags=int(diag),
        )
        n_lags = max(options.ar_order, 1) + options.diagnostic_lags
        cov_kind = "exact" if options.exact else ("stack" if options.uses_stack else "table")
        plan_key = (options.noise_model, n_lags) if cov_kind == "table" and not diag else (
            options.noise_model, n_lags, self.whitening)
        self.design_matrices_ = designs
        self.mask_img_ = nib.Nifti1Image(mask.astype(np.uint8), sources[0].affine)
        self._mask = mask
        self._affine = sources[0].affine
        self._sources = sources
        token = tokenize(self._fwhm, mask, sources[0].affine)
        masker = _engine.masker_key(mask, sources[0].affine, self._fwhm, token)
        self._masker_key = masker
        self._timeseries = None
        self._masker = None
        per_volume = self.signal_scaling == 1
        n_streamed = sum(s.sequential for s in sources)
        background = n_streamed < (os.cpu_count() or 1)
        self._fits = []
        for source, design in zip(sources, designs):
            X = design.to_numpy(dtype=np.float64)
            time_chunk, voxel_block = self._chunk_sizes(source, X.shape[1])
            plan = _engine.RunPlan(X, options, n_lags, tokenize(X, *plan_key))
            stats = _engine.run_stats(
                source, masker, plan.stack, n_lags, time_chunk, per_volume,
                tokenize(source.identity(), token, X, time_chunk, per_volume),
                background=background,
            )
            vchunks = _engine.voxel_chunks(int(mask.sum()), voxel_block)
            packed = _engine.fit_run(plan, stats, vchunks)
            parts = unpack(packed, plan.n_regressors, options.ar_order, options.diagnostic_lags)
            cov_table = da.from_delayed(
                plan.cov_table, shape=(plan.n_tables, plan.n_regressors, plan.n_regressors),
                dtype=np.float64,
            )
            rank = design_rank(X)
            self._fits.append(
                RunFit(
                    beta=parts["beta"],
                    dispersion=parts["dispersion"],
                    ar_coef=parts["ar_coef"],
                    cov_index=parts["cov_index"].astype(np.int16),
                    cov_table=cov_table,
                    df_residuals=X.shape[0] - rank,
                    n_scans=X.shape[0],
                    columns=list(design.columns),
                    cov_kind=cov_kind,
                    acf_before=parts.get("acf_before"),
                    acf_after=parts.get("acf_after"),
                    signal_mean=parts["signal_mean"],
                )
            )
        self._persisted = False

    # ------------------------------------------------------------ fitted state
    def _check_fitted(self) -> None:
        if not getattr(self, "_fits", None):
            raise NotFittedError(
                "This FirstLevelModel instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return bool(getattr(self, "_fits", None))

    def persist(self) -> FirstLevelModel:
        """Compute the fit once and keep it (in memory, or on the cluster)."""
        self._check_fitted()
        if not self._persisted:
            (persisted,) = dask.persist([f.arrays() for f in self._fits])
            self._fits = [f.with_arrays(a) for f, a in zip(self._fits, persisted)]
            self._persisted = True
        return self

    @property
    def results_(self) -> xr.Dataset:
        """The fit as a lazy :class:`xarray.Dataset` (computes nothing)."""
        self._check_fitted()
        return fits_to_dataset(
            self._fits, self.design_matrices_, self._mask, self._affine, self.get_params()
        )

    @property
    def labels_(self) -> list[np.ndarray]:
        """AR coefficient used for each voxel of each run (nilearn's labels, as floats)."""
        self._check_fitted()
        self.persist()
        return [np.asarray(f.ar_coef[0]) for f in self._fits]

    @property
    def masker_(self):
        """A fitted nilearn ``NiftiMasker`` on the analysis mask, as nilearn's model has.

        For code that uses ``model.masker_`` (``transform``, ``inverse_transform``,
        ``mask_img_``); it smooths as the model does.  Built on first access.
        """
        self._check_fitted()
        if getattr(self, "_masker", None) is None:
            from nilearn.maskers import NiftiMasker

            self._masker = NiftiMasker(
                mask_img=self.mask_img_, smoothing_fwhm=getattr(self, "_fwhm", None), standardize=None
            ).fit()
        return self._masker

    @property
    def n_elements_(self) -> int:
        """Number of voxels in the mask (nilearn's ``n_elements_``)."""
        self._check_fitted()
        return int(np.count_nonzero(self._mask))

    def whitening_diagnostics(self, lags=None, output_type: str = "images"):
        """Residual autocorrelation before and after whitening, per voxel.

        ``acf_before`` is the lag-l autocorrelation ``a_l / a_0`` of the OLS
        residuals, ``acf_after`` that of the whitened GLS residuals
        ``W (Y - X beta)``; both are computed from the sufficient statistics
        during the fit.  After a good whitening ``acf_after`` is ~0 (within
        about ``+-2 / sqrt(n)``).  Stored by default for ``whitening='exact'``
        (lags 1..3); for a binned fit set ``model.diagnostic_lags = k`` before
        ``fit``.

        Parameters
        ----------
        lags : int or sequence of int, optional
            Lags to return (default: all stored).  ``3`` means ``1, 2, 3``.
        output_type : {'images', 'dataset'}
            ``'images'``: dict ``{'acf_before': [img, ...], 'acf_after': [...]}``
            with one 4D Nifti image per run (4th axis = lag).  ``'dataset'``: a
            lazy :class:`xarray.Dataset` over ``(run, acf_lag, voxel)``.
        """
        self._check_fitted()
        if any(f.acf_before is None for f in self._fits):
            raise ValueError(
                "This fit holds no whitening diagnostics: they are stored for "
                "whitening='exact', or set model.diagnostic_lags = k before fit."
            )
        stored = self._fits[0].acf_before.shape[0]
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
                       da.stack([getattr(f, name)[rows] for f in self._fits]))
                for name in ("acf_before", "acf_after")
            },
            coords={"acf_lag": lags},
        )
        if output_type == "dataset":
            return ds
        if output_type != "images":
            raise ValueError(f"output_type must be 'images' or 'dataset', got {output_type!r}.")
        before, after = dask.compute(ds["acf_before"].data, ds["acf_after"].data)
        return {
            "acf_before": [self._unmask(b, "OLS residual autocorrelation") for b in before],
            "acf_after": [self._unmask(a, "whitened residual autocorrelation") for a in after],
        }

    # ------------------------------------------- per-scan outputs (second pass)
    def write_timeseries(self, store=None) -> FirstLevelModel:
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
        """
        self._check_fitted()
        if self.minimize_memory:
            raise AttributeError(
                "To access voxelwise attributes like R-squared, residuals, and predictions, "
                "the FirstLevelModel needs to keep them: set minimize_memory=False when "
                "creating it."
            )
        if not getattr(self, "_sources", None):
            raise NotFittedError(
                "Residuals and predictions need the original runs: this model was reopened "
                "from a store; fit it again with minimize_memory=False."
            )
        import zarr

        if store is None:
            import shutil
            import tempfile
            import weakref

            store = tempfile.mkdtemp(prefix="daskglm-timeseries-")
            weakref.finalize(self, shutil.rmtree, store, True)
        self.persist()
        group = zarr.open_group(str(store), mode="w")
        chunk = min(16, max(s.n_scans for s in self._sources))
        tasks = _engine.timeseries_tasks(
            self._sources, self._masker_key, self._fits, self.design_matrices_,
            self.signal_scaling, self.signal_scaling == 1, group, chunk,
        )
        r_square = dask.compute(*tasks)
        self._timeseries = {"group": group, "r_square": list(r_square)}
        return self

    def _timeseries_images(self, name: str) -> list[nib.Nifti1Image]:
        if getattr(self, "_timeseries", None) is None:
            self.write_timeseries()
        group = self._timeseries["group"]
        return [
            nib.Nifti1Image(lazy_unmask_4d(da.from_zarr(group[f"run{i}/{name}"]), self._mask),
                            self._affine)
            for i in range(len(self._fits))
        ]

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
        if getattr(self, "_timeseries", None) is None:
            self.write_timeseries()
        return [self._unmask(r2[None], "r_square") for r2 in self._timeseries["r_square"]]

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

    # --------------------------------------------------------------- contrasts
    def _contrast_matrices(self, contrast_def) -> list[np.ndarray]:
        n_runs = len(self._fits)
        if isinstance(contrast_def, (np.ndarray, str)):
            con_vals = [contrast_def]
        elif isinstance(contrast_def, (list, tuple)):
            con_vals = list(contrast_def)
            if len(con_vals) == 0:
                raise ContrastError("The contrast definition is an empty list.")
            if all(np.isscalar(c) and not isinstance(c, str) for c in con_vals):
                con_vals = [np.asarray(con_vals, dtype=float)]  # a plain list of weights
            elif all(isinstance(c, (list, tuple)) and all(np.isscalar(x) for x in c) for c in con_vals) and n_runs == 1 and len(con_vals) > 1:
                con_vals = [np.asarray(con_vals, dtype=float)]  # a nested list = one F matrix
        else:
            raise ContrastError(
                "contrast_def must be an array or str or list of (array or str), "
                f"got {type(contrast_def).__name__}."
            )
        if len(con_vals) == 1 and n_runs > 1:
            warnings.warn(
                f"One contrast given, assuming it for all {n_runs} runs",
                UserWarning,
                stacklevel=3,
            )
            con_vals = con_vals * n_runs
        elif len(con_vals) != n_runs:
            raise ContrastError(f"{len(con_vals)} contrasts given, while there are {n_runs} runs.")
        cons = [as_contrast_matrix(c, f.columns) for c, f in zip(con_vals, self._fits)]
        if all(np.all(c == 0) for c in cons):
            raise ContrastError(
                f"All contrasts provided were null contrasts: {contrast_def!r} has only zero "
                "weights, so it tests nothing."
            )
        return cons

    def _contrast_packed(self, contrast_def, stat_type=None) -> tuple[da.Array, int]:
        """Lazy packed maps ``[effect (q), variance, stat, p, z]`` over voxels."""
        self._check_fitted()
        cons = self._contrast_matrices(contrast_def)
        effects, variances, dofs, kinds = [], [], [], []
        for i, (con, fit) in enumerate(zip(cons, self._fits)):
            kind, dim = contrast_kind(con, stat_type)
            if np.all(con == 0):
                warnings.warn(f"Contrast for run {i} is null.", UserWarning, stacklevel=3)
                continue
            p = fit.beta.shape[0]
            con = pad_contrast(con if con.ndim == 1 or kind == "F" else con[0], p, kind)
            kinds.append((kind, dim))
            effect, variance = run_contrast(fit, con, kind, dim)
            effects.append(effect)
            variances.append(variance)
            dofs.append(fit.df_residuals)
        if not effects:
            raise ContrastError("All contrasts provided were null contrasts.")
        if len(set(kinds)) > 1:
            raise ContrastError(f"The per-run contrasts disagree in type or dimension: {kinds}.")
        kind, dim = kinds[0]
        if kind == "F" and len(effects) > 1:
            warnings.warn("Running approximate fixed effects on F statistics.", UserWarning, stacklevel=3)
        effect, variance = fixed_effect_sum(effects, variances)
        packed = contrast_statistics(effect, variance, sum(dofs), kind, dim)
        return packed, packed.shape[0] - 4

    def contrast_maps(self, contrast_def, stat_type=None) -> xr.Dataset:
        """All maps of a contrast as a lazy :class:`xarray.Dataset` over in-mask voxels.

        Variables: ``effect_size`` (``(contrast_dim, voxel)`` for F), ``effect_variance``,
        ``stat``, ``p_value``, ``z_score``.  Nothing is computed until asked.
        """
        packed, q = self._contrast_packed(contrast_def, stat_type)
        effect = packed[:q]
        data = {
            "effect_size": (("voxel",), effect[0]) if q == 1 else (("contrast_dim", "voxel"), effect),
            "effect_variance": (("voxel",), packed[q]),
            "stat": (("voxel",), packed[q + 1]),
            "p_value": (("voxel",), packed[q + 2]),
            "z_score": (("voxel",), packed[q + 3]),
        }
        return xr.Dataset(data)

    def compute_contrast(self, contrast_def, stat_type=None, output_type="z_score"):
        """Contrast maps as nibabel images, as nilearn's ``compute_contrast``.

        Parameters
        ----------
        contrast_def : str, array, or list of them (one per run)
            1-D arrays are t contrasts, 2-D arrays F contrasts; strings are
            expressions over the design's column names.  Short vectors are
            zero-padded with a warning.
        stat_type : {None, 't', 'F'}
        output_type : {'z_score', 'stat', 'p_value', 'effect_size', 'effect_variance', 'all'}

        Returns
        -------
        Nifti1Image, or dict of Nifti1Image for ``output_type='all'``
            For multiple runs, nilearn's fixed-effects combination.
        """
        valid = (*OUTPUT_TYPES, "all")
        if output_type not in valid:
            raise ValueError(f"Unknown output_type {output_type!r}; choose one of {list(valid)}.")
        self._check_fitted()
        self.persist()
        maps = self.contrast_maps(contrast_def, stat_type)
        wanted = list(OUTPUT_TYPES) if output_type == "all" else [output_type]
        computed = dask.compute(*[maps[name].data for name in wanted])
        label = str(contrast_def)
        images = {
            name: self._unmask(values, f"{name} of contrast {label}")
            for name, values in zip(wanted, computed)
        }
        return images if output_type == "all" else images[output_type]

    def _unmask(self, values: np.ndarray, description: str = "") -> nib.Nifti1Image:
        return unmask(values, self._mask, self._affine, description)

    # ------------------------------------------------------------- persistence
    def to_zarr(
        self,
        store,
        overwrite: bool = False,
        compute: bool = True,
        storage_options: dict | None = None,
        resume: bool = False,
    ):
        """Write the fit to a Zarr store (local path or fsspec URL), atomically.

        Each run goes to its own group, marked complete once written; the
        store's root record is written last (see :mod:`daskglm.store.zarr`),
        so a reader never sees a half-written fit or run.  Under an active
        ``dask.distributed.Client`` the fit and the writes run on the cluster
        (the store must then be reachable from the workers: shared disk or
        object storage).

        Parameters
        ----------
        store : str or path
            Local directory or fsspec URL, e.g. ``"s3://bucket/fit.zarr"``.
        overwrite : bool, default=False
            Replace an existing store.  The old fit stays readable until the
            new one is complete.
        compute : bool, default=True
            If False, return a :class:`dask.delayed.Delayed` that fits, writes
            and commits (to batch several fits in one ``dask.compute``).
        storage_options : dict, optional
            fsspec options, e.g. ``{"endpoint_url": ..., "key": ..., "secret": ...}``.
        resume : bool, default=False
            Keep the store's complete runs whose input identity (path, size,
            mtime, or content hash for in-memory runs), model parameters, design,
            mask and chunking match this fit's, and compute only the others.
            Runs that do not match are replaced.

        Returns
        -------
        daskglm.store.zarr.WriteSummary or dask.delayed.Delayed
            The summary lists the runs written and the runs reused.  After a
            computed write of a fit that was not persisted, the model reads its
            fit back from the store, so contrasts do not refit.
        """
        self._check_fitted()
        ds = self.results_
        result = write_dataset(
            ds, store, overwrite=overwrite, compute=compute, storage_options=storage_options,
            resume=resume, run_keys=self._run_keys(), run_sources=self._run_sources(),
        )
        if compute and not self._persisted:
            self._adopt_store(store, storage_options)
        return result

    def _run_sources(self) -> list[dict] | None:
        """Input identity of each run (None for a model opened from a store)."""
        from .store.zarr import source_identity

        sources = getattr(self, "_sources", None)
        if sources is None or len(sources) != len(self._fits):
            return None
        return [source_identity(s) for s in sources]

    def _run_keys(self) -> list[str] | None:
        """Per-run keys used to resume: input identity, parameters, design, mask, chunks."""
        from .store.zarr import run_key

        identities = self._run_sources()
        if identities is None:  # opened from a store: its keys
            stored = getattr(self, "_store_run_keys", None)
            if stored is not None and len(stored) == len(self._fits) and all(stored):
                return list(stored)
            return None
        params = self.get_params()
        chunks = None if self.chunks in (None, "auto") else dict(self.chunks)
        return [
            run_key(ident, params, design.to_numpy(dtype=np.float64), list(design.columns),
                    self._mask, self._affine, extra={"chunks": chunks})
            for ident, design in zip(identities, self.design_matrices_)
        ]

    def _adopt_store(self, store, storage_options=None) -> None:
        """Read the fit back from a store just written instead of recomputing it."""
        reopened = open_model(store, storage_options=storage_options)
        if len(reopened._fits) == len(self._fits):
            self._fits = reopened._fits
            self._store_run_keys = reopened._store_run_keys
            self._persisted = True

    def generate_report(self, contrasts=None, title=None, bg_img=None, threshold=3.09,
                        alpha=0.001, cluster_threshold=0, height_control="fpr", **kwargs):
        """HTML report of the fit (see :mod:`daskglm.reporting.report`)."""
        from .reporting.report import make_glm_report

        return make_glm_report(self, contrasts, title=title, bg_img=bg_img, threshold=threshold,
                               alpha=alpha, cluster_threshold=cluster_threshold,
                               height_control=height_control, **kwargs)


def _cov_kind(params: dict) -> str:
    """How a stored fit's contrasts get their covariance (see ``RunFit.cov_kind``)."""
    options = FitOptions(params.get("noise_model", "ar1"), 0, whitening=params.get("whitening", "binned"))
    return "exact" if options.exact else ("stack" if options.uses_stack else "table")


def _per_run(obj, n_runs: int, what: str) -> list:
    items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    if len(items) != n_runs:
        raise ValueError(
            f"{len(items)} {what} given for {n_runs} run(s); give exactly one per run."
        )
    return items


def _check_same_geometry(sources: list[RunSource]) -> None:
    for i, s in enumerate(sources[1:], start=1):
        _check_grid(s.spatial_shape, s.affine, sources[0], f"Run {i} ({s.name})")


def _check_grid(shape, affine, ref: RunSource, what: str) -> None:
    """``what`` (a mask or a run) must lie on the grid of the first run."""
    if tuple(shape) != tuple(ref.spatial_shape):
        raise NiftiInputError(
            f"{what} has spatial shape {tuple(shape)}, but run 0 ({ref.name}) has "
            f"{tuple(ref.spatial_shape)}; all images must share one grid (resample first)."
        )
    if not np.allclose(affine, ref.affine, atol=1e-4):
        raise NiftiInputError(
            f"{what} has a different affine from run 0 ({ref.name}):\n"
            f"{np.round(np.asarray(affine), 4)}\nvs\n{np.round(ref.affine, 4)}"
        )


# ---------------------------------------------------------------- dataset I/O
def open_model(store, storage_options: dict | None = None) -> FirstLevelModel:
    """Reopen a fit written by :meth:`FirstLevelModel.to_zarr`.

    The returned model computes new contrasts from the store without refitting.

    Parameters
    ----------
    store : str or path or fsspec URL
        E.g. ``"fit.zarr"`` or ``"s3://bucket/fit.zarr"``.
    storage_options : dict, optional
        fsspec options (endpoint, credentials, ...) for URLs.

    Raises
    ------
    daskglm.store.zarr.StoreError
        If the store is not a complete daskglm fit (e.g. a write still in
        progress or interrupted) or has an unknown format version.
    """
    ds = read_dataset(store, storage_options=storage_options)
    try:
        params = json.loads(ds.attrs["model_params"])
        columns = json.loads(ds.attrs["design_columns"])
        affine = np.asarray(json.loads(ds.attrs["affine"]))
    except (KeyError, ValueError) as err:
        from .store.zarr import StoreError

        raise StoreError(f"{str(store)!r} lacks the daskglm metadata ({err}).") from err
    if "signal_scaling" in params and isinstance(params["signal_scaling"], list):
        params["signal_scaling"] = tuple(params["signal_scaling"])
    model = FirstLevelModel(**params)
    mask = np.asarray(ds["mask"].values, dtype=bool)
    model._mask, model._affine = mask, affine
    model.mask_img_ = nib.Nifti1Image(mask.astype(np.uint8), affine)
    model._fwhm = params.get("smoothing_fwhm")
    model._fits, model.design_matrices_ = fits_from_dataset(ds, columns, _cov_kind(params))
    model._persisted = True  # the store is the persisted state
    model._store_run_keys = json.loads(ds.attrs.get("daskglm_run_keys", "null"))
    return model
