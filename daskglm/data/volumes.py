"""Simulated volumes: grids, shapes, AR(1) noise and the streaming NIfTI writer both simulators use.

- :func:`centred_affine`: a grid of isotropic voxels centred on 0 mm (RAS, or
  LAS with ``flip_x``);
- :func:`ellipsoid` (a brain) and :func:`sphere` (an activated blob), as
  boolean arrays over a grid;
- :func:`ar1_noise`: unit Gaussian innovations made AR(1) along the time axis;
- :func:`nifti_header`, :func:`write_nifti_stream` (a 4D run written volume by
  volume, gzip through ISA-L, so that runs larger than memory can be
  generated) and :func:`save_mask`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["centred_affine", "ellipsoid", "sphere", "ar1_noise", "nifti_header", "write_nifti_stream",
           "save_mask"]


def centred_affine(shape: Sequence[int], voxel_size: float, flip_x: bool = False) -> np.ndarray:
    """An isotropic grid whose field of view is centred on 0 mm.

    Parameters
    ----------
    shape : sequence of 3 int
    voxel_size : float
        In mm.
    flip_x : bool, default=False
        LAS (x decreases with the first voxel index) rather than RAS.

    Returns
    -------
    ndarray, shape (4, 4)
    """
    affine = np.diag([-voxel_size if flip_x else voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -np.diag(affine)[:3] * (np.asarray(shape) - 1) / 2
    return affine


def ellipsoid(shape: Sequence[int], radii: Sequence[float], centre: Sequence[float]) -> np.ndarray:
    """The voxels inside an ellipsoid, in coordinates that run from -1 to 1 along each axis of the grid."""
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, radii))
    return r <= 1.0


def sphere(shape: Sequence[int], centre: Sequence[float], radius: float) -> np.ndarray:
    """The voxels within ``radius`` voxels of ``centre`` (fractions of the grid: 0 first voxel, 1 last)."""
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum((g - c * (s - 1)) ** 2 for g, c, s in zip(grid, centre, shape)) <= radius**2


def ar1_noise(rng: np.random.Generator, size: Sequence[int], time_axis: int, coefficient: float) -> np.ndarray:
    """Standard normal draws of ``size``, then ``e[t] += coefficient * e[t - 1]`` along ``time_axis``."""
    noise = rng.normal(0, 1.0, tuple(size))
    series = np.moveaxis(noise, time_axis, 0)  # a view: the recursion writes into noise
    for t in range(1, series.shape[0]):
        series[t] += coefficient * series[t - 1]
    return noise


def nifti_header(shape, affine, dtype=np.float32, t_r: float | None = None) -> nib.Nifti1Header:
    """A NIfTI-1 header of ``shape`` (mm, seconds; ``t_r`` in ``pixdim[4]`` of a 4D shape)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    if t_r is not None and len(shape) == 4:
        zooms = list(hdr.get_zooms())
        zooms[3] = t_r
        hdr.set_zooms(zooms)
    return hdr


def write_nifti_stream(path, shape, affine, volumes: Iterable[np.ndarray], dtype=np.float32, t_r=None,
                       compresslevel: int = 1) -> None:
    """Write a 4D NIfTI volume by volume (``volumes`` yields (x, y, z) arrays); ``.gz`` through ISA-L."""
    hdr = nifti_header(shape, affine, dtype, t_r)
    hdr["vox_offset"] = 352
    path = Path(path)
    if str(path).endswith(".gz"):
        from isal import igzip

        fh = igzip.open(path, "wb", compresslevel=compresslevel)
    else:
        fh = open(path, "wb")
    with fh:
        block = hdr.binaryblock
        fh.write(block + b"\x00" * (352 - len(block)))
        for vol in volumes:
            fh.write(np.asarray(vol, dtype=np.dtype(dtype).newbyteorder("<")).tobytes(order="F"))


def save_mask(path, mask: np.ndarray, affine: np.ndarray) -> None:
    """A boolean array saved as a uint8 NIfTI image."""
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), path)
