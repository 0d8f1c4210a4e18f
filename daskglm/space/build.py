"""From the masker parameters of a model to its element space: nilearn's masker decisions, made once.

nilearn's ``FirstLevelModel`` hands its runs to a ``NiftiMasker`` built from
the model's parameters (``mask_img``, ``smoothing_fwhm``, ``target_affine``,
``target_shape``), or to the fitted masker given as ``mask_img``, whose mask,
smoothing and target grid then take over the model's; for ``SurfaceImage``
runs, to a ``SurfaceMasker``.  This module makes the same decisions
for the streaming engine, in one place, in two steps — :func:`plan_space`
(checks and decisions, no data read) and :meth:`SpacePlan.build` (the mask
and the streamed runs), so that a bad design, checked in between, fails
before any data is read:

- the masker recipe (:class:`MaskerParams`, :func:`masker_params`): a given
  fitted ``NiftiMasker`` / ``SurfaceMasker``, its mask, smoothing and options,
  with nilearn's warnings and errors;
- the runs' kind and grid checks (one geometry, a mask of the runs' kind);
- the smoothing (validated; a surface needs a mesh and a scalar FWHM);
- the target grid (``target_affine``/``target_shape``, or a mask on another
  grid), the mask on it (given, every element, or nilearn's EPI mask: the one
  eager step, it reads the runs once), and nilearn's crop of it;
- the runs as the engine streams them (resampled onto the crop, if any).

:func:`element_space` rebuilds the space of a stored fit from its record.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from daskglm.io.base import RunSource
from daskglm.io.nifti import load_image
from daskglm.kernels.resample import ResamplingGrid, resampling_grid
from daskglm.space.base import ElementSpace, is_nilearn_instance, masker_mask
from daskglm.space.surface import (
    SurfaceSpace,
    check_mask_kind,
    check_same_surface,
    check_surface_smoothing,
    is_surface_source,
    prepare_surface_mask,
)
from daskglm.space.volume import VolumeSpace, check_same_geometry, prepare_mask, validated_smoothing_fwhm

__all__ = ["MaskerParams", "masker_params", "SpacePlan", "plan_space", "element_space"]

#: Signal-cleaning options of a given masker that the GLM does not apply.
_UNSUPPORTED_MASKER_OPTIONS = ("detrend", "low_pass", "high_pass")


@dataclass
class MaskerParams:
    """The masking recipe of a fit, as nilearn's masker would apply it.

    Attributes
    ----------
    mask_img : path, image, None or False
        The mask to prepare (``None``: nilearn's EPI mask from the runs).
    smoothing_fwhm, target_affine, target_shape
        As the masker applies them.
    given_masker : nilearn NiftiMasker, SurfaceMasker or None
        The fitted masker given as ``mask_img`` (nilearn exposes it as ``masker_``).
    """

    mask_img: Any
    smoothing_fwhm: Any
    target_affine: Any = None
    target_shape: Any = None
    given_masker: Any = None


def masker_params(estimator) -> MaskerParams:
    """nilearn's ``_prepare_mask`` decisions for an estimator's ``mask_img`` and masker parameters.

    A fitted ``NiftiMasker`` or ``SurfaceMasker`` given as ``mask_img`` brings
    its mask, smoothing and target grid (nilearn: ``masker_`` is that masker).

    Parameters
    ----------
    estimator : FirstLevelModel-like
        Read for ``mask_img``, ``smoothing_fwhm``, ``target_affine``,
        ``target_shape`` (and, for nilearn's override warning, its other
        parameters).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        An unfitted masker (nilearn's "not fitted" ``ValueError``).
    ValueError
        A masker with temporal filtering or detrending, which the GLM would skip.
    """
    mask_img = estimator.mask_img
    own = MaskerParams(mask_img, estimator.smoothing_fwhm, estimator.target_affine, estimator.target_shape)
    if not is_nilearn_instance(mask_img, "nilearn.maskers", "NiftiMasker", "SurfaceMasker"):  # nilearn's two
        return own
    if getattr(mask_img, "mask_img_", "not_none") is None:
        # nilearn's edge case: a fitted masker without mask: its parameters
        # override the estimator's (with nilearn's warning) and an EPI mask is computed
        _warn_overridden_parameters(estimator, mask_img)
        _check_masker_options(mask_img)
        return MaskerParams(None, mask_img.smoothing_fwhm, getattr(mask_img, "target_affine", None),
                            getattr(mask_img, "target_shape", None))
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(mask_img)
    _check_masker_options(mask_img)
    return MaskerParams(masker_mask(mask_img), mask_img.smoothing_fwhm, getattr(mask_img, "target_affine", None),
                        getattr(mask_img, "target_shape", None), given_masker=mask_img)


def _warn_overridden_parameters(estimator, masker) -> None:
    """nilearn's warning when a masker's parameters replace the estimator's (``check_embedded_masker``)."""
    from nilearn.maskers import MultiNiftiMasker

    forced = {"self", "high_pass", "memory", "memory_level", "verbose", "n_jobs"}
    names = [n for n in inspect.signature(MultiNiftiMasker.__init__).parameters
             if n not in forced and hasattr(estimator, n) and hasattr(masker, n)]
    conflicts = []
    for name in sorted(names):
        ours, theirs = getattr(masker, name), getattr(estimator, name)
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
            UserWarning, stacklevel=5,
        )


def _check_masker_options(masker) -> None:
    used = [name for name in _UNSUPPORTED_MASKER_OPTIONS if getattr(masker, name, None) not in (None, False)]
    if used:
        raise ValueError(
            f"The masker given as mask_img sets {used}; daskglm's FirstLevelModel applies the "
            "masker's mask, smoothing and resampling only (model drifts with the design instead)."
        )


@dataclass
class SpacePlan:
    """nilearn's masker decisions for a fit, made and checked before any data is read.

    :func:`plan_space` makes it before the designs are built (nilearn checks
    the runs' kinds and the mask's type first); :meth:`build` then reads what
    it must — a given mask, nilearn's EPI mask from the runs' means, the runs'
    value ranges for resampling — so that a bad design fails before any of it.

    Attributes
    ----------
    params : MaskerParams
    smoothing_fwhm : float, sequence or None
        Validated (a surface's: a scalar, with a mesh to smooth on).
    raw : list of RunSource
        The runs as given (one grid, or one mesh / set of brain models).
    target_grid : ResamplingGrid or None
        The grid of ``target_affine``/``target_shape`` (volumes), if given.
    """

    params: MaskerParams
    smoothing_fwhm: Any
    raw: list
    target_grid: ResamplingGrid | None = None

    def build(self, views: list[RunSource] | None = None) -> tuple[ElementSpace, list[RunSource]]:
        """The element space and the runs as the engine streams them.

        Parameters
        ----------
        views : list of RunSource, optional
            The runs as they are read (censored views of ``raw``); default ``raw``.

        Returns
        -------
        (ElementSpace, list of RunSource)
            The space (mask, affine, smoothing, and the crop of the mask's
            grid the runs are resampled onto, or the geometry of surfaces)
            and the runs to stream: ``views``, resampled onto the crop when
            there is one.

        Raises
        ------
        NiftiInputError, SurfaceInputError
            A mask off the runs' grid or geometry, non-finite, or empty.
        """
        if is_surface_source(self.raw[0]):
            space = _surface_space(self.params, self.smoothing_fwhm, self.raw)
        else:
            space = _volume_space(self.params, self.smoothing_fwhm, self.raw, self.target_grid)
        return space, space.stream_sources(self.raw if views is None else views, self.raw)


def plan_space(estimator, raw: list[RunSource]) -> SpacePlan:
    """The checks and decisions of an estimator's masker, before any data is read.

    Parameters
    ----------
    estimator : FirstLevelModel-like
        Its ``mask_img``, ``smoothing_fwhm``, ``target_affine`` and
        ``target_shape`` (:func:`masker_params`).
    raw : list of RunSource
        The runs as given.

    Returns
    -------
    SpacePlan

    Raises
    ------
    NiftiInputError, SurfaceInputError, MeshDimensionError
        Runs on different grids or meshes.
    MaskTypeError
        A mask (or masker) of another kind than the runs (nilearn's ``TypeError``).
    ValueError, TypeError
        Bad smoothing, an unfitted masker, a masker with signal cleaning.
    """
    params = masker_params(estimator)
    fwhm = validated_smoothing_fwhm(params.smoothing_fwhm)
    ref = raw[0]
    if is_surface_source(ref):
        check_same_surface(raw)
        check_mask_kind(estimator.mask_img, ref)
        check_surface_smoothing(fwhm, ref)
        return SpacePlan(params, fwhm, list(raw))
    check_same_geometry(raw)
    check_mask_kind(estimator.mask_img, ref)
    return SpacePlan(params, fwhm, list(raw), _target_grid(params, ref))  # nilearn's grid errors, now


def _surface_space(params: MaskerParams, fwhm, raw: list[RunSource]) -> SurfaceSpace:
    """Vertices / grayordinates: the mask over the runs' geometry."""
    ref = raw[0]
    mask = prepare_surface_mask(params.mask_img, raw)
    return SurfaceSpace(mask, ref.geometry, fwhm, affine=ref.affine, given_masker=params.given_masker)


def _volume_space(params: MaskerParams, fwhm, raw: list[RunSource], grid: ResamplingGrid | None) -> VolumeSpace:
    """Voxels: a volume mask on the target grid (if any), nilearn's crop when resampling."""
    ref = raw[0]
    given = params.mask_img
    if given is not None and given is not False:
        given = load_image(given, "mask")  # once: a mask at a URL is downloaded once
    mask_grid = grid if grid is not None else _mask_grid(given, ref)
    mask = prepare_mask(given, raw, mask_grid)
    if mask_grid is None or _on_grid(mask_grid, ref):
        return VolumeSpace(mask, ref.affine, fwhm, given_masker=params.given_masker)
    # nilearn's masker crops the mask (bounding box + 1 voxel) and resamples the
    # runs onto that crop, clipped to the range of the whole run (one reduction pass)
    crop = _nilearn_crop(mask)
    stream_affine = mask_grid.affine.copy()
    stream_affine[:3, 3] += mask_grid.affine[:3, :3] @ [c.start for c in crop]
    return VolumeSpace(mask, mask_grid.affine, fwhm, crop=crop, stream_affine=stream_affine,
                       given_masker=params.given_masker)


def _target_grid(params: MaskerParams, ref: RunSource) -> ResamplingGrid | None:
    if params.target_affine is None:
        if params.target_shape is not None:
            raise ValueError("If target_shape is specified, target_affine should be specified too.")
        return None
    return resampling_grid(ref.spatial_shape, ref.affine, params.target_affine, params.target_shape)


def _on_grid(grid: ResamplingGrid, ref: RunSource) -> bool:
    """Whether ``grid`` is the run's own grid (nilearn's masker then does not resample)."""
    return grid.shape == tuple(ref.spatial_shape) and np.allclose(grid.affine, ref.affine)


def _mask_grid(mask_img, ref: RunSource) -> ResamplingGrid | None:
    """The grid of a given mask when it differs from the runs' (nilearn then resamples the runs)."""
    if mask_img is None or mask_img is False:
        return None
    img = load_image(mask_img, "mask")
    shape = tuple(img.shape[:3])
    if shape == tuple(ref.spatial_shape) and np.allclose(img.affine, ref.affine):
        return None
    warnings.warn(
        "imgs are being resampled to the mask_img resolution. This process is memory intensive. "
        "You might want to provide a target_affine that is equal to the affine of the imgs or "
        "resample the mask beforehand to save memory and computation time.",
        UserWarning, stacklevel=5,
    )
    return resampling_grid(ref.spatial_shape, ref.affine, img.affine, shape)


def _nilearn_crop(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """nilearn's ``crop_img(mask)`` box: the non-zero bounding box padded by one voxel."""
    coords = np.nonzero(mask)
    start = np.maximum(np.array([c.min() for c in coords]) - 1, 0)
    end = np.minimum(np.array([c.max() for c in coords]) + 2, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, end))  # type: ignore[return-value]


def element_space(mask: np.ndarray, affine: np.ndarray, geometry=None, smoothing_fwhm=None) -> ElementSpace:
    """The space of a stored fit: a volume mask and its affine, or an element mask on a geometry.

    Parameters
    ----------
    mask : ndarray of bool
    affine : ndarray (4, 4)
    geometry : SurfaceGeometry, CiftiGeometry or None
        ``None`` for volumes.
    smoothing_fwhm : float, sequence or None

    Returns
    -------
    ElementSpace
    """
    if geometry is None:
        return VolumeSpace(np.asarray(mask, dtype=bool), np.asarray(affine, dtype=float), smoothing_fwhm)
    return SurfaceSpace(np.asarray(mask, dtype=bool), geometry, smoothing_fwhm, affine=np.asarray(affine, float))
