"""Any run input as a :class:`~daskglm.io.base.RunSource`: files, images, arrays."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from daskglm.errors import NiftiInputError
from daskglm.io.base import RunSource, check_4d
from daskglm.io.cifti import CiftiRunSource, RemoteCiftiRunSource, cifti_array_source, is_cifti
from daskglm.io.gifti import SurfaceImageRunSource, is_surface_image
from daskglm.io.nifti import FileRunSource
from daskglm.io.nifti_zarr import NiftiZarrRunSource, is_zarr_run
from daskglm.io.remote import RemoteRunSource, is_url

__all__ = ["ArrayRunSource", "as_run_source"]


class ArrayRunSource(RunSource):
    """A run held as an (x, y, z, t) numpy or dask array (in-memory image, DataArray)."""

    def __init__(self, data, affine: np.ndarray, name: str):
        self.data = data
        self.name = name
        self.shape = check_4d(data.shape, name)
        if data.ndim == 5:
            self.data = data[:, :, :, 0, :]
        self.affine = np.asarray(affine, dtype=np.float64)
        self.dtype = np.dtype(data.dtype)

    def read(self, t0: int, t1: int) -> np.ndarray:
        block = np.asarray(self.data[:, :, :, t0:t1])
        return block.transpose(3, 2, 1, 0)


def as_run_source(obj, index: int = 0) -> RunSource:
    """A :class:`RunSource` for a path, URL, Nifti1Image, ``xarray.DataArray`` or RunSource.

    Local paths are made absolute here, on the client, so that workers started
    in other directories find them.  fsspec URLs (``s3://``, ``gs://``,
    ``https://``...) become :class:`~daskglm.io.remote.RemoteRunSource` s (CIFTI:
    :class:`~daskglm.io.cifti.RemoteCiftiRunSource`), read
    by the workers (options from ``fsspec.config.conf``; pass a
    ``RemoteRunSource(url, storage_options)`` for explicit ones).  Zarr stores (``*.nii.zarr``,
    local or URL) become :class:`~daskglm.io.nifti_zarr.NiftiZarrRunSource` s.
    """
    name = f"#{index}"
    if isinstance(obj, RunSource):
        return obj
    if is_zarr_run(obj):  # NIfTI-Zarr (*.nii.zarr) or OME-Zarr, local or at a URL
        return NiftiZarrRunSource(obj)
    if is_url(obj):
        return RemoteCiftiRunSource(obj) if is_cifti(obj) else RemoteRunSource(obj)
    if is_cifti(obj):  # surface runs: daskglm.io.cifti / daskglm.io.gifti
        return CiftiRunSource(obj)
    if is_surface_image(obj):
        return SurfaceImageRunSource(obj, name)
    if isinstance(obj, (str, os.PathLike)):
        text = str(obj)
        return FileRunSource(os.path.abspath(text[7:] if text.startswith("file://") else text))
    if isinstance(obj, (nib.Nifti1Image, nib.Nifti2Image)):
        fname = obj.get_filename()
        if fname and not isinstance(obj.dataobj, np.ndarray) and Path(fname).exists():
            return FileRunSource(fname, img=obj)
        return ArrayRunSource(obj.dataobj, obj.affine, name)
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover
        xr = None
    if xr is not None and isinstance(obj, xr.DataArray):
        cifti = cifti_array_source(obj, name)  # open_run's (time, grayordinate) DataArray of a CIFTI run
        if cifti is not None:
            return cifti
        affine = obj.attrs.get("affine")
        if affine is None:
            raise NiftiInputError(
                f"Run {name} is a DataArray without an 'affine' attribute; "
                "open runs with daskglm.open_run to keep it."
            )
        data = obj.transpose("x", "y", "z", "time").data if set(obj.dims) >= {"x", "y", "z", "time"} else obj.data
        return ArrayRunSource(data, np.asarray(affine), obj.name or name)
    raise TypeError(
        f"Run {name} must be a path, a nibabel Nifti1Image or an xarray.DataArray, "
        f"got {type(obj).__name__}."
    )
