"""What ``FirstLevelModel.fit`` streams: runs, designs, mask, smoothing, target grid, censoring.

nilearn's ``FirstLevelModel`` hands its runs to a ``NiftiMasker`` built from
the model's parameters, or to the fitted masker given as ``mask_img``; that
masker resamples (``target_affine``/``target_shape``), smooths and masks
each run, and ``sample_masks`` keep a subset of its scans.  This module makes
the same decisions for the streaming engine, without reading volume data
(except nilearn's EPI mask for ``mask_img=None``):

- :func:`masker_settings`: mask, smoothing and target grid from ``mask_img``
  (path, image, ``None``, ``False``, or a fitted ``NiftiMasker`` whose mask,
  ``smoothing_fwhm``, ``target_affine`` and ``target_shape`` take over the
  model's, as in nilearn);
- :func:`fit_inputs`: the runs as the engine sees them
  (:class:`~daskglm.io.views.ResampledRunSource` over
  :class:`~daskglm.io.views.CensoredRunSource`), the censored designs and the mask.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from dask import delayed

from daskglm.glm.design import DESIGN_PARAMS, run_designs
from daskglm.glm.sample_masks import censor_design, check_sample_masks
from daskglm.graph.resources import compute
from daskglm.io.base import RunSource
from daskglm.io.runs import as_run_source
from daskglm.io.views import CensoredRunSource, ResampledRunSource, run_value_range
from daskglm.kernels.resample import ResamplingGrid, resampling_grid
from daskglm.space.surface import (
    check_mask_kind,
    check_surface_smoothing,
    is_surface_source,
    surface_smoothing,
)
from daskglm.space.volume import check_same_geometry, prepare_mask, validated_smoothing_fwhm

__all__ = ["MaskerSettings", "FitInputs", "masker_settings", "fit_inputs", "key_params"]

#: Signal-cleaning options of a given masker that the GLM does not apply.
_UNSUPPORTED_MASKER_OPTIONS = ("detrend", "low_pass", "high_pass")


@dataclass
class MaskerSettings:
    """The masking recipe of a fit.

    Attributes
    ----------
    mask_img : path, image, None or False
        The mask to prepare (``None``: nilearn's EPI mask from the runs).
    smoothing_fwhm, target_affine, target_shape
        As the masker applies them.
    masker : nilearn NiftiMasker or None
        The fitted masker given as ``mask_img`` (nilearn exposes it as ``masker_``).
    """

    mask_img: Any
    smoothing_fwhm: Any
    target_affine: Any
    target_shape: Any
    masker: Any = None


def _is_masker(obj) -> bool:
    # a NiftiMasker instance means nilearn.maskers is imported already: do not pay that import
    # (scikit-learn, ~0.6 s) to find out that a path or an image is not one
    maskers = sys.modules.get("nilearn.maskers")
    return maskers is not None and isinstance(obj, maskers.NiftiMasker)


def masker_settings(model) -> MaskerSettings:
    """nilearn's ``_prepare_mask`` decisions for ``model.mask_img``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        An unfitted ``NiftiMasker`` (nilearn's "not fitted" ``ValueError``).
    ValueError
        A masker with temporal filtering or detrending, which the GLM would skip.
    """
    mask_img = model.mask_img
    if not _is_masker(mask_img):
        return MaskerSettings(mask_img, model.smoothing_fwhm, model.target_affine, model.target_shape)
    if getattr(mask_img, "mask_img_", "not_none") is None:
        # nilearn's edge case: a fitted masker without mask: its parameters
        # override the model's (with nilearn's warning) and an EPI mask is computed
        masker = mask_img
        _warn_overridden_parameters(model, masker)
        _check_masker_options(masker)
        return MaskerSettings(None, masker.smoothing_fwhm, masker.target_affine, masker.target_shape)
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(mask_img)
    _check_masker_options(mask_img)
    return MaskerSettings(
        mask_img.mask_img_, mask_img.smoothing_fwhm, mask_img.target_affine, mask_img.target_shape,
        masker=mask_img,
    )


def _warn_overridden_parameters(model, masker) -> None:
    """nilearn's warning when a masker's parameters replace the model's (``check_embedded_masker``)."""
    import inspect

    from nilearn.maskers import MultiNiftiMasker

    forced = {"self", "high_pass", "memory", "memory_level", "verbose", "n_jobs"}
    names = [n for n in inspect.signature(MultiNiftiMasker.__init__).parameters
             if n not in forced and hasattr(model, n) and hasattr(masker, n)]
    conflicts = []
    for name in sorted(names):
        ours, theirs = getattr(masker, name), getattr(model, name)
        try:
            differ = bool(np.any(ours != theirs))
        except (TypeError, ValueError):
            differ = True
        if differ:
            conflicts.append(f"Parameter {name} :\n    Masker parameter {ours} - overriding estimator parameter {theirs}\n")
    if conflicts:
        warnings.warn(
            "Overriding provided-default estimator parameters with provided masker parameters :\n"
            + "".join(conflicts),
            UserWarning, stacklevel=4,
        )


def _check_masker_options(masker) -> None:
    used = [name for name in _UNSUPPORTED_MASKER_OPTIONS if getattr(masker, name, None) not in (None, False)]
    if used:
        raise ValueError(
            f"The masker given as mask_img sets {used}; daskglm's FirstLevelModel applies the "
            "masker's mask, smoothing and resampling only (model drifts with the design instead)."
        )


@dataclass
class FitInputs:
    """Everything the engine streams (see :func:`fit_inputs`)."""

    sources: list[RunSource]
    designs: list[pd.DataFrame]
    mask: np.ndarray
    smoothing_fwhm: Any
    masker: Any
    sample_masks: list[np.ndarray | None] | None
    #: where the runs' (resampled) grid lies in the mask's grid, and the mask's affine
    crop: tuple[slice, slice, slice] | None = None
    affine: np.ndarray | None = None


def _target_grid(settings: MaskerSettings, ref: RunSource) -> ResamplingGrid | None:
    if settings.target_affine is None:
        if settings.target_shape is not None:
            raise ValueError("If target_shape is specified, target_affine should be specified too.")
        return None
    return resampling_grid(ref.spatial_shape, ref.affine, settings.target_affine, settings.target_shape)


def _on_grid(grid: ResamplingGrid, ref: RunSource) -> bool:
    """Whether ``grid`` is the run's own grid (nilearn's masker then does not resample)."""
    return grid.shape == tuple(ref.spatial_shape) and np.allclose(grid.affine, ref.affine)


def _mask_grid(mask_img, ref: RunSource) -> ResamplingGrid | None:
    """The grid of a given mask when it differs from the runs' (nilearn then resamples the runs)."""
    if mask_img is None or mask_img is False or is_surface_source(ref):
        return None
    from daskglm.io.nifti import load_image

    img = load_image(mask_img, "mask")
    shape = tuple(img.shape[:3])
    if shape == tuple(ref.spatial_shape) and np.allclose(img.affine, ref.affine):
        return None
    warnings.warn(
        "imgs are being resampled to the mask_img resolution. This process is memory intensive. "
        "You might want to provide a target_affine that is equal to the affine of the imgs or "
        "resample the mask beforehand to save memory and computation time.",
        UserWarning, stacklevel=4,
    )
    return resampling_grid(ref.spatial_shape, ref.affine, img.affine, shape)


def _warn_ignored_design_parameters(model) -> None:
    """nilearn's warning for design parameters set away from their defaults next to given designs."""
    import inspect

    defaults = inspect.signature(type(model).__init__).parameters
    changed = []
    for name in sorted(DESIGN_PARAMS):
        value, default = getattr(model, name), defaults[name].default
        try:
            differ = bool(value != default)
        except (TypeError, ValueError):
            differ = True
        if differ:
            changed.append(name)
    if changed:
        warnings.warn(
            f"If design matrices are supplied, [{', '.join(changed)}] will be ignored.",
            UserWarning, stacklevel=4,
        )


def fit_inputs(model, run_imgs, events, confounds, sample_masks, design_matrices) -> FitInputs:
    """Validate ``fit``'s arguments and build the engine's inputs (reads headers only)."""
    settings = masker_settings(model)
    fwhm = validated_smoothing_fwhm(settings.smoothing_fwhm)
    runs = run_imgs if isinstance(run_imgs, (list, tuple)) else [run_imgs]
    if len(runs) == 0:
        raise ValueError("run_imgs is empty; give at least one 4D image.")
    raw = [as_run_source(r, i) for i, r in enumerate(runs)]
    check_same_geometry(raw)
    check_mask_kind(model.mask_img, raw[0])
    if is_surface_source(raw[0]):  # vertices / grayordinates (daskglm.space.surface)
        fwhm = surface_smoothing(settings.mask_img, fwhm)
        check_surface_smoothing(fwhm, raw[0])
    design_params = {name: getattr(model, name) for name in DESIGN_PARAMS}
    if design_matrices is not None:
        _warn_ignored_design_parameters(model)
    designs = run_designs(raw, events, confounds, design_matrices, design_params)
    kept = check_sample_masks(sample_masks, [s.n_scans for s in raw])
    if is_surface_source(raw[0]):  # vertices / grayordinates: no grid to resample
        grid = mask_grid = None
    else:
        grid = _target_grid(settings, raw[0])
        mask_grid = grid if grid is not None else _mask_grid(settings.mask_img, raw[0])
    mask = prepare_mask(settings.mask_img, raw, mask_grid)
    sources: list[RunSource] = list(raw)
    if kept is not None:
        designs = [censor_design(d, k) for d, k in zip(designs, kept)]
        sources = [s if k is None else CensoredRunSource(s, k) for s, k in zip(sources, kept)]
    _warn_no_residual_df(designs)
    crop, affine = None, None
    if mask_grid is not None and not _on_grid(mask_grid, raw[0]):
        # nilearn's masker crops the mask (bounding box + 1 voxel) and resamples the
        # runs onto that crop, clipped to the range of the whole run (one reduction pass)
        crop, affine = _nilearn_crop(mask), mask_grid.affine
        cropped_affine = affine.copy()
        cropped_affine[:3, 3] += affine[:3, :3] @ [c.start for c in crop]
        cropped_shape = tuple(c.stop - c.start for c in crop)
        stream_grid = resampling_grid(raw[0].spatial_shape, raw[0].affine, cropped_affine, cropped_shape)
        ranges = compute(*[delayed(run_value_range, pure=True)(s) for s in raw])
        sources = [ResampledRunSource(s, stream_grid, r) for s, r in zip(sources, ranges)]
    return FitInputs(sources, designs, mask, fwhm, settings.masker, kept, crop, affine)


def _warn_no_residual_df(designs: list[pd.DataFrame]) -> None:
    """nilearn fits n <= p with the pseudo-inverse and numpy's warnings; name the cause once."""
    for i, design in enumerate(designs):
        n, p = design.shape
        if n <= p:
            warnings.warn(
                f"Design matrix {i} has {p} columns for {n} (kept) scans: no residual degrees of "
                "freedom. It is fitted with the pseudo-inverse as nilearn does; stat, z and p "
                "values are undefined (NaN, or 0 statistics when n == p).",
                RuntimeWarning, stacklevel=4,
            )


def _nilearn_crop(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """nilearn's ``crop_img(mask)`` box: the non-zero bounding box padded by one voxel."""
    coords = np.nonzero(mask)
    start = np.maximum(np.array([c.min() for c in coords]) - 1, 0)
    end = np.minimum(np.array([c.max() for c in coords]) + 2, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, end))  # type: ignore[return-value]


def key_params(model) -> dict:
    """The model parameters for resume keys, with the smoothing actually applied.

    A masker given as ``mask_img`` brings its own ``smoothing_fwhm``; the
    key must change with it even though the model's parameter does not.
    """
    params = model.get_params()
    state = model._state
    if state is not None and getattr(model, "_masker", None) is not None:
        fwhm = state.smoothing_fwhm
        params["smoothing_fwhm"] = np.asarray(fwhm).tolist() if fwhm is not None else None
    return params
