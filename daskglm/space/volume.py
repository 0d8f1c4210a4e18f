"""Volume spaces: :class:`VolumeSpace`, the analysis mask (given, all voxels, or nilearn's EPI mask), grid checks.

:class:`VolumeSpace` is the :class:`~daskglm.space.base.ElementSpace` of
NIfTI-like runs: a boolean mask on a voxel grid, its affine, the smoothing,
and — when the runs are resampled onto the mask's grid, as nilearn's masker
does — the crop of that grid the runs are streamed on.

:func:`prepare_mask` turns ``FirstLevelModel(mask_img=...)`` into a boolean
array on the runs' grid.  For ``mask_img=None``, nilearn's ``FirstLevelModel`` fits a ``MultiNiftiMasker(mask_strategy='epi')``
on the runs: ``compute_epi_mask`` on each run's mean image, then
``intersect_masks(threshold=0.5, connected=True)``.  We stream each run once
to get its mean image (a dask reduction over time chunks) and hand the means to
nilearn's own ``compute_multi_epi_mask``, so the thresholds are nilearn's.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
from dask import delayed

from daskglm.errors import NiftiInputError
from daskglm.graph.resources import compute
from daskglm.io.base import RunSource
from daskglm.io.coords import to_volume, voxel_coords
from daskglm.io.export import lazy_unmask_4d, unmask
from daskglm.io.nifti import load_image
from daskglm.io.views import ResampledRunSource, run_value_range
from daskglm.kernels.masker import VolumeMasker
from daskglm.kernels.resample import resampling_grid
from daskglm.space.base import ElementSpace, _frozen

#: Smoothing beyond this is refused as a unit mistake.
MAX_SMOOTHING_MM = 100.0

__all__ = [
    "VolumeSpace", "validated_smoothing_fwhm", "prepare_mask", "check_grid", "check_same_geometry", "run_mean_image", "compute_epi_mask_from_runs",
]


class VolumeSpace(ElementSpace):
    """The voxels of a boolean mask on a grid (see :class:`~daskglm.space.base.ElementSpace`).

    Parameters
    ----------
    mask : ndarray of bool (x, y, z)
    affine : ndarray (4, 4)
        The mask's affine.
    smoothing_fwhm : float, sequence of 3 floats, or None
    crop : tuple of 3 slices, optional
        When the runs are resampled onto the mask's grid: the part of that
        grid they are streamed on (nilearn's masker crops the mask to its
        bounding box + 1 voxel and resamples the runs onto the crop).  The
        in-mask voxels, and their order, are the same.
    stream_affine : ndarray (4, 4), optional
        The affine of the streamed runs (the crop's; default: ``affine``).
    given_masker : nilearn NiftiMasker, optional
        The fitted masker given as ``mask_img`` (:meth:`to_nilearn` returns it).
    """

    kind = "volume"
    element_name = "voxels"

    def __init__(self, mask: np.ndarray, affine: np.ndarray, smoothing_fwhm=None,
                 crop: tuple[slice, slice, slice] | None = None, stream_affine: np.ndarray | None = None,
                 given_masker=None):
        self.mask = _frozen(np.array(mask, dtype=bool))
        self.affine = _frozen(np.array(affine, dtype=float))
        self.smoothing_fwhm = smoothing_fwhm
        self.crop = crop
        self.stream_affine = self.affine if stream_affine is None else np.asarray(stream_affine, dtype=float)
        self.given_masker = given_masker

    def __repr__(self) -> str:
        return f"VolumeSpace({self.n_elements} voxels on a {self.mask.shape} grid)"

    @property
    def stream_mask(self) -> np.ndarray:
        """The mask on the grid the runs are streamed on."""
        return self.mask if self.crop is None else self.mask[self.crop]

    def _token_extra(self):
        return (self.crop, self.stream_affine)

    def _mask_image(self) -> nib.Nifti1Image:
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.affine)

    def stream_masker_recipe(self) -> tuple:
        return VolumeMasker, (self.stream_mask, self.stream_affine, self.smoothing_fwhm)

    def stream_sources(self, views: list[RunSource], raw: list[RunSource]) -> list[RunSource]:
        """The runs resampled onto the crop, clipped to each whole run's value range (one pass), if cropped."""
        if self.crop is None:
            return list(views)
        shape = tuple(c.stop - c.start for c in self.crop)
        grid = resampling_grid(raw[0].spatial_shape, raw[0].affine, self.stream_affine, shape)
        ranges = compute(*[delayed(run_value_range, pure=True)(s) for s in raw])
        return [ResampledRunSource(s, grid, r) for s, r in zip(views, ranges)]

    def unmask(self, values, description: str = "") -> nib.Nifti1Image:
        return unmask(values, self.mask, self.affine, description)

    def unmask_series(self, values, description: str = "") -> nib.Nifti1Image:
        import dask.array as da

        return nib.Nifti1Image(lazy_unmask_4d(da.asarray(values), self.mask), self.affine)

    def as_volume(self, values, name: str | None = None, attrs: dict | None = None, fill_value: float = 0.0):
        return to_volume(values, self.mask, self.affine, name=name, attrs=attrs, fill_value=fill_value)

    def coords(self, dim: str = "voxel") -> dict:
        return voxel_coords(self.mask, self.affine, dim)

    def _nilearn_masker(self):
        from nilearn.maskers import NiftiMasker

        return NiftiMasker(mask_img=self.mask_img, smoothing_fwhm=self.smoothing_fwhm, standardize=None).fit()


def _mean_of_run(source: RunSource, chunk: int) -> np.ndarray:
    total = np.zeros(source.spatial_shape[::-1])
    for _, volumes in source.iter_chunks(chunk):
        vols = np.asarray(volumes, dtype=np.float64)
        vols[~np.isfinite(vols)] = 0
        total += vols.sum(axis=0)
    return (total / source.n_scans).transpose(2, 1, 0)


def run_mean_image(source: RunSource, chunk: int = 16):
    """Delayed mean image (x, y, z) of a run, streamed."""
    return delayed(_mean_of_run, pure=True)(source, chunk)


def compute_epi_mask_from_runs(sources: list[RunSource], grid=None) -> np.ndarray:
    """Boolean mask as nilearn's ``FirstLevelModel(mask_img=None)`` computes it.

    This is the one eager step of ``fit``: the mask sets the voxel count that
    every later array depends on.  With a target ``grid``
    (:class:`~daskglm.kernels.resample.ResamplingGrid`) each run's mean image
    is resampled onto it before thresholding, as nilearn's ``compute_mean`` does.
    """
    from nilearn.masking import compute_multi_epi_mask

    means = compute(*[run_mean_image(s) for s in sources])
    imgs = [nib.Nifti1Image(m.astype(np.float32), s.affine) for m, s in zip(means, sources)]
    target = {} if grid is None else {"target_affine": grid.affine, "target_shape": grid.shape}
    try:
        mask_img = compute_multi_epi_mask(imgs, **target)
    except ValueError as err:  # e.g. numpy's "argmax of an empty sequence" on tiny or flat images
        raise NiftiInputError(
            f"nilearn's EPI mask cannot be computed from these runs ({err}); "
            "give mask_img (an image or False)."
        ) from err
    return np.asarray(mask_img.dataobj) != 0


def prepare_mask(mask_img, sources: list[RunSource], grid=None) -> np.ndarray:
    """The analysis mask as a boolean array on the grid of the fit.

    Parameters
    ----------
    mask_img : path, Nifti1Image, False or None
        ``False`` selects every voxel; ``None`` computes nilearn's EPI mask
        from the runs (the one eager step of ``fit``); a 3D image (or 4D with
        one volume) on the runs' grid is used as given (non-zero = in).
    sources : list of RunSource
        The runs, on their own grid.
    grid : daskglm.kernels.resample.ResamplingGrid, optional
        The target grid (``target_affine``/``target_shape``).  A given mask is
        resampled onto it with nearest-neighbour interpolation, as nilearn's
        masker does; ``False`` covers the whole target grid.

    Raises
    ------
    NiftiInputError
        The mask is off the runs' grid, holds NaN/inf, or selects no voxel.
    """
    ref = sources[0]
    if mask_img is False:
        mask = np.ones(ref.spatial_shape if grid is None else grid.shape, dtype=bool)
    elif mask_img is None:
        mask = compute_epi_mask_from_runs(sources, grid)
    else:
        img = load_image(mask_img, "mask")
        if len(img.shape) == 4 and img.shape[3] == 1:
            img = nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine)
        if len(img.shape) != 3:
            raise NiftiInputError(f"The mask must be a 3D image, got shape {img.shape}.")
        data = np.asarray(img.dataobj)
        if not np.all(np.isfinite(data)):
            raise NiftiInputError("The mask contains NaN or infinite values.")
        if grid is None:
            check_grid(img.shape, img.affine, ref, "The mask")
            mask = data != 0
        else:
            mask = _resampled_mask(nib.Nifti1Image((data != 0).astype(np.int8), img.affine), grid)
    if not mask.any():
        raise NiftiInputError("The mask is empty: it selects no voxel.")
    return mask


def _resampled_mask(img: nib.Nifti1Image, grid) -> np.ndarray:
    """A mask image on ``grid`` with nearest-neighbour interpolation (nilearn's masker)."""
    from nilearn.image import resample_img

    if img.shape == tuple(grid.shape) and np.allclose(img.affine, grid.affine):
        return np.asarray(img.dataobj) != 0
    out = resample_img(img, target_affine=grid.affine, target_shape=grid.shape, interpolation="nearest",
                       copy_header=True, force_resample=True)
    return np.asarray(out.dataobj) != 0


def check_same_geometry(sources: list[RunSource]) -> None:
    """Every run must lie on the grid of the first (nilearn's ``check_same_fov`` message)."""
    errors, details = [], []
    for i, s in enumerate(sources[1:], start=1):
        try:
            check_grid(s.spatial_shape, s.affine, sources[0], f"Run {i} ({s.name})")
        except NiftiInputError as err:
            kind = "shape" if tuple(s.spatial_shape) != tuple(sources[0].spatial_shape) else "affine"
            errors.append(f"- img_#0 and img_#{i} do not have the same {kind}")
            details.append(str(err))
    if errors:
        raise NiftiInputError(
            "Following field of view errors were detected:\n" + "\n".join(errors) + "\n" + "\n".join(details)
        )


def check_grid(shape, affine, ref: RunSource, what: str) -> None:
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


def validated_smoothing_fwhm(fwhm):
    """The validated ``smoothing_fwhm`` (``None`` for no smoothing).

    Raises ``TypeError``/``ValueError`` for anything but ``None``, a
    non-negative number of mm or three of them; all zeros warn as nilearn
    does and mean no smoothing.
    """
    if fwhm is None:
        return None
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
        return None
    return fwhm
