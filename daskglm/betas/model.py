"""``BetaSeriesModel``: one beta map per trial (LSA, LSS), every trial from one streaming pass per run.

nilearn has no API for single-trial betas; its example
``examples/07_advanced/plot_beta_series.py`` fits one ``FirstLevelModel`` per
trial.  This model takes the same parameters as
:class:`~daskglm.FirstLevelModel` plus ``method``, streams each run once with
its LSA design (:mod:`daskglm.betas.graph`), and solves every trial's model
exactly from those statistics (:mod:`daskglm.kernels.single_trial`;
``docs/single_trial.md``).
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pandas as pd
import xarray as xr

from daskglm.betas.graph import BetaSeries, build_betas
from daskglm.betas.store import read_beta_series, write_beta_series
from daskglm.betas.trials import (
    basis_models,
    lsa_events,
    trial_columns,
    trials_table,
    uses_orthogonalized_basis,
)
from daskglm.errors import NotFittedError, StoreError
from daskglm.first_level.inputs import fit_inputs
from daskglm.first_level.model import FirstLevelModel
from daskglm.first_level.representation import estimator_repr
from daskglm.glm.contrasts import OUTPUT_TYPES
from daskglm.glm.design import DESIGN_PARAMS, per_run
from daskglm.graph.resources import compute
from daskglm.io.views import base_source
from daskglm.kernels.single_trial import METHODS, trial_models, trial_statistic

__all__ = ["BetaSeriesModel"]

_GLM_PARAMETERS = [p for name, p in inspect.signature(FirstLevelModel.__init__).parameters.items()
                   if name != "self"]


class _TrialGLM(FirstLevelModel):
    """The first-level model whose parameters a beta series fits with (its validated recipe)."""

    def fit_options(self):
        return self._fit_options()


class BetaSeriesModel:
    """Single-trial betas (a beta series) of one or more runs.

    Parameters
    ----------
    method : {'lss', 'lsa', 'lss1'}, default='lss'
        ``'lsa'``: one model with one column per trial (nilearn's LSA recipe);
        ``'lss'``: one model per trial with the trial alone in its column and the
        other trials kept in their conditions (nilearn's LSS recipe, "LSS-N");
        ``'lss1'``: one model per trial with all the other trials in one column
        (Mumford et al. 2012).
    **params
        Every parameter of :class:`~daskglm.FirstLevelModel` (``t_r``,
        ``hrf_model``, ``noise_model``, ``mask_img``, ``smoothing_fwhm``, ...),
        with the same defaults and meaning.

    Attributes
    ----------
    betas_ : xarray.DataArray (trial, voxel)
        Lazy; coordinates ``run``, ``trial_type``, ``onset``, ``duration`` and the
        voxels' coordinates.
    trials_ : pandas.DataFrame
    design_matrices_ : list of pandas.DataFrame
        Each run's LSA design.
    space_, mask_img_, masker_
        As :class:`~daskglm.FirstLevelModel`.
    """

    def __init__(self, method="lss", **params):
        unknown = sorted(set(params) - {p.name for p in _GLM_PARAMETERS})
        if unknown:
            raise TypeError(f"BetaSeriesModel got unexpected parameter(s) {unknown}; it takes method and "
                            "FirstLevelModel's parameters.")
        self.method = method
        for par in _GLM_PARAMETERS:
            setattr(self, par.name, params.get(par.name, par.default))

    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("method", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="lss")]
        + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _GLM_PARAMETERS]
    )

    _result: BetaSeries | None = None
    _masker = None

    def __repr__(self) -> str:
        return estimator_repr(self)

    def get_params(self, deep: bool = True) -> dict:
        """The model's parameters (``method`` and FirstLevelModel's), as scikit-learn's."""
        return {"method": self.method, **{p.name: getattr(self, p.name) for p in _GLM_PARAMETERS}}

    def _glm(self) -> _TrialGLM:
        return _TrialGLM(**{p.name: getattr(self, p.name) for p in _GLM_PARAMETERS})

    # --------------------------------------------------------------------- fit
    def fit(self, run_imgs, events, confounds=None, sample_masks=None) -> BetaSeriesModel:
        """Build the lazy beta series of one run or a list of runs.

        Reads the runs' headers only, except with ``mask_img=None``: the runs are then read once to
        compute nilearn's EPI mask (as :meth:`daskglm.FirstLevelModel.fit`).  The betas are computed
        later (``betas_.values``, :meth:`persist`, :meth:`to_zarr`, :meth:`beta_maps`).

        Parameters
        ----------
        run_imgs : path, image, or list of them
            As :meth:`daskglm.FirstLevelModel.fit`.
        events : DataFrame, path, or list of them (one per run)
            ``onset``, ``duration`` and ``trial_type`` (the trial's condition); one beta per row.
        confounds, sample_masks
            As :meth:`daskglm.FirstLevelModel.fit`.

        Returns
        -------
        self
        """
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of {list(METHODS)}.")
        glm = self._glm()
        options = glm.fit_options()
        n_runs = len(run_imgs) if isinstance(run_imgs, (list, tuple)) else 1
        frames = trials_table(events, n_runs)
        inputs = fit_inputs(glm, run_imgs, [lsa_events(f) for f in frames], confounds, sample_masks, None)
        models, tables = [], []
        run_confounds = [None] * n_runs if confounds is None else per_run(confounds, n_runs, "confounds")
        design_params = {name: getattr(self, name) for name in DESIGN_PARAMS}
        for run, (frame, design) in enumerate(zip(frames, inputs.designs)):
            X = design.to_numpy(dtype=np.float64)
            n_scans = base_source(inputs.sources[run]).n_scans  # before censoring: the events' time line
            span = n_scans * float(self.t_r)
            columns, nuisance = trial_columns(list(design.columns), frame, X, run, span, self.hrf_model,
                                              censored=X.shape[0] < n_scans)
            self._check_method(run, frame, X.shape, columns.size + len(nuisance))
            if self.method != "lsa" and uses_orthogonalized_basis(self.hrf_model, columns.shape[1]):
                models.append(basis_models(frame, run_confounds[run], n_scans, design_params,
                                           run, columns, nuisance, self.method))
            else:
                groups = pd.factorize(frame["trial_type"])[0]
                models.append(trial_models(columns, groups, nuisance, X.shape[1], self.method))
            tables.append(pd.DataFrame({
                "run": run, "trial_type": frame["trial_type"].astype(str).to_numpy(),
                "onset": frame["onset"].to_numpy(float), "duration": frame["duration"].to_numpy(float),
            }))
        trials = pd.concat(tables, ignore_index=True)
        self._result = build_betas(inputs.sources, inputs.designs, models, trials, inputs.space, options,
                                   self.chunks)
        self._masker = None
        return self

    def _check_method(self, run: int, frame: pd.DataFrame, shape: tuple, n_columns: int) -> None:
        n_scans = shape[0]
        if self.method == "lsa" and n_columns >= n_scans:
            raise ValueError(
                f"LSA needs fewer design columns than scans: run {run} has {len(frame)} trials, "
                f"{n_columns} columns in all with drifts and confounds, for {n_scans} (kept) scans. "
                "Use method='lss' (one small model per trial), which still works."
            )
        if self.method == "lss1" and len(frame) < 2:
            raise ValueError(f"method='lss1' collapses the other trials of a run into one column; run {run} "
                             "has a single trial. Use method='lss' or 'lsa'.")

    # ------------------------------------------------------------ fitted state
    def _fitted(self) -> BetaSeries:
        if self._result is None:
            raise NotFittedError("This BetaSeriesModel instance is not fitted yet. Call 'fit' with appropriate "
                                 "arguments before using this estimator.")
        return self._result

    def __sklearn_is_fitted__(self) -> bool:
        return self._result is not None

    @property
    def trials_(self) -> pd.DataFrame:
        """The trials, in events order, run after run: ``run``, ``trial_type``, ``onset``, ``duration``."""
        return self._fitted().trials.copy()

    @property
    def design_matrices_(self) -> list:
        """Each run's LSA design (one column per trial; kept scans)."""
        return list(self._fitted().designs)

    @property
    def space_(self):
        """The element space (mask, grid or mesh, smoothing), as FirstLevelModel's ``space_``."""
        return self._fitted().space

    @property
    def mask_img_(self):
        return self._fitted().space.mask_img

    @property
    def masker_(self):
        """The equivalent fitted nilearn masker (the one given as ``mask_img``, if any)."""
        if self._masker is None:
            self._masker = self._fitted().space.to_nilearn()
        return self._masker

    def _trial_array(self, data, name: str) -> xr.DataArray:
        result = self._fitted()
        trials = result.trials
        coords = {col: ("trial", trials[col].to_numpy()) for col in ("run", "trial_type", "onset", "duration")}
        coords.update(result.space.coords())
        return xr.DataArray(data, dims=("trial", "voxel"), coords=coords, name=name)

    @property
    def betas_(self) -> xr.DataArray:
        """Every trial's beta, lazily: dims ``(trial, voxel)``.

        ``.values``, ``.compute()`` or ``dask.compute`` on dask's local thread pool run with one BLAS
        thread per task (:func:`daskglm.graph.resources.limit_blas_on_local_computes`), as
        :meth:`persist` does.
        """
        return self._trial_array(self._fitted().betas, "beta")

    @property
    def variances_(self) -> xr.DataArray:
        """Every trial's beta variance (nilearn's ``effect_variance``), lazily."""
        return self._trial_array(self._fitted().variances, "effect_variance")

    def persist(self) -> BetaSeriesModel:
        """Compute the beta series once and keep it in memory."""
        result = self._fitted()
        betas, variances, dof = compute(result.betas, result.variances, result.dof)
        self._result = BetaSeries(betas, variances, dof, result.trials, result.designs, result.space,
                                  result.sources)
        return self

    # ------------------------------------------------------------- persistence
    def to_zarr(self, store, overwrite: bool = False) -> None:
        """Write the beta series (computing it) to a local Zarr store; ``daskglm.open_model`` reopens it.

        Parameters
        ----------
        store : str or path
        overwrite : bool, default=False
            Replace an existing store (checked before computing and again when the store is moved into place).
        """
        write_beta_series(self._fitted(), self._stored_params(), store, overwrite=overwrite)

    def _stored_params(self) -> dict:
        """:meth:`get_params` as stored: the smoothing actually applied (a given masker brings its own).

        As :meth:`daskglm.FirstLevelModel._stored_params`: a reopened model and its ``masker_`` smooth
        as the fit did.  An image or masker given as ``mask_img`` is not stored (the store keeps the mask).
        """
        params = self.get_params()
        if not isinstance(params["mask_img"], (str, os.PathLike, type(None), bool)):
            params["mask_img"] = None
        params = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in params.items()}
        fwhm = self._fitted().space.smoothing_fwhm
        params["smoothing_fwhm"] = np.asarray(fwhm).tolist() if fwhm is not None else None
        return params

    @classmethod
    def from_store(cls, store) -> BetaSeriesModel:
        """The model written to ``store`` by :meth:`to_zarr`, its beta series read lazily (no refit)."""
        result, params = read_beta_series(store)
        unknown = sorted(set(params) - set(inspect.signature(cls).parameters))
        if unknown:
            raise StoreError(f"{str(store)!r}: model_params: unknown model parameter(s) {unknown}.")
        model = cls(**params)
        model._result = result
        return model

    def generate_report(self, title: str | None = None, maps_per_trial_type: int = 2, bg_img=None,
                        threshold: float | None = None):
        """An HTML report: parameters, mask, each run's LSA design, a few beta maps, the trials.

        Parameters
        ----------
        title : str, optional
        maps_per_trial_type : int, default=2
            Beta maps shown per trial type (its first trials).
        bg_img : image, optional
            Background of the maps.
        threshold : float, optional
            Absolute beta below which maps are transparent (default: the 90th percentile of the shown betas).

        Returns
        -------
        daskglm.reporting.report.GLMReport
            With nilearn ``HTMLReport``'s methods (``save_as_html``, ``open_in_browser``, ...).
        """
        from daskglm.betas.report import make_beta_series_report

        self._fitted()
        return make_beta_series_report(self, title, maps_per_trial_type, bg_img, threshold)

    def beta_maps(self, trial_type=None, output_type: str = "effect_size"):
        """The beta series as images: one volume (sample) per trial, in events order, run after run.

        Parameters
        ----------
        trial_type : str, optional
            One condition: return its image only.
        output_type : {'effect_size', 'effect_variance', 'stat', 'p_value', 'z_score'}
            As ``compute_contrast`` of the trial's own column.

        Returns
        -------
        dict {trial_type: image} or image
            4D ``Nifti1Image`` (``SurfaceImage`` / CIFTI for surface runs).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"'output_type' must be one of {list(OUTPUT_TYPES)}.\n'{output_type}' was provided.")
        result = self._fitted()
        types = list(pd.unique(result.trials["trial_type"]))
        if trial_type is not None and trial_type not in types:
            raise ValueError(f"No trial of trial_type {trial_type!r}; the trial types are {types}.")
        wanted = types if trial_type is None else [trial_type]
        needs_variance = output_type != "effect_size"
        betas, variances, dof = compute(result.betas, result.variances if needs_variance else None, result.dof)
        images = {}
        for name in wanted:
            rows = np.flatnonzero(result.trials["trial_type"].to_numpy() == name)
            values = np.stack([
                trial_statistic(betas[r], variances[r] if needs_variance else None, float(dof[r]), output_type)
                for r in rows
            ])
            images[name] = result.space.unmask(values, f"{output_type} of the {name} trials")
        return images if trial_type is None else images[trial_type]

