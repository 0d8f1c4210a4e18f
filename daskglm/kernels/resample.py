"""On-the-fly resampling of volumes, with nilearn's ``resample_img`` numerics.

nilearn's maskers resample a run with ``resample_img(img, target_affine,
target_shape, interpolation="continuous")`` before smoothing and masking, and a
mask with ``interpolation="nearest"``.  ``resample_img`` works volume by
volume: each 3-D volume goes through ``scipy.ndimage.affine_transform`` with
the voxel-to-voxel map ``inv(affine) @ target_affine`` (``order=3`` for
continuous, ``0`` for nearest, zero fill), so a run can be resampled while it
is streamed, a few volumes at a time, without ever holding the resampled run.

This module reproduces that arithmetic:

- :func:`resampling_grid`: the target grid as nilearn completes it (a 3x3
  ``target_affine`` gets its offset from the data's bounding box; a missing
  ``target_shape`` is the bounding box plus one voxel) and the ``(A, b)`` of
  the voxel-to-voxel map (``A`` diagonal is passed as a vector, as nilearn
  does, which selects scipy's zoom/shift path);
- :func:`resample_volumes`: ``(k, nz, ny, nx)`` volumes to the target grid,
  in nilearn's output dtype, then clipped to ``[min(lo, 0), max(hi, 0)]``.

nilearn clips with the minimum and maximum of the whole 4-D run, which a
stream only knows at its end: the caller finds the range first
(:func:`value_range` over the run, one cheap reduction pass) and passes it as
``clip_range``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "ResamplingGrid", "resampling_grid", "resample_volumes", "resampled_dtype", "bounds", "value_range",
    "extrapolate_out_mask",
]

INTERPOLATION_ORDERS = {"continuous": 3, "linear": 1, "nearest": 0}


def bounds(shape, affine: np.ndarray) -> list[tuple[float, float]]:
    """World-space bounding box of a grid (nilearn's ``get_bounds``)."""
    adim, bdim, cdim = shape
    adim -= 1
    bdim -= 1
    cdim -= 1
    box = np.array(
        [
            [0.0, 0, 0, 1], [adim, 0, 0, 1], [0, bdim, 0, 1], [0, 0, cdim, 1],
            [adim, bdim, 0, 1], [adim, 0, cdim, 1], [0, bdim, cdim, 1], [adim, bdim, cdim, 1],
        ]
    ).T
    box = np.dot(affine, box)[:3]
    return list(zip(box.min(axis=-1), box.max(axis=-1)))


@dataclass(frozen=True)
class ResamplingGrid:
    """A completed target grid and the voxel-to-voxel map onto it.

    Attributes
    ----------
    affine : ndarray (4, 4)
        Target affine.
    shape : tuple of 3 int
        Target spatial shape (x, y, z).
    matrix : ndarray (3,) or (3, 3)
        ``A`` of ``source_voxel = A @ target_voxel + offset`` (a vector when diagonal).
    offset : ndarray (3,)
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    matrix: np.ndarray
    offset: np.ndarray


def resampling_grid(source_shape, source_affine, target_affine, target_shape=None) -> ResamplingGrid:
    """nilearn's completion of ``(target_affine, target_shape)`` for a source grid.

    Parameters
    ----------
    source_shape : tuple of 3 int
    source_affine : ndarray (4, 4)
    target_affine : ndarray (3, 3) or (4, 4)
    target_shape : tuple of 3 int, optional

    Returns
    -------
    ResamplingGrid

    Raises
    ------
    ValueError
        With nilearn's messages: a target shape without a 4x4 affine, a shape
        that is not 3-D, or a target field of view that holds none of the data.
    """
    target_affine = np.asarray(target_affine, dtype=np.float64)
    if target_shape is not None:
        if len(target_shape) != 3:
            raise ValueError(
                "The shape specified should be the shape of the 3D grid, and thus of length 3. "
                f"{target_shape} was specified."
            )
        if target_affine.shape == (3, 3):
            raise ValueError(
                "Given target shape without anchor vector: "
                "'target_affine' shape should be (4, 4) and not (3, 3)"
            )
    if target_affine.shape not in ((3, 3), (4, 4)):
        raise ValueError(
            f"The target_affine must be a 3x3 or 4x4 matrix, got shape {target_affine.shape}."
        )
    source_affine = np.asarray(source_affine, dtype=np.float64)
    missing_offset = target_affine.shape == (3, 3)
    if missing_offset:
        full = np.eye(4)
        full[:3, :3] = target_affine
        target_affine = full
    else:
        target_affine = target_affine.copy()
    transform = np.linalg.inv(target_affine).dot(source_affine)
    (xmin, xmax), (ymin, ymax), (zmin, zmax) = bounds(source_shape, transform)
    if missing_offset:
        target_affine[:3, 3] = target_affine[:3, :3].dot([xmin, ymin, zmin])
        xmax, ymax, zmax = xmax - xmin, ymax - ymin, zmax - zmin
    if target_shape is None:
        target_shape = (int(np.ceil(xmax)) + 1, int(np.ceil(ymax)) + 1, int(np.ceil(zmax)) + 1)
    if xmax < 0 or ymax < 0 or zmax < 0:
        raise ValueError("The field of view given by the target affine does not contain any of the data")
    if np.all(target_affine == source_affine):
        transform = np.eye(4)
    else:
        transform = np.dot(np.linalg.inv(source_affine), target_affine)
    A, b = transform[:3, :3], transform[:3, 3]
    if np.all(np.diag(np.diag(A)) == A):
        A = np.diag(A)
    shape = tuple(int(s) for s in np.asarray(target_shape).tolist())
    return ResamplingGrid(affine=target_affine, shape=shape, matrix=A, offset=b)  # type: ignore[arg-type]


def resampled_dtype(dtype, interpolation: str = "continuous") -> np.dtype:
    """nilearn's output dtype: signed integers become floats for continuous interpolation."""
    dtype = np.dtype(dtype)
    if interpolation == "continuous" and dtype.kind == "i":
        name = dtype.name.replace("int", "float")
        if name in ("float8", "float16"):
            name = "float32"
        return np.dtype(name)
    return dtype.newbyteorder("=")


def value_range(volumes: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of the non-NaN values of some volumes (``(inf, -inf)`` if none)."""
    data = np.asarray(volumes)
    if data.dtype.kind == "f":  # nilearn's nanmin / nanmax: infinities count
        data = data[~np.isnan(data)]
    if data.size == 0:
        return float("inf"), float("-inf")
    return float(data.min()), float(data.max())


def resample_volumes(
    volumes: np.ndarray, grid: ResamplingGrid, interpolation: str = "continuous",
    clip: bool = True, clip_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Resample ``(k, nz, ny, nx)`` volumes onto ``grid`` (``(k, tz, ty, tx)`` out).

    ``clip_range``: the ``(min, max)`` of the whole run (nilearn clips to
    ``[min(min, 0), max(max, 0)]`` of the whole 4-D image); without it each
    volume is clipped to its own range.  Non-finite values are handled as
    nilearn does: extrapolated from their neighbours (two shells) before
    interpolation, and NaN put back where they land (nearest neighbour).
    """
    order = INTERPOLATION_ORDERS[interpolation]
    dtype = resampled_dtype(volumes.dtype, interpolation)
    tx, ty, tz = grid.shape
    out = np.zeros((len(volumes), tz, ty, tx), dtype=dtype)
    for vol, target in zip(volumes, out):
        data = vol.T  # (x, y, z), as nilearn sees the volume
        bad = None
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            bad = ~np.isfinite(data)  # nilearn: extrapolate, resample, put NaN back
            data = extrapolate_out_mask(data, ~bad, iterations=2)[0]
        ndimage.affine_transform(
            data, grid.matrix, offset=grid.offset, output_shape=grid.shape, output=target.T,
            cval=0.0, order=order,
        )
        if bad is not None:
            target.T[ndimage.affine_transform(bad, grid.matrix, offset=grid.offset,
                                              output_shape=grid.shape, order=0)] = np.nan
        if clip and order:
            lo, hi = clip_range if clip_range is not None else value_range(vol)
            target.clip(min(lo, 0.0), max(hi, 0.0), out=target)
    return out


def extrapolate_out_mask(data: np.ndarray, mask: np.ndarray, iterations: int = 1):
    """nilearn's ``masking.extrapolate_out_mask``: fill a shell around ``mask`` with neighbour means.

    Each iteration gives the voxels of one dilation shell the mean of their
    in-mask face neighbours; voxels further out become 0.
    """
    if iterations > 1:
        data, mask = extrapolate_out_mask(data, mask, iterations=iterations - 1)
    new_mask = ndimage.binary_dilation(mask)
    larger_mask = np.zeros(np.array(mask.shape) + 2, dtype=bool)
    larger_mask[1:-1, 1:-1, 1:-1] = mask
    masked_data = np.zeros(larger_mask.shape + data.shape[3:])
    masked_data[1:-1, 1:-1, 1:-1] = data
    masked_data[~larger_mask] = np.nan
    outer_shell = larger_mask.copy()
    outer_shell[1:-1, 1:-1, 1:-1] = np.logical_xor(new_mask, mask)
    sx, sy, sz = np.where(outer_shell)
    steps = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    values = np.array([masked_data[sx + i, sy + j, sz + k] for i, j, k in steps])
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = np.nansum(values, axis=0) / np.sum(np.isfinite(values), axis=0)
    filled[~np.isfinite(filled)] = 0
    new_data = np.zeros_like(masked_data)
    new_data[outer_shell] = filled
    new_data[larger_mask] = masked_data[larger_mask]
    return new_data[1:-1, 1:-1, 1:-1], new_mask
