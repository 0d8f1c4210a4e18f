"""``open_run``: a NIfTI run as a lazy, dask-backed :class:`xarray.DataArray`."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from dask import delayed
from dask.base import tokenize

from daskglm.io.base import time_chunk_size
from daskglm.io.cifti import RemoteCiftiRunSource, is_cifti, open_cifti_run
from daskglm.io.coords import volume_coords, volume_dims
from daskglm.io.nifti import FileRunSource
from daskglm.io.nifti_zarr import NiftiZarrRunSource, is_zarr_run
from daskglm.io.remote import RemoteRunSource, is_url
from daskglm.io.runs import as_run_source
from daskglm.io.timing import header_t_r, reconcile_t_r

__all__ = ["open_run"]


def _read_xyzt(source, t0: int, t1: int) -> np.ndarray:
    return source.read(t0, t1).transpose(3, 2, 1, 0)


def open_run(path_or_img, chunks: int | str = "auto", t_r: float | None = None,
             storage_options: dict | None = None) -> xr.DataArray:
    """Open a 4D NIfTI or NIfTI-Zarr run lazily.

    Only the header is read; each time chunk is read when (and if) it is
    computed.

    Parameters
    ----------
    path_or_img : str, path or nibabel.Nifti1Image
        A ``.nii`` or ``.nii.gz`` file, a Zarr store (``.nii.zarr``: NIfTI-Zarr, or any 4D
        OME-Zarr / Zarr array; local or URL, :mod:`daskglm.io.nifti_zarr`; default dask
        chunks: whole stored chunks), or an image; a CIFTI-2 ``.dtseries.nii``
        opens as ``(time, grayordinate)`` (:func:`daskglm.io.cifti.open_cifti_run`).
    chunks : int or 'auto'
        Volumes per dask chunk.
    t_r : float, optional
        Repetition time in seconds, for the ``time`` coordinate; default:
        the header's (a warning tells when a given ``t_r`` differs from it;
        :func:`daskglm.io.timing.reconcile_t_r`).
        Without either, ``time`` counts scans.
    storage_options : dict, optional
        fsspec options when ``path_or_img`` is a URL (``s3://...``; e.g. ``{"anon": True}``);
        the run is then read by whichever process computes a chunk (:mod:`daskglm.io.remote`).

    Returns
    -------
    xarray.DataArray
        Dims ``(x, y, z, time)`` with world coordinates ``x, y, z`` in mm and
        voxel indices ``i, j, k`` along them (``(i, j, k, time)`` with 3-D
        ``x, y, z`` for an oblique affine, see :mod:`daskglm.io.coords`), and
        ``time`` in seconds (scan onsets, ``scan * t_r``) with a ``scan``
        index coordinate.  The dtype is the file's (e.g. int16) unless NIfTI
        scaling (scl_slope/inter) applies.  ``attrs`` hold ``affine`` (4x4
        list), ``zooms``, ``t_r`` when known and the source ``filename``.
    """
    if is_cifti(path_or_img):  # (time, grayordinate) with brain-structure coordinates
        if is_url(path_or_img):
            path_or_img = RemoteCiftiRunSource(path_or_img, storage_options)
        return open_cifti_run(path_or_img, chunks)
    if is_zarr_run(path_or_img):
        source = NiftiZarrRunSource(path_or_img, storage_options)
    elif storage_options and is_url(path_or_img):
        source = RemoteRunSource(path_or_img, storage_options)
    else:
        source = as_run_source(path_or_img)
    n = source.n_scans
    if chunks == "auto" and isinstance(source, NiftiZarrRunSource):  # whole stored chunks per dask chunk
        chunks = source.time_chunk * max(1, time_chunk_size(source.spatial_shape, source.dtype) // source.time_chunk)
    elif chunks == "auto":
        chunks = time_chunk_size(source.spatial_shape, source.dtype)
    chunks = int(chunks)
    token = tokenize(source, chunks)
    blocks = []
    for t0 in range(0, n, chunks):
        t1 = min(t0 + chunks, n)
        blocks.append(
            da.from_delayed(
                delayed(_read_xyzt, pure=True)(source, t0, t1, dask_key_name=f"read-volumes-{token}-{t0}"),
                shape=(*source.spatial_shape, t1 - t0),
                dtype=source.dtype,
                name=f"run-volumes-{token}-{t0}",
            )
        )
    data = da.concatenate(blocks, axis=3)
    attrs = {"affine": np.asarray(source.affine).tolist()}
    zooms = np.sqrt((np.asarray(source.affine)[:3, :3] ** 2).sum(axis=0))
    attrs["zooms"] = zooms.tolist()
    from_header = None
    if isinstance(source, FileRunSource):
        attrs["filename"] = str(source.path)
        from_header = header_t_r(source.header)
    elif isinstance(source, (RemoteRunSource, NiftiZarrRunSource)):
        attrs["filename"] = getattr(source, "location", None) or source.url
        from_header = header_t_r(source.header)
    t_r = reconcile_t_r(t_r, from_header, attrs.get("filename", "the image"), stacklevel=3)
    time_attrs = {"long_name": "scan onset", "units": "s", "standard_name": "time", "axis": "T"}
    if t_r is not None:
        attrs["t_r"] = t_r
        time = np.arange(n) * t_r
    else:
        time = np.arange(n, dtype=float)
        time_attrs = {"long_name": "scan (no repetition time known: pass t_r=)", "units": "1"}
    coords = volume_coords(source.spatial_shape, source.affine)
    coords["time"] = ("time", time, time_attrs)
    coords["scan"] = ("time", np.arange(n), {"long_name": "scan index", "units": "1"})
    dims = (*volume_dims(source.affine), "time")
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name="bold")
