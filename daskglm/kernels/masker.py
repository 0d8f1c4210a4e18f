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

The passes themselves run through OpenCV's separable filters when
``opencv-python-headless`` is installed (the ``fast`` extra): x and y in one
``cv2.sepFilter2D`` call per z-plane, then z as a column filter over the
volume seen as a ``(nz, ny * nx)`` image, with the same normalised Gaussian
taps as scipy and ``BORDER_REFLECT`` (scipy's ``'reflect'``).  That agrees
with scipy to float32 rounding and is about 3x cheaper (``docs/performance.md``).
Float data are filtered straight from the read buffer, one volume at a time
through two per-thread float64 work volumes (sums in float64, as scipy's), and
gathered into the output: no copy of the box.  Without OpenCV (or for data needing conversion or NaN cleaning), the
box is copied and scipy's ``gaussian_filter1d`` runs in place.
"""

from __future__ import annotations

import functools
import threading
import warnings

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["smoothing_sigmas", "VolumeMasker", "nilearn_float_dtype", "smooth_box", "gaussian_taps"]

TRUNCATE = 4.0
#: per-thread work volumes are kept when both hold at most this many bytes
BUFFER_CACHE_BYTES = 32 * 2**20
_local = threading.local()


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
        box = volumes[(slice(None), *self.crop)]
        cv2 = _opencv() if dtype in (np.float32, np.float64) else None
        if cv2 is not None and box.dtype == dtype and _all_finite(box):
            # straight from the read buffer: x-y planes into one work volume, z into another, gather
            out = np.empty((len(box), self.n_voxels), dtype)
            tmp, result = _work_buffers(box.shape[1:], dtype)
            for i in range(len(box)):
                _smooth_volume_cv2(cv2, box[i], tmp, result, self.sigmas)
                out[i] = result.reshape(-1)[self.flat_index]
            return out
        block = np.array(box, dtype=dtype, order="C")  # a contiguous copy: filtering a strided view is slower
        if not _all_finite(block):
            _ensure_finite(block)
        block = smooth_box(block, self.sigmas)
        return np.take(block.reshape(len(block), -1), self.flat_index, axis=1)


def gaussian_taps(sigma: float) -> np.ndarray:
    """scipy's ``gaussian_filter1d`` weights: ``exp(-x**2 / 2 sigma**2)`` normalised, radius ``int(4 sigma + 0.5)``."""
    radius = int(TRUNCATE * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / float(sigma) ** 2 * x**2)
    return phi / phi.sum()


def smooth_box(block: np.ndarray, sigmas) -> np.ndarray:
    """Gaussian-smooth volumes (k, nz, ny, nx) in place along x, y, z with scipy's 'reflect' boundary.

    Parameters
    ----------
    block : ndarray (k, nz, ny, nx), C-contiguous
        The volumes; overwritten by the result.
    sigmas : sequence of 3 float
        Sigma in voxels along x, y, z (0: no smoothing along that axis).

    Returns
    -------
    ndarray
        ``block``.
    """
    cv2 = _opencv() if block.dtype in (np.float32, np.float64) else None
    if cv2 is None:  # in place: faster than ping-ponging between two buffers (benchmarks/smoothing_ab.py)
        for axis, sigma in zip((3, 2, 1), sigmas):  # nilearn's order: x, y, then z
            if sigma > 0:
                gaussian_filter1d(block, sigma, axis=axis, output=block, truncate=TRUNCATE)
        return block
    tmp, result = _work_buffers(block.shape[1:], block.dtype)
    for volume in block:
        _smooth_volume_cv2(cv2, volume, tmp, result, sigmas)
        np.copyto(volume, result, casting="unsafe")
    return block


def _smooth_volume_cv2(cv2, volume: np.ndarray, tmp: np.ndarray, out: np.ndarray, sigmas) -> None:
    """One volume (nz, ny, nx; rows may be strided) smoothed into ``out`` via ``tmp`` (contiguous).

    x and y in one ``sepFilter2D`` per z-plane, then z as a column filter over the volume seen
    as an (nz, ny * nx) image; ``BORDER_REFLECT`` is scipy's ``'reflect'``.  Sums are taken in
    the work buffers' dtype, the data's: for float32 data the result is within a few float32
    ulp of scipy's, which sums in float64 (issue 17 allows float32 rounding; it halves the
    cost: 4.4 vs 8.2 ms per 96x114x96 volume, benchmarks/smoothing_ab.py).
    """
    nz, ny, nx = volume.shape
    dtype = tmp.dtype
    depth = cv2.CV_32F if dtype == np.float32 else cv2.CV_64F
    if sigmas[0] > 0 or sigmas[1] > 0:
        tx, ty = (_taps(s, dtype) for s in sigmas[:2])
        for z in range(nz):
            cv2.sepFilter2D(volume[z], depth, tx, ty, dst=tmp[z], borderType=cv2.BORDER_REFLECT)
    else:
        np.copyto(tmp, volume)
    if sigmas[2] > 0:
        cv2.sepFilter2D(tmp.reshape(nz, ny * nx), depth, _taps(0, dtype), _taps(sigmas[2], dtype),
                        dst=out.reshape(nz, ny * nx), borderType=cv2.BORDER_REFLECT)
    else:
        np.copyto(out, tmp)


@functools.lru_cache(maxsize=32)
def _taps(sigma: float, dtype: np.dtype) -> np.ndarray:
    """``gaussian_taps(sigma)`` in ``dtype`` (a single 1 for sigma 0), cached: one volume needs three."""
    taps = (gaussian_taps(sigma) if sigma > 0 else np.ones(1)).astype(dtype)
    taps.flags.writeable = False  # shared by every thread through the cache
    return taps


def _opencv():
    """The ``cv2`` module (one thread: dask runs one task per core), or None if not installed."""
    cv2 = getattr(_local, "cv2", False)
    if cv2 is False:
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:
            cv2 = None
        _local.cv2 = cv2
    return cv2


def _work_buffers(shape, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Two C-contiguous volumes of ``shape`` reused by this thread (no page faults per chunk)."""
    key = (tuple(shape), np.dtype(dtype))
    cached = getattr(_local, "buffers", None)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    pair = (np.empty(shape, dtype), np.empty(shape, dtype))
    if 2 * pair[0].nbytes <= BUFFER_CACHE_BYTES:
        _local.buffers = (key, *pair)
    return pair


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
