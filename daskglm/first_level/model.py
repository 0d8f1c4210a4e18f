"""``FirstLevelModel``: nilearn's API over the streaming dask engine.

This module validates parameters and hands the work down: what ``fit``
streams to :mod:`daskglm.first_level.inputs` (designs: :mod:`daskglm.glm`; the
element space, mask and smoothing: :mod:`daskglm.space`), the lazy fit to
:func:`daskglm.graph.fit.build_fit` (a frozen
:class:`~daskglm.graph.state.FittedState`), contrasts to
:mod:`daskglm.glm.contrasts` (definitions) and :mod:`daskglm.graph.contrast`
(graphs), persistence to :mod:`daskglm.store`.  Per-scan outputs live beside
the class in :mod:`daskglm.first_level.outputs`.
"""

from __future__ import annotations

import os
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

import daskglm.compat.nilearn  # noqa: F401  (the nilearn version check: one line if unsupported)
from daskglm.errors import NotFittedError
from daskglm.first_level.inputs import fit_inputs
from daskglm.first_level.nilearn_glm import NilearnGLMInterface
from daskglm.first_level.outputs import FirstLevelOutputs, report_threshold
from daskglm.first_level.representation import estimator_repr
from daskglm.first_level.volumes import contrast_dataset, mean_image, model_volume
from daskglm.glm.contrasts import OUTPUT_TYPES, per_run_contrasts
from daskglm.glm.design import DESIGN_PARAMS
from daskglm.graph.contrast import combined_contrast
from daskglm.graph.fit import build_fit
from daskglm.graph.resources import compute, single_threaded_blas
from daskglm.graph.state import FittedState
from daskglm.io.views import base_source
from daskglm.kernels.contrast import unpack_contrast_outputs
from daskglm.kernels.fit import NOISE_MODELS, FitOptions
from daskglm.space.base import ElementSpace
from daskglm.store.keys import run_keys, run_sources
from daskglm.store.schema import fits_to_dataset
from daskglm.store.zarr import read_fit, write_dataset

__all__ = ["FirstLevelModel", "open_model", "NotFittedError"]

WHITENING_MODES = ("binned", "exact")
#: Residual autocorrelation lags stored by default with ``whitening="exact"``.
DIAGNOSTIC_LAGS = 3
SIGNAL_SCALINGS = (0, 1, (0, 1), [0, 1], False)


class FirstLevelModel(FirstLevelOutputs, NilearnGLMInterface):
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
    mask_img : path, Nifti1Image, NiftiMasker, SurfaceImage, SurfaceMasker, False or None
        ``None``: nilearn's EPI mask (surfaces: the vertices finite in every
        scan); ``False``: every element; a fitted ``NiftiMasker`` /
        ``SurfaceMasker``: its mask, smoothing and target grid, as nilearn (it
        is ``masker_``).  A volume mask on another grid resamples the runs
        onto it.  CIFTI runs take a CIFTI mask over their brain models.
    target_affine, target_shape : ndarray (3, 3) or (4, 4), tuple of 3 int
        Runs resampled volume by volume while streaming (nilearn's numerics).
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
    diagnostic_lags : int or None, default=None
        Residual autocorrelation lags (1..k) kept as whitening diagnostics
        (:meth:`whitening_diagnostics`).  ``None``: 3 for
        ``whitening='exact'``, 0 (none, nilearn's statistics pass) for binned.
    memory, memory_level, verbose, n_jobs, subject_label, random_state, reports
        nilearn's parameters, accepted so that nilearn code runs unchanged;
        they have no effect on the fit (dask schedules the work; nothing is
        cached on disk but the store you write).  ``subject_label`` is kept
        with the fit.
    standardize : False or None
        nilearn's masker standardization of each voxel's time series; only
        ``False``/``None`` (nilearn's default) is supported — signal scaling
        is ``signal_scaling``.

    Attributes
    ----------
    design_matrices_ : list of pandas.DataFrame
    mask_img_ : nibabel.Nifti1Image, SurfaceImage or CIFTI image
    space_ : daskglm.space.base.ElementSpace
        Where the fit's values live (mask / mesh, affine, smoothing), and
        ``space_.unmask`` to turn any in-mask array into an image.
    run_names_, n_scans_ : list
        The fitted runs' names and scan counts (before censoring).
    mean_img_ : image or None
        The runs' mean signal over the mask (the reports' background).
    masker_ : nilearn NiftiMasker or SurfaceMasker
        The equivalent fitted nilearn masker (the one given as ``mask_img``, if any).
    results_ : xarray.Dataset
        Lazy dataset of the fit (layout: :mod:`daskglm.store.schema`).
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
        diagnostic_lags=None,
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
        self.diagnostic_lags = diagnostic_lags

    #: Parameters that change the fit: they are stored and enter the resume key.
    _PARAM_NAMES = (
        *DESIGN_PARAMS, "smoothing_fwhm", "signal_scaling", "noise_model", "minimize_memory",
        "whitening", "subject_label", "diagnostic_lags",
    )

    _state: FittedState | None = None
    _masker = None

    def __repr__(self) -> str:
        """nilearn's (scikit-learn's) repr: the parameters changed from their defaults."""
        return estimator_repr(self)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """JSON-serialisable model parameters (``mask_img`` if None, False or a path), as sklearn's."""
        plain = self.mask_img is None or self.mask_img is False
        params = {"mask_img": self.mask_img if plain else str(self.mask_img)} \
            if plain or isinstance(self.mask_img, (str, os.PathLike)) else {}
        for name in self._PARAM_NAMES:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            params[name] = value
        return params

    def _stored_params(self) -> dict:
        """:meth:`get_params` with the smoothing actually applied (a given masker brings its own).

        What stores record and resume keys hash, so that a reopened model, and
        its ``masker_``, smooth as the fit did.
        """
        params = self.get_params()
        if self._state is not None:
            fwhm = self._state.space.smoothing_fwhm
            params["smoothing_fwhm"] = np.asarray(fwhm).tolist() if fwhm is not None else None
        return params

    # ----------------------------------------------------------- validation
    def _fit_options(self) -> FitOptions:
        """The validated fit recipe (parameters are read, never modified)."""
        if self.standardize not in (False, None):
            raise ValueError(
                f"standardize={self.standardize!r} is not supported: daskglm fits the signal as nilearn's "
                "default (standardize=False); for percent signal change use signal_scaling=0."
            )
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(
                f"Unknown noise_model {self.noise_model!r}; choose one of {list(NOISE_MODELS)}."
            )
        if self.whitening not in WHITENING_MODES:
            raise ValueError(
                f"Unknown whitening mode {self.whitening!r}; choose one of {list(WHITENING_MODES)}."
            )
        if self.signal_scaling not in SIGNAL_SCALINGS:
            raise ValueError(
                f"'signal_scaling' must be one of {{False, 1, (0, 1)}} (or 0).\n'{self.signal_scaling}' was provided."
            )
        lags = self.diagnostic_lags
        if lags is None:
            lags = DIAGNOSTIC_LAGS if self.whitening == "exact" else 0
        if isinstance(lags, bool) or not isinstance(lags, (int, np.integer)) or lags < 0:
            raise ValueError(f"diagnostic_lags must be a non-negative integer or None, got {lags!r}.")
        scaling = tuple(self.signal_scaling) if isinstance(self.signal_scaling, list) else self.signal_scaling
        return FitOptions(self.noise_model, scaling, whitening=self.whitening, diagnostic_lags=int(lags))

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
        run_imgs : path, Nifti1Image, xarray.DataArray, SurfaceImage, .dtseries.nii, or a list of them
            One 4D image per run, or surface / CIFTI runs (``docs/surfaces.md``).
        events : DataFrame, path, or list of them, optional
            One events table per run (``onset``, ``duration``, ``trial_type``).
        confounds : DataFrame, array, path, or list of them, optional
            One per run; a path (or URL) is a TSV/CSV with a header, or a
            header-less SPM ``rp_*.txt`` / FSL ``.par`` / AFNI ``.1D`` file
            (:func:`daskglm.glm.confounds.read_confounds`).
        sample_masks : array, or list of arrays (one per run), optional
            Scans to keep (censoring / scrubbing), as nilearn: per run an
            array of kept scan indices (increasing) or a boolean mask
            (``True`` = keep).  The design rows and the data are restricted
            to the kept scans, and the AR model runs over the kept sequence
            as if it were contiguous.  Censored volumes are skipped while
            streaming (one pass).  None: the masks the confounds DataFrames carry in
            ``attrs["sample_mask"]``, if any (:func:`daskglm.first_level_from_bids`
            returns ``load_confounds``' that way;
            :func:`daskglm.glm.sample_masks.sample_masks_from_confounds`).
        design_matrices : DataFrame, array, path (.npz key ``X``, .csv, .tsv), or a list
            One design per run; if given, ``events``/``confounds`` are ignored.
        bins : int, default=100
            nilearn's AR(1) grid; only 100 is supported.

        Returns
        -------
        self
        """
        options = self._fit_options()
        if bins != 100:
            raise ValueError("Only nilearn's default bins=100 is supported.")
        with single_threaded_blas:  # design-sized algebra: woken OpenBLAS threads would spin on busy cores
            inputs = fit_inputs(self, run_imgs, events, confounds, sample_masks, design_matrices)
            self._state = build_fit(inputs.sources, inputs.designs, inputs.space, options, self.chunks)
        self._timeseries = None
        self._masker = None
        self._keep_fit_inputs(run_imgs, events, design_matrices)  # nilearn's _reporting_data
        return self

    # ------------------------------------------------------------ fitted state
    def _check_fitted(self) -> None:
        if self._state is None:
            raise NotFittedError(
                "This FirstLevelModel instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return self._state is not None

    def persist(self) -> FirstLevelModel:
        """Compute the fit once and keep it (in memory, or on the cluster)."""
        self._check_fitted()
        self._state = self._state.persist()
        return self

    @property
    def design_matrices_(self) -> list:
        """The design matrix of each run (list of pandas.DataFrame)."""
        self._check_fitted()
        return list(self._state.designs)

    @property
    def mask_img_(self) -> nib.Nifti1Image:
        """The analysis mask: a uint8 NIfTI on the runs' grid, a ``SurfaceImage``, or CIFTI dense scalars."""
        self._check_fitted()
        return self._state.space.mask_img

    @property
    def results_(self) -> xr.Dataset:
        """The fit as a lazy :class:`xarray.Dataset` (computes nothing)."""
        self._check_fitted()
        state = self._state
        return fits_to_dataset(list(state.runs), list(state.designs), state.space, self._stored_params(), coords=True)

    @property
    def labels_(self) -> list[np.ndarray]:
        """AR coefficient used for each voxel of each run (nilearn's labels, as floats)."""
        self.persist()
        return [np.asarray(f.ar_coef[0]) for f in self._state.runs]

    @property
    def masker_(self):
        """The fitted nilearn masker of the fit, as nilearn's model has (``space_.to_nilearn()``).

        The masker given as ``mask_img``, or a ``NiftiMasker`` / ``SurfaceMasker``
        on the analysis mask that smooths as the model does (built on first
        access), for code that uses ``transform``, ``inverse_transform``,
        ``mask_img_``.  CIFTI fits have none (nilearn has no CIFTI masker).
        """
        self._check_fitted()
        if self._masker is None:
            self._masker = self._state.space.to_nilearn()
        return self._masker

    @property
    def space_(self) -> ElementSpace:
        """The fit's element space: where its values live and how they become images.

        A :class:`~daskglm.space.volume.VolumeSpace` (voxels of ``mask_img_``
        on its grid) or a :class:`~daskglm.space.surface.SurfaceSpace`
        (vertices of a mesh, CIFTI grayordinates).  Its ``kind``
        (``'volume'``, ``'surface'``, ``'cifti'``), ``mask``, ``affine``,
        ``geometry`` and ``smoothing_fwhm`` describe it; ``unmask(values)``
        turns any in-mask array (``(V,)`` or ``(k, V)``, e.g. a column of
        ``results_``) into an image of the fit's kind; ``to_nilearn()`` is
        the equivalent fitted nilearn masker (``masker_``).
        """
        self._check_fitted()
        return self._state.space

    @property
    def run_names_(self) -> list[str]:
        """The name of each fitted run (its path or URL, or an image's name), ``run-<i>`` for a reopened store."""
        self._check_fitted()
        sources = self._state.sources or [None] * len(self._state.runs)
        return [str(getattr(s, "name", None) or f"run-{i + 1}") for i, s in enumerate(sources)]

    @property
    def n_scans_(self) -> list[int]:
        """Scans of each run as given, before censoring (the scans fitted for a reopened store)."""
        self._check_fitted()
        if not self._state.sources:
            return [int(run.n_scans) for run in self._state.runs]
        return [int(base_source(s).n_scans) for s in self._state.sources]

    @property
    def mean_img_(self) -> nib.Nifti1Image | None:
        """The time mean of the runs' signal over the mask, averaged over runs (None for old stores).

        It comes from the fit's streaming pass (the per-run ``signal_mean``
        kept in the store), so nothing is read again; reports draw maps on it.
        """
        self.persist()  # computed once, as labels_: not a second streaming pass per access
        return mean_image(self)

    @property
    def n_elements_(self) -> int:
        """Number of in-mask elements: voxels, vertices or grayordinates (nilearn's ``n_elements_``)."""
        self._check_fitted()
        return self._state.n_voxels

    # --------------------------------------------------------------- contrasts
    def contrast_maps(self, contrast_def, stat_type=None, volume: bool = False) -> xr.Dataset:
        """All maps of a contrast as a lazy :class:`xarray.Dataset`.

        Variables: ``effect_size`` (``(contrast_dim, voxel)`` for F), ``effect_variance``,
        ``stat``, ``p_value``, ``z_score``, with CF-style attributes.  Nothing is
        computed until asked.  ``volume=False``: over the in-mask voxels (with
        their ``i, j, k`` and ``x, y, z`` coordinates); ``volume=True``: as
        volumes (:meth:`to_volume`), each equal to the NIfTI map of
        :meth:`compute_contrast`.
        """
        self._check_fitted()
        runs = self._state.runs
        cons = per_run_contrasts(contrast_def, [f.columns for f in runs])
        packed, q = combined_contrast(runs, cons, stat_type)
        maps = unpack_contrast_outputs(packed, q)
        return contrast_dataset(self, maps, q, contrast_def, stat_type, volume)

    def to_volume(self, values, name: str | None = None, fill_value: float = 0.0) -> xr.DataArray:
        """Any per-voxel array of the fit as a volume :class:`xarray.DataArray`.

        ``values``: a DataArray with a ``voxel`` dim (e.g. ``results_["beta"]``)
        or an array (..., voxel).  Returns dims ``(..., x, y, z)`` with world
        coordinates (mm) and voxel indices ``i, j, k`` (``(..., i, j, k)`` and
        3-D ``x, y, z`` for an oblique affine), lazily; 0 outside the mask by
        default.  See :func:`daskglm.first_level.volumes.model_volume`.
        """
        self._check_fitted()
        return model_volume(self, values, name=name, fill_value=fill_value)

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
            raise ValueError(f"'output_type' must be one of {list(valid)}.\n'{output_type}' was provided.")
        self.persist()
        with single_threaded_blas:  # as in fit: the contrast's small algebra runs in this thread
            maps = self.contrast_maps(contrast_def, stat_type)
            wanted = list(OUTPUT_TYPES) if output_type == "all" else [output_type]
            computed = compute(*[maps[name].data for name in wanted])
            label = str(contrast_def)
            images = {
                name: self._state.space.unmask(values, f"{name} of contrast {label}")
                for name, values in zip(wanted, computed)
            }
        return images if output_type == "all" else images[output_type]

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
            Runs that do not match are replaced.  Each run is kept in the store
            as soon as it is fitted and written, so after an interrupted or
            failed write (Ctrl-C, a bad later run) ``resume=True`` reuses the
            runs it finished; the existing fit stays readable meanwhile.

        Returns
        -------
        daskglm.store.zarr.WriteSummary or dask.delayed.Delayed
            The summary lists the runs written and the runs reused.  After a
            computed write of a fit that was not persisted, the model reads its
            fit back from the store, so contrasts do not refit.
        """
        self._check_fitted()
        state = self._state
        # the store keeps no coordinates: they are rebuilt on reading
        stored_layout = fits_to_dataset(list(state.runs), list(state.designs), state.space, self._stored_params())
        result = write_dataset(
            stored_layout, store, overwrite=overwrite, compute=compute,
            storage_options=storage_options, resume=resume,
            run_keys=run_keys(state, self._stored_params(), self.chunks), run_sources=run_sources(state),
        )
        if compute and not state.persisted:
            stored, _ = read_fit(store, storage_options=storage_options)
            if len(stored.runs) == len(state.runs):  # read the fit back instead of recomputing it
                self._state = state.replace(runs=stored.runs, run_keys=stored.run_keys, persisted=True)
        return result

    def generate_report(self, contrasts=None, first_level_contrast=None, title=None, bg_img=None,
                        threshold=None, alpha=0.001, cluster_threshold=0, height_control="fpr",
                        two_sided=False, min_distance=8.0, plot_type="slice", cut_coords=None,
                        display_mode=None, report_dims=(1600, 800), **kwargs):
        """HTML report of the fit (:mod:`daskglm.reporting.report`), with nilearn's parameters.

        ``threshold`` as nilearn's; ``bg_img=None`` (the default) draws on the
        fit's mean image, ``"MNI152TEMPLATE"`` (nilearn's default) on nilearn's
        template; ``plot_type="glass"`` adds glass brains; ``contrasts=None``
        after ``nilearn.glm.save_glm_to_bids`` reports the contrasts it wrote.
        """
        from daskglm.reporting.report import nilearn_report

        threshold = report_threshold(threshold, height_control)
        contrasts, z_maps = self._report_contrasts(contrasts)
        return nilearn_report(self, contrasts, z_maps=z_maps, first_level_contrast=first_level_contrast,
                              title=title, bg_img=bg_img, threshold=threshold, alpha=alpha,
                              cluster_threshold=cluster_threshold, height_control=height_control,
                              two_sided=two_sided, min_distance=min_distance, plot_type=plot_type,
                              cut_coords=cut_coords, display_mode=display_mode, report_dims=report_dims,
                              **kwargs)


def open_model(store, storage_options: dict | None = None) -> FirstLevelModel:
    """Reopen a fit written by :meth:`FirstLevelModel.to_zarr`.

    The returned model computes new contrasts from the store without refitting.

    Parameters
    ----------
    store : str or path or fsspec URL
        E.g. ``"fit.zarr"`` or ``"s3://bucket/fit.zarr"``.
    storage_options : dict, optional
        fsspec options (endpoint, credentials, ...) for URLs.

    Returns
    -------
    FirstLevelModel

    Raises
    ------
    daskglm.errors.StoreError
        If the store is not a complete daskglm fit (e.g. a write still in
        progress or interrupted) or has an unknown format version.
    """
    state, params = read_fit(store, storage_options=storage_options,
                             param_names=("mask_img", *FirstLevelModel._PARAM_NAMES))
    model = FirstLevelModel(**params)
    model._state = state
    return model
