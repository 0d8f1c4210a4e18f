"""``SecondLevelModel``: nilearn's group GLM, computed blockwise on dask.

A drop-in for :class:`nilearn.glm.second_level.SecondLevelModel` (0.14.1):
the same parameters, attributes, checks and outputs, and nilearn's reporting
(it subclasses nilearn's class and replaces ``fit`` and ``compute_contrast``).
In addition it reads daskglm study stores (``fit("study.zarr")``, optionally
``subjects=[...]``) and fits mixed effects with first-level variances
(``variance_input``, :mod:`daskglm.kernels.second_level`).

``fit`` resolves the inputs, builds the design and fits nilearn's masker
(the mask only: no map is read when ``mask_img`` is given, except that one
file holding every subject's map — a 4D NIfTI image, a multi-map CIFTI
file, as ``second_level_input`` or ``variance_input`` — is read whole to be
split into maps).
``compute_contrast`` builds one graph — the subjects' maps (first-level
contrasts of stored fits included), stacked by voxel blocks, the OLS or
mixed-effects kernel per block — and computes it once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.glm.second_level import SecondLevelModel as _NilearnSecondLevelModel

from daskglm.compat.nilearn import (
    check_group_confounds,
    check_mask_fits_images,
    check_parameter_in_allowed,
    check_params,
    contrast_value,
    contrasts_as_dict,
    embedded_masker,
    load_tables,
    pad_contrast,
)
from daskglm.errors import GroupInputError
from daskglm.glm.contrasts import OUTPUT_TYPES, expression_to_contrast_vector
from daskglm.graph.resources import compute
from daskglm.group.graph import mixed_contrast, ols_contrast, stack_rows
from daskglm.group.inputs import GroupInput, effect_items, resolve_input, sample_map, subject_maps
from daskglm.group.maskers import CiftiMasker, check_mask_kind, describe, input_kind, mask_kind
from daskglm.io.cifti import is_cifti
from daskglm.kernels.contrast import ContrastLayout
from daskglm.kernels.second_level import MIXED_EXTRA_ROWS, OLSDesign
from daskglm.space.base import masker_mask

__all__ = ["SecondLevelModel", "GroupContrast", "second_level_con_val"]


class GroupContrast(NamedTuple):
    """A contrast's lazy graph (:meth:`SecondLevelModel.contrast_graph`)."""

    packed: Any  # dask array (q + 4, V), one more row (σ²_between) for mixed effects
    q: int  # effect rows
    con_val: Any  # nilearn's contrast value (for the image descriptions)
    Y: Any  # dask array (n, V): the subjects' maps on the group mask
    stat_type: str

    def maps(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Computed ``packed`` values by output type (nilearn's shapes: F effects stay 2-D)."""
        return ContrastLayout(self.q).unpack(values, squeeze=self.stat_type != "F")


class SecondLevelModel(_NilearnSecondLevelModel):
    """nilearn's second-level GLM on dask, with study stores and mixed effects.

    Parameters
    ----------
    mask_img, target_affine, target_shape, smoothing_fwhm, memory, memory_level, verbose, n_jobs, \
minimize_memory, reports
        As in :class:`nilearn.glm.second_level.SecondLevelModel` (``n_jobs`` and
        ``memory`` are accepted; dask's scheduler does the parallel work).

    Attributes
    ----------
    design_matrix_, confounds_, masker_, n_elements_, second_level_input_, labels_, results_
        As nilearn's.  ``results_`` holds nilearn's regression results only
        with ``minimize_memory=False`` (computed from the same data).
    between_variance_ : Nifti1Image, SurfaceImage, Cifti2Image or None
        Per-element REML between-subject variance of the last mixed-effects contrast.
    mean_img_ : Nifti1Image or None
        The subjects' mean anatomy (daskglm first-level models and study stores), the group report's background.
    """

    def __init__(self, mask_img=None, target_affine=None, target_shape=None, smoothing_fwhm=None,
                 memory=None, memory_level=1, verbose=0, n_jobs=1, minimize_memory=True, reports=True):
        super().__init__(mask_img=mask_img, target_affine=target_affine, target_shape=target_shape,
                         smoothing_fwhm=smoothing_fwhm, memory=memory, memory_level=memory_level,
                         verbose=verbose, n_jobs=n_jobs, minimize_memory=minimize_memory, reports=reports)

    # ------------------------------------------------------------------ fit
    def fit(self, second_level_input, confounds=None, design_matrix=None, *, variance_input=None,
            subjects=None, storage_options: dict | None = None):
        """Fit the second-level GLM (the design and the mask; maps are read by ``compute_contrast``).

        Parameters
        ----------
        second_level_input : list of images or paths, 4D image, pandas Series, DataFrame, \
list of fitted FirstLevelModel (nilearn's or daskglm's), or a daskglm study store
            As nilearn's (NIfTI images, 1-D ``SurfaceImage`` maps or one 2-D
            ``SurfaceImage``, models fitted on volumes or surfaces), plus
            CIFTI-2 dense scalar maps (``.dscalar.nii``: one per subject, or
            one file of one map per subject; maps come back as dense scalar
            images over the same brain models) and a study store path or URL
            (each complete subject ``sub-<id>`` is a fitted first-level model
            labelled ``sub-<id>``; volume, surface or CIFTI fits).
        confounds : pandas.DataFrame, optional
            With a ``subject_label`` column (nilearn's).
        design_matrix : pandas.DataFrame, str or path, optional
            One row per map (nilearn's); default: an intercept (plus confounds).
        variance_input : None, 'first_level', list of images, 4D image or str, optional
            Known first-level variances for mixed effects (FLAME1-like REML).
            ``None``: OLS, as nilearn.  ``'first_level'``: each model's
            ``effect_variance`` of the first-level contrast (models and stores).
            Images: one per input map, in input order (a list, one 4D NIfTI
            image, or one CIFTI-2 file of one map per subject, as
            ``second_level_input`` takes them).  For a DataFrame input, the
            name of a column of variance map paths.
        subjects : list of str, optional
            Subjects of a study store to use (default: all complete ones).
        storage_options : dict, optional
            fsspec options for store URLs.

        Returns
        -------
        SecondLevelModel
        """
        from nilearn.glm.second_level import make_second_level_design_matrix

        check_params(self.__dict__)
        self.second_level_input_ = None
        self.confounds_ = None
        self.labels_ = None
        self.results_ = None
        self.between_variance_ = None
        self._fit_cache()
        group = resolve_input(second_level_input, confounds, design_matrix, subjects, storage_options)
        check_group_confounds(confounds)
        self._reset_report()
        self._group = group
        self._variance_input = _check_variance_input(variance_input, group)
        self.second_level_input_ = group.original
        self.confounds_ = confounds
        if design_matrix is None:
            if group.labels is None:
                raise GroupInputError("List of niimgs as 'second_level_input' require a design matrix "
                                      "to be provided.")
            design_matrix = make_second_level_design_matrix(group.labels, confounds)
        else:
            design_matrix = load_tables(design_matrix, "design_matrix")[0]
        self.design_matrix_ = design_matrix
        if group.kind != "dataframe":
            _check_rows(group.items, design_matrix)
        self._fit_masker(group)
        self._report_content["reports_at_fit_time"] = self.reports
        if self.reports:
            self._reporting_data = {}
        return self

    def _fit_masker(self, group: GroupInput) -> None:
        """nilearn's masker for the maps' kind (``NiftiMasker``, ``SurfaceMasker``), daskglm's for CIFTI."""
        given = self.mask_img is not None
        sample = None if given and group.uses_models else (
            group.items[0] if given and group.kind == "images" else sample_map(group))
        kind = input_kind(group.items)
        if kind == "cifti":
            check_mask_kind(self.mask_img, kind)
            if sample is None and not is_cifti(masker_mask(self.mask_img)):
                sample = sample_map(group)  # the brain models come from the maps
            self.masker_ = CiftiMasker(self.mask_img, self.smoothing_fwhm)
        else:
            if sample is not None:
                check_mask_fits_images(self.mask_img, sample)
            else:
                check_mask_kind(self.mask_img, kind)
            surface = kind == "surface" or mask_kind(self.mask_img) == "surface"
            self.masker_ = embedded_masker(self, "surface" if surface else "nii")
            self.masker_.memory_level = self.memory_level
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*Generation of a mask.*")
            self.masker_.fit(sample)
        self.n_elements_ = self.masker_.n_elements_

    # ------------------------------------------------------------ contrasts
    def contrast_graph(self, second_level_contrast=None, first_level_contrast=None,
                       second_level_stat_type=None):
        """The lazy packed maps of a contrast (nothing is computed).

        Returns
        -------
        GroupContrast
            ``packed`` (dask array ``(q + 4, V)``: effect rows, variance, stat,
            p, z, and σ²_between for mixed effects), ``q``, ``con_val``, ``Y``
            (the subjects' maps, ``(n, V)``), ``stat_type``.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        group = self._group
        if group.uses_models and first_level_contrast is None:
            raise GroupInputError(
                "If 'second_level_input' was a list of FirstLevelModel, then first_level_contrast is "
                "mandatory. It corresponds to the second_level_contrast argument of the compute_contrast "
                "method of FirstLevelModel.")
        con_val = second_level_con_val(second_level_contrast, self.design_matrix_)
        items = effect_items(group, first_level_contrast)
        _check_rows(items, self.design_matrix_)
        n_vox = self.n_elements_
        Y = stack_rows(subject_maps(items, self.masker_, n_vox, first_level_contrast, "effect_size",
                                    group.uses_models))
        X = self.design_matrix_.values.astype(np.float64)
        design = OLSDesign(X)
        con, stat_type, dim = _contrast(con_val, second_level_stat_type, X.shape[1])
        q = dim if stat_type == "F" else 1
        if self._variance_input is None:
            return GroupContrast(ols_contrast(Y, design, con, stat_type, dim), q, con_val, Y, stat_type)
        Vw = stack_rows(self._variance_rows(first_level_contrast, n_vox))
        return GroupContrast(mixed_contrast(Y, Vw, design, con, stat_type, dim), q, con_val, Y, stat_type)

    def _variance_rows(self, first_level_contrast, n_vox):
        group, spec = self._group, self._variance_input
        if spec == "first_level":
            return subject_maps(group.items, self.masker_, n_vox, first_level_contrast, "effect_variance", True)
        if isinstance(spec, str):  # a DataFrame column
            table = group.table
            items = table[table["map_name"] == first_level_contrast][spec].tolist()
        else:
            items = spec
        _check_rows(items, self.design_matrix_)
        return subject_maps(items, self.masker_, n_vox)

    def compute_contrast(self, second_level_contrast=None, first_level_contrast=None,
                         second_level_stat_type=None, output_type="z_score"):
        """Contrast maps as images, as nilearn's ``compute_contrast``.

        Parameters
        ----------
        second_level_contrast : str, array or None
            Over the design's columns; ``None`` with a one-column design.
        first_level_contrast : str or array, optional
            For model and store inputs (the first-level contrast computed per
            subject, in the same graph) and DataFrame inputs (``map_name``).
        second_level_stat_type : {None, 't', 'F'}
        output_type : {'z_score', 'stat', 'p_value', 'effect_size', 'effect_variance', 'all'}

        Returns
        -------
        Nifti1Image, or dict of them for ``'all'``
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        check_parameter_in_allowed(output_type, [*OUTPUT_TYPES, "all"], "output_type")
        graph = self.contrast_graph(second_level_contrast, first_level_contrast, second_level_stat_type)
        q, con_val = graph.q, graph.con_val
        if self.minimize_memory:
            (values,) = compute(graph.packed)
        else:
            values, y = compute(graph.packed, graph.Y)
            self._keep_results(y)
        self.labels_ = np.zeros(values.shape[1])
        if self.results_ is None:
            self.results_ = {0.0: None}
        maps = graph.maps(values)
        if self._variance_input is not None:
            between = ContrastLayout(q, MIXED_EXTRA_ROWS).unpack(values)["between_variance"]
            self.between_variance_ = self.masker_.inverse_transform(between)
        wanted = list(OUTPUT_TYPES) if output_type == "all" else [output_type]
        outputs = {}
        for name in wanted:
            outputs[name] = describe(self.masker_.inverse_transform(maps[name]),
                                     f"{output_type} of contrast {con_val}")
        return outputs if output_type == "all" else outputs[output_type]

    def _keep_results(self, y: np.ndarray) -> None:
        """nilearn's full regression results (``minimize_memory=False``), from the same data."""
        from nilearn.glm.first_level import run_glm

        labels, results = run_glm(y, self.design_matrix_.values, noise_model="ols")
        self.labels_, self.results_ = labels, results

    def _generate_report_content(self, contrasts, *args, **kwargs):
        """nilearn's report content, with string contrasts parsed by daskglm (never evaluated).

        Without the warnings of nilearn's drawing that tell the reader nothing the report does not show:
        numpy's "converting a masked element to nan" (drawing the mask), and for a map no voxel survives
        "empty mask", "The given float value must not exceed ..." and "No clusters found" (its empty
        cluster table says so).
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Warning: converting a masked element to nan.")
            warnings.filterwarnings("ignore", message="empty mask", category=UserWarning)
            warnings.filterwarnings("ignore", message="The given float value must not exceed")
            warnings.filterwarnings("ignore", message="No clusters found")
            return self._report_content_of(contrasts, *args, **kwargs)

    def _report_content_of(self, contrasts, *args, **kwargs):
        contrasts = contrasts_as_dict(contrasts)
        if contrasts is None or not hasattr(self, "design_matrix_"):  # no contrast, or not fitted: nilearn's
            return super()._generate_report_content(contrasts, *args, **kwargs)
        vectors = {name: second_level_con_val(con, self.design_matrix_) if isinstance(con, str) else con
                   for name, con in contrasts.items()}
        super()._generate_report_content(vectors, *args, **kwargs)
        # nilearn's methods text lists the contrasts given as strings
        self._report_content["contrasts"] = [c for c in contrasts.values() if isinstance(c, str)]
        return None

    @property
    def mean_img_(self):
        """The subjects' mean anatomy: the mean of their first-level ``mean_img_`` on the group mask's grid.

        For daskglm first-level models and study stores (each fit's mean signal,
        kept by its streaming pass: reading it computes nothing else); None for
        map inputs, nilearn's models, or fits that are not volumes.  The group
        report draws its maps on it.
        """
        from sklearn.utils.validation import check_is_fitted

        from daskglm.reporting.group_report import average_images

        check_is_fitted(self)
        if not self._group.uses_models:
            return None
        means = [getattr(model, "mean_img_", None) for model in self._group.items]
        if not means or not all(isinstance(m, nib.Nifti1Image) for m in means):
            return None
        return average_images(means, self.masker_.mask_img_)

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "second_level_input_", None) is not None


def second_level_con_val(second_level_contrast, design_matrix: pd.DataFrame) -> np.ndarray:
    """nilearn's second-level contrast value, with expressions parsed by :mod:`daskglm.glm.contrasts`.

    nilearn evaluates string contrasts with ``DataFrame.eval``; here they are
    parsed (:func:`daskglm.glm.contrasts.expression_to_contrast_vector`), so a
    contrast string cannot run code.  Arrays and ``None`` follow nilearn.

    Raises
    ------
    ContrastError
        A string that is not a linear combination of the design's columns.
    """
    if isinstance(second_level_contrast, str):
        return expression_to_contrast_vector(second_level_contrast, [str(c) for c in design_matrix.columns])
    return contrast_value(second_level_contrast, design_matrix)


def _contrast(con_val, stat_type, n_columns: int) -> tuple[np.ndarray, str, int]:
    """nilearn's contrast checks: (padded contrast, stat type, dimension)."""
    con = np.asarray(con_val, dtype=np.float64)
    dim = con.shape[0] if con.ndim > 1 else 1
    if stat_type is None:
        stat_type = "t" if dim == 1 else "F"
    check_parameter_in_allowed(stat_type, ["t", "F"], "stat_type")
    con = pad_contrast(con, np.zeros((n_columns, 1)), stat_type)
    if stat_type == "t" and con.ndim == 2:
        con = con[0]
    return con, stat_type, dim


def _check_rows(items, design_matrix) -> None:
    if len(items) != design_matrix.shape[0]:
        raise GroupInputError(
            "'design_matrix' does not match the number of maps considered. "
            f"{design_matrix.shape[0]} rows in design matrix do not match with {len(items)} maps.")


def _check_variance_input(spec, group: GroupInput):
    if spec is None:
        return None
    if isinstance(spec, str) and spec == "first_level":
        if not group.uses_models:
            raise GroupInputError("variance_input='first_level' needs first-level models or a study store "
                                  "as 'second_level_input'.")
        return spec
    if isinstance(spec, str) and group.kind == "dataframe" and not Path(spec).exists():
        if spec not in group.table.columns:
            raise GroupInputError(f"variance_input {spec!r} is not a column of the input DataFrame.")
        return spec
    import nibabel as nib

    if isinstance(spec, pd.Series):
        spec = spec.to_list()
    if is_cifti(spec):  # one CIFTI file of one map per subject, as a second_level_input
        from daskglm.group.maskers import cifti_maps

        spec = cifti_maps(spec)
    elif isinstance(spec, (str, Path, nib.spatialimages.SpatialImage)):
        from nilearn.image import check_niimg

        spec = nib.funcs.four_to_three(check_niimg(spec, ensure_ndim=4))
    if not isinstance(spec, list):
        raise GroupInputError("variance_input must be None, 'first_level', a list of images, a 4D image "
                              f"or a DataFrame column name; got {type(spec).__name__}.")
    if group.kind != "images" or len(spec) != len(group.items):
        raise GroupInputError(f"variance_input has {len(spec)} maps; give one per input map "
                              f"({len(group.items)}), for image inputs.")
    cifti = is_cifti(group.items[0])
    wrong = next((i for i, img in enumerate(spec) if is_cifti(img) != cifti), None)
    if wrong is not None:
        raise GroupInputError(f"variance_input[{wrong}] is {'not ' if cifti else ''}a CIFTI-2 map but the input "
                              f"maps are {'' if cifti else 'not '}: give variances of the input maps' kind.")
    return spec
