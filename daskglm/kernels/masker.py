"""Per-volume preprocessing with nilearn's exact numerics (numpy/scipy only).

nilearn smooths the whole field of view before masking
(``nilearn.image.image.smooth_array``): integer data become float32, non-finite
values become 0, and ``scipy.ndimage.gaussian_filter1d`` runs along x, then y,
then z with ``sigma_i = fwhm / (sqrt(8 ln 2) * voxel_size_i)`` (voxel sizes from
the affine's columns), ``mode='reflect'``, ``truncate=4``.

:class:`VolumeMasker` reproduces that for in-mask voxels while smoothing only
the mask's bounding box grown by the kernel's reach on each axis: each 1-D pass
at an in-box position only ever reads positions within that reach, so the
in-mask values are identical to smoothing the full field of view.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["smoothing_sigmas", "VolumeMasker", "nilearn_float_dtype"]

TRUNCATE = 4.0


def smoothing_sigmas(affine: np.ndarray, fwhm) -> np.ndarray | None:
    """Gaussian sigma in voxels along x, y, z for a FWHM in mm (nilearn's rule).

    Parameters
    ----------
    affine : ndarray (4, 4)
        Voxel sizes are the norms of the first three columns.
    fwhm : float, sequence of 3 (float or None), or None

    Returns
    -------
    ndarray (3,) or None
        ``fwhm / (sqrt(8 ln 2) voxel_size)``; None when nothing is smoothed.
    """
    if fwhm is None:
        return None
    fwhm = np.asarray([fwhm], dtype=object).ravel()
    fwhm = np.array([0.0 if f is None else float(f) for f in fwhm])
    if fwhm.size == 1:
        fwhm = np.repeat(fwhm, 3)
    if np.all(fwhm == 0):
        return None
    vox_size = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    return fwhm / (np.sqrt(8 * np.log(2)) * vox_size)


def nilearn_float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype nilearn smooths in: float32 for integers, else unchanged.

    Parameters
    ----------
    dtype : numpy dtype

    Returns
    -------
    numpy dtype
        float64 for 64-bit integers, float32 for other integers and booleans.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.dtype(np.float64) if dtype.itemsize == 8 else np.dtype(np.float32)
    if dtype.kind == "b":
        return np.dtype(np.float32)
    return dtype


class VolumeMasker:
    """Smooth (optionally) and mask chunks of volumes laid out as (k, nz, ny, nx).

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz)
    affine : ndarray (4, 4)
    smoothing_fwhm : float, sequence of 3 floats, or None
    """

    def __init__(self, mask: np.ndarray, affine: np.ndarray, smoothing_fwhm=None):
        mask = np.asarray(mask, dtype=bool)
        self.mask = mask
        self.sigmas = smoothing_sigmas(affine, smoothing_fwhm)
        x, y, z = np.nonzero(mask)  # nilearn's voxel order (C order over x, y, z)
        self.n_voxels = x.size
        if self.sigmas is None:
            self.crop = (slice(None),) * 3
            self.index = (z, y, x)
            return
        reach = [int(TRUNCATE * float(s) + 0.5) for s in self.sigmas]
        lo = [max(int(c.min()) - r, 0) if c.size else 0 for c, r in zip((x, y, z), reach)]
        hi = [
            min(int(c.max()) + 1 + r, n) if c.size else 0
            for c, r, n in zip((x, y, z), reach, mask.shape)
        ]
        self.crop = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        self.index = (z - lo[2], y - lo[1], x - lo[0])
        crop_shape = (hi[2] - lo[2], hi[1] - lo[1], hi[0] - lo[0])
        self.flat_index = np.ravel_multi_index(self.index, crop_shape)

    def transform(self, volumes: np.ndarray) -> np.ndarray:
        """Masked (and smoothed) signals in nilearn's dtype and voxel order.

        Parameters
        ----------
        volumes : ndarray (k, nz, ny, nx)

        Returns
        -------
        ndarray (k, n_voxels)
        """
        dtype = nilearn_float_dtype(volumes.dtype)
        if self.sigmas is None:
            out = volumes[(slice(None), *self.index)]
            out = out.astype(dtype, copy=False)
            return _ensure_finite(out)
        # a contiguous copy of the box first: filtering a strided view is slower
        block = np.array(volumes[(slice(None), *self.crop)], dtype=dtype, order="C")
        if not _all_finite(block):
            _ensure_finite(block)
        # nilearn's axis order: x (last here), then y, then z
        for axis, sigma in zip((3, 2, 1), self.sigmas):
            if sigma > 0:
                gaussian_filter1d(block, sigma, axis=axis, output=block, truncate=TRUNCATE)
        return np.take(block.reshape(len(block), -1), self.flat_index, axis=1)


def _all_finite(arr: np.ndarray) -> bool:
    """Cheap finiteness test: a sum is finite unless an element is NaN/inf (or it overflows)."""
    if arr.dtype.kind != "f":
        return True
    if np.isfinite(np.sum(arr)):
        return True
    return bool(np.isfinite(arr).all())


def _ensure_finite(arr: np.ndarray) -> np.ndarray:
    """Replace NaN/inf by 0 in place, as nilearn does (it warns once per run)."""
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            if not arr.flags.writeable:
                arr = arr.copy()
            arr[bad] = 0
            warnings.warn(
                "Non-finite values (NaN or inf) in the BOLD data were replaced by 0, as nilearn does.",
                UserWarning,
                stacklevel=3,
            )
    return arr
