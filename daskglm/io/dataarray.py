"""``open_run``: a NIfTI run as a lazy, dask-backed :class:`xarray.DataArray`."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from dask import delayed

from .base import time_chunk_size
from .nifti import FileRunSource
from .runs import as_run_source

__all__ = ["open_run"]


def _read_xyzt(source, t0: int, t1: int) -> np.ndarray:
    return source.read(t0, t1).transpose(3, 2, 1, 0)


def open_run(path_or_img, chunks: int | str = "auto") -> xr.DataArray:
    """Open a 4D NIfTI run lazily.

    Only the header is read; each time chunk is read when (and if) it is
    computed.

    Parameters
    ----------
    path_or_img : str, path or nibabel.Nifti1Image
        A ``.nii`` or ``.nii.gz`` file, or an image.
    chunks : int or 'auto'
        Volumes per dask chunk.

    Returns
    -------
    xarray.DataArray
        Dims ``(x, y, z, time)``, dtype after NIfTI scaling (scl_slope/inter).
        ``attrs`` hold ``affine`` (4x4 list), ``zooms`` and, when known, ``t_r``
        and the source ``filename``.
    """
    source = as_run_source(path_or_img)
    n = source.n_scans
    if chunks == "auto":
        chunks = time_chunk_size(source.spatial_shape, source.dtype)
    chunks = int(chunks)
    blocks = []
    for t0 in range(0, n, chunks):
        t1 = min(t0 + chunks, n)
        blocks.append(
            da.from_delayed(
                delayed(_read_xyzt, pure=True)(source, t0, t1),
                shape=(*source.spatial_shape, t1 - t0),
                dtype=source.dtype,
            )
        )
    data = da.concatenate(blocks, axis=3)
    attrs = {"affine": np.asarray(source.affine).tolist()}
    zooms = np.sqrt((np.asarray(source.affine)[:3, :3] ** 2).sum(axis=0))
    attrs["zooms"] = zooms.tolist()
    if isinstance(source, FileRunSource):
        attrs["filename"] = str(source.path)
        pixdim = source.header.get_zooms()
        if len(pixdim) > 3 and pixdim[3] > 0:
            attrs["t_r"] = float(pixdim[3])
    return xr.DataArray(data, dims=("x", "y", "z", "time"), attrs=attrs, name="bold")
