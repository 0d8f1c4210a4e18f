"""CIFTI-2 dense runs (``.dtseries.nii``) as :class:`RunSource`, and dense scalar maps.

A dense time series is a NIfTI-2 file whose data matrix is ``time ×
grayordinate`` (a ``SeriesAxis`` and a ``BrainModelAxis``).  NIfTI stores it
column-major, so on disk each grayordinate's whole time series is contiguous
and one scan is strided across the file.  :class:`CiftiRunSource` therefore
reads a *window* of scans by walking the file in grayordinate blocks, each
block memory-mapped only while it is copied: the resident memory is one
window plus one block, whatever the run's length, and the file is traversed
once per window.  The engine streams the run front to back
(``sequential``), so windows are as large as a fixed byte budget allows.

The grayordinates (surface vertices and voxels of every brain structure, the
volume parts included) are the engine's elements, in the file's order.
:class:`CiftiGeometry` keeps the brain-model axis and writes maps back as
CIFTI-2 dense scalar images (``.dscalar.nii``) over the same axis.
:class:`RemoteCiftiRunSource` reads a run at an fsspec URL (``s3://...``) by
ranged reads of grayordinate blocks, its header only until then.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import cifti2

from daskglm.errors import SurfaceInputError
from daskglm.io.base import RunSource
from daskglm.kernels.mesh import SurfacePart

__all__ = ["CiftiGeometry", "CiftiRunSource", "RemoteCiftiRunSource", "is_cifti", "is_cifti_space",
           "open_cifti_run", "CIFTI_SUFFIXES", "CIFTI_SPACES"]

CIFTI_SUFFIXES = (".dtseries.nii", ".dscalar.nii", ".dlabel.nii")
#: BIDS ``space`` labels whose fMRIPrep runs are CIFTI-2 dense time series (``_bold.dtseries.nii``).
CIFTI_SPACES = ("fsLR",)
#: bytes of one memory-mapped grayordinate block while a window is copied
BLOCK_BYTES = 32 * 2**20
#: bytes of one window of scans (the engine streams windows front to back)
WINDOW_BYTES = 64 * 2**20


def is_cifti(obj) -> bool:
    """Whether ``obj`` is a CIFTI-2 image or a path with a CIFTI-2 suffix."""
    if isinstance(obj, cifti2.Cifti2Image):
        return True
    return isinstance(obj, (str, os.PathLike)) and str(obj).endswith(CIFTI_SUFFIXES)


def is_cifti_space(space_label) -> bool:
    """Whether a BIDS ``space`` label names CIFTI-2 runs: it starts with one of :data:`CIFTI_SPACES`.

    The one test of both sides of a study: the BIDS query looks for
    ``_bold.dtseries.nii`` runs under such a label
    (:func:`daskglm.studies.bids.query.run_files`), and the simulator writes
    them (:func:`daskglm.data.bids.make_bids_dataset`).  A prefix, not an
    exact match, so that fMRIPrep's ``fsLR`` and labels built on it are
    CIFTI alike for both; anything but a string (``None``: nilearn's
    GIfTI default) is not.

    Parameters
    ----------
    space_label : str or None

    Returns
    -------
    bool
    """
    return isinstance(space_label, str) and space_label.startswith(CIFTI_SPACES)


class CiftiGeometry:
    """The grayordinates of a CIFTI-2 file: its ``BrainModelAxis``.

    Parameters
    ----------
    brain_models : nibabel.cifti2.BrainModelAxis
    """

    kind = "cifti"

    def __init__(self, brain_models: cifti2.BrainModelAxis):
        self.brain_models = brain_models

    @property
    def n_elements(self) -> int:
        return len(self.brain_models)

    @property
    def spatial_shape(self) -> tuple[int]:
        return (self.n_elements,)

    def structures(self) -> list[tuple[str, slice]]:
        """``(CIFTI structure name, grayordinate slice)`` in the file's order."""
        n = self.n_elements
        return [(name, slice(*sl.indices(n)[:2])) for name, sl, _ in self.brain_models.iter_structures()]

    def parts(self) -> list[SurfacePart]:
        """One mesh-less :class:`SurfacePart` per structure (a CIFTI file holds no mesh)."""
        return [SurfacePart(sl.stop - sl.start) for _, sl in self.structures()]

    def digest(self) -> str:
        bm = self.brain_models
        h = hashlib.sha1()
        for arr in (bm.name, bm.vertex, bm.voxel, bm.affine if bm.affine is not None else []):
            h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
        h.update(repr(sorted(bm.nvertices.items())).encode())
        h.update(repr(bm.volume_shape).encode())
        return h.hexdigest()

    def __dask_tokenize__(self):
        return ("CiftiGeometry", self.digest())

    def same_as(self, other) -> bool:
        return isinstance(other, CiftiGeometry) and self.brain_models == other.brain_models

    def describe(self) -> str:
        return ", ".join(f"{name}: {sl.stop - sl.start}" for name, sl in self.structures())

    def image(self, values: np.ndarray, description: str = "") -> cifti2.Cifti2Image:
        """A dense scalar image (``.dscalar.nii``) from values over all grayordinates.

        Parameters
        ----------
        values : ndarray (N,) or (k, N)
        description : str
            The map name of a single map.
        """
        values = np.asarray(values, dtype=np.float32)
        rows = values[None] if values.ndim == 1 else values
        names = [description or "map"] if values.ndim == 1 else [f"{description or 'map'} {i}" for i in range(len(rows))]
        header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(names), self.brain_models))
        img = cifti2.Cifti2Image(rows, header=header)
        img.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_SCALARS")
        return img

    def values(self, img, what: str = "image") -> np.ndarray:
        """One map of a CIFTI image (or path) over these brain models, as float64."""
        if isinstance(img, (str, os.PathLike)):
            img = nib.load(img)
        if not isinstance(img, cifti2.Cifti2Image):
            raise SurfaceInputError(f"The {what} must be a CIFTI-2 image, got {type(img).__name__}.")
        if img.header.get_axis(1) != self.brain_models:
            raise SurfaceInputError(f"The {what}'s brain models differ from the first image's.")
        data = np.asarray(img.get_fdata(), dtype=np.float64)
        if data.shape[0] != 1:
            raise SurfaceInputError(f"The {what} must hold one map, got {data.shape[0]}.")
        return data[0]

    def mask_from_image(self, img) -> np.ndarray:
        """A boolean grayordinate mask from a CIFTI image or path over the same brain models."""
        if isinstance(img, np.ndarray):
            mask = img
        else:
            if isinstance(img, (str, os.PathLike)):
                img = nib.load(img)
            if not isinstance(img, cifti2.Cifti2Image):
                raise SurfaceInputError(
                    f"A mask for a CIFTI run must be a CIFTI image or array, got {type(img).__name__}."
                )
            axis = img.header.get_axis(1)
            if not isinstance(axis, cifti2.BrainModelAxis) or axis != self.brain_models:
                raise SurfaceInputError("The CIFTI mask's brain models differ from the runs'.")
            mask = np.asarray(img.dataobj)
            if mask.ndim == 2 and mask.shape[0] == 1:
                mask = mask[0]
        mask = np.asarray(mask)
        if mask.shape != (self.n_elements,):
            raise SurfaceInputError(f"The CIFTI mask must hold one map of {self.n_elements} grayordinates, got {mask.shape}.")
        if not np.all(np.isfinite(mask.astype(np.float64))):
            raise SurfaceInputError("The mask contains NaN or infinite values.")
        return mask != 0


class CiftiRunSource(RunSource):
    """A CIFTI-2 dense time series (``.dtseries.nii``): header only until read.

    Parameters
    ----------
    path_or_img : str, path or nibabel.cifti2.Cifti2Image
    name : str, optional
    """

    def __init__(self, path_or_img, name: str | None = None):
        img = path_or_img
        if not isinstance(img, cifti2.Cifti2Image):
            path = Path(path_or_img)
            if not path.exists():
                raise FileNotFoundError(f"CIFTI run not found: {path}")
            img = nib.load(path)
            if not isinstance(img, cifti2.Cifti2Image):
                raise SurfaceInputError(f"{path} is not a CIFTI-2 file (nibabel read a {type(img).__name__}).")
        self.img = img
        fname = img.get_filename()
        self.path = Path(fname) if fname else None
        self.name = name or (str(self.path) if self.path else "cifti")
        series, bm = (img.header.get_axis(i) for i in range(2))
        if not isinstance(series, cifti2.SeriesAxis) or not isinstance(bm, cifti2.BrainModelAxis):
            raise SurfaceInputError(
                f"Run {self.name} must be a CIFTI-2 dense time series (series × brain models), got axes "
                f"{type(series).__name__} × {type(bm).__name__}."
            )
        self.series = series
        self.geometry = CiftiGeometry(bm)
        self.affine = np.eye(4)
        n_scans, n_elements = img.dataobj.shape
        self.shape = (int(n_elements), int(n_scans))
        proxy = img.dataobj
        self._slope = float(getattr(proxy, "slope", 1.0))
        self._inter = float(getattr(proxy, "inter", 0.0))
        raw = np.dtype(getattr(proxy, "dtype", np.float32))
        scaled = (self._slope, self._inter) != (1.0, 0.0)
        self.dtype = np.dtype(np.float64) if scaled or raw.kind in "iub" else raw
        self._mappable = (
            self.path is not None and hasattr(proxy, "offset") and getattr(proxy, "order", "F") == "F"
            and not str(self.path).endswith(".gz") and isinstance(proxy, nib.arrayproxy.ArrayProxy)
        )
        if self._mappable:
            self._raw_dtype = raw.newbyteorder(img.nifti_header.endianness)
            self._offset = int(proxy.offset)

    @property
    def sequential(self) -> bool:
        """Windows of scans are read front to back (a window costs one traversal of the file)."""
        return True

    @property
    def t_r(self) -> float | None:
        """Repetition time in seconds, when the series axis is in seconds."""
        if str(self.series.unit).upper() == "SECOND" and self.series.step > 0:
            return float(self.series.step)
        return None

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Scans ``t0..t1-1`` as an array of shape (k, n_grayordinates)."""
        if not self._mappable:
            out = np.asarray(self.img.dataobj[t0:t1, :])
            return out.astype(self.dtype, copy=False)
        n_scans, n_el = self.n_scans, self.shape[0]
        itemsize = self._raw_dtype.itemsize
        block = max(1, BLOCK_BYTES // (n_scans * itemsize))
        out = np.empty((t1 - t0, n_el), dtype=self.dtype)
        for g0 in range(0, n_el, block):
            g1 = min(g0 + block, n_el)
            mm = np.memmap(
                self.path, dtype=self._raw_dtype, mode="r", shape=(n_scans, g1 - g0), order="F",
                offset=self._offset + g0 * n_scans * itemsize,
            )
            out[:, g0:g1] = mm[t0:t1]
            del mm
        if (self._slope, self._inter) != (1.0, 0.0):
            out *= self._slope
            out += self._inter
        return out

    def window(self, chunk: int) -> int:
        """Scans per window: a multiple of ``chunk`` within ``WINDOW_BYTES`` (at least ``chunk``)."""
        per_scan = self.shape[0] * max(self.dtype.itemsize, 4)
        return int(max(1, WINDOW_BYTES // per_scan // chunk) * chunk)

    def iter_chunks(
        self, chunk: int, background: bool = True, reuse_buffer: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(t0, scans)`` chunks of ``chunk`` scans, read one window at a time."""
        step = self.window(chunk)
        for w0 in range(0, self.n_scans, step):
            window = self.read(w0, min(w0 + step, self.n_scans))
            for s in range(0, len(window), chunk):
                yield w0 + s, window[s : s + chunk]
            del window

    def identity(self) -> dict:
        ident = {"name": self.name, "shape": list(self.shape), "brain_models": self.geometry.digest()}
        if self.path is not None and self.path.exists():
            st = self.path.stat()
            ident.update(size=st.st_size, mtime=st.st_mtime)
        return ident


#: bytes of one window of scans of a run on object storage (each window costs one pass over the object)
REMOTE_WINDOW_BYTES = 256 * 2**20


class RemoteCiftiRunSource(CiftiRunSource):
    """A ``.dtseries.nii`` at an fsspec URL (``s3://...``), streamed by whichever process reads it.

    Creating the source reads the NIfTI-2 header and the CIFTI-2 XML (the
    bytes before the data; a few KiB to a few MiB), never the data.  A window
    of scans is read as one ranged GET per grayordinate block of
    :data:`BLOCK_BYTES` (each block holds whole time series, the file being
    column-major): memory is one window (:data:`REMOTE_WINDOW_BYTES`) plus one
    block, and the object is read once per window (once in all when a window
    holds the run).  Picklable: URL, options and the header bytes.

    Parameters
    ----------
    url : str
    storage_options : dict, optional
        fsspec options (``anon``, ``key``, ``secret``, ``endpoint_url``, ...).
    """

    def __init__(self, url: str, storage_options: dict | None = None):
        from daskglm.io.remote import _options, open_url

        self.url = self.name = str(url)
        self.storage_options = _options(self.url, storage_options)
        with open_url(self.url, self.storage_options, cache_type="none") as fh:
            self.size = int(fh.size)
            info = getattr(fh, "details", {}) or {}
            head = fh.read(540)
            if head[:2] == b"\x1f\x8b":
                raise SurfaceInputError(f"Run {url} is a gzip-compressed CIFTI file; store .dtseries.nii uncompressed.")
            try:
                nifti = nib.Nifti2Header.from_fileobj(io.BytesIO(head), check=False)
            except Exception as err:
                raise SurfaceInputError(f"Run {url} is not a CIFTI-2 (NIfTI-2) file: {err}") from err
            self._offset = int(nifti.get_data_offset())
            self._head = head + fh.read(max(0, self._offset - len(head)))
        self._version = str(info.get("ETag") or info.get("etag") or info.get("LastModified") or "")
        self._parse()
        needed = self._offset + int(np.prod(self.shape)) * self._raw_dtype.itemsize
        if self.size < needed:
            raise SurfaceInputError(f"Run {url} is truncated: {self.size} bytes, the header announces {needed}.")

    def _parse(self) -> None:
        try:
            img = cifti2.Cifti2Image.from_bytes(self._head)
        except Exception as err:
            raise SurfaceInputError(f"Run {self.url}: could not read its CIFTI-2 header: {err}") from err
        series, bm = (img.header.get_axis(i) for i in range(2))
        if not isinstance(series, cifti2.SeriesAxis) or not isinstance(bm, cifti2.BrainModelAxis):
            raise SurfaceInputError(f"Run {self.url} must be a CIFTI-2 dense time series (series × brain models).")
        self.img, self.path, self.series, self.geometry = None, None, series, CiftiGeometry(bm)
        self.affine = np.eye(4)
        n_scans, n_elements = img.dataobj.shape
        self.shape = (int(n_elements), int(n_scans))
        slope, inter = img.nifti_header.get_slope_inter()
        self._slope = 1.0 if slope is None else float(slope)
        self._inter = 0.0 if inter is None else float(inter)
        raw = np.dtype(img.nifti_header.get_data_dtype())
        self._raw_dtype = raw.newbyteorder(img.nifti_header.endianness)
        scaled = (self._slope, self._inter) != (1.0, 0.0)
        self.dtype = np.dtype(np.float64) if scaled or raw.kind in "iub" else raw.newbyteorder("=")
        self._mappable = False

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("series", "geometry")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._parse()

    def __repr__(self) -> str:
        return f"RemoteCiftiRunSource({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def window(self, chunk: int) -> int:
        """Scans per window: a multiple of ``chunk`` within :data:`REMOTE_WINDOW_BYTES`."""
        per_scan = self.shape[0] * max(self.dtype.itemsize, 4)
        return int(max(1, REMOTE_WINDOW_BYTES // per_scan // chunk) * chunk)

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Scans ``t0..t1-1`` (k, n_grayordinates): one ranged read per grayordinate block."""
        from daskglm.io.base import read_exact
        from daskglm.io.remote import open_url

        n_scans, n_el = self.n_scans, self.shape[0]
        itemsize = self._raw_dtype.itemsize
        block = max(1, BLOCK_BYTES // (n_scans * itemsize))
        out = np.empty((t1 - t0, n_el), dtype=self.dtype)
        with open_url(self.url, self.storage_options, cache_type="none") as fh:
            for g0 in range(0, n_el, block):
                g1 = min(g0 + block, n_el)
                fh.seek(self._offset + g0 * n_scans * itemsize)
                buf = read_exact(fh, (g1 - g0) * n_scans * itemsize, self.name)
                series = np.frombuffer(buf, dtype=self._raw_dtype).reshape(g1 - g0, n_scans)
                out[:, g0:g1] = series[:, t0:t1].T
        if (self._slope, self._inter) != (1.0, 0.0):
            out *= self._slope
            out += self._inter
        return out

    def identity(self) -> dict:
        return {"url": self.url, "size": self.size, "version": self._version,
                "shape": list(self.shape), "brain_models": self.geometry.digest()}


def open_cifti_run(path_or_img, chunks: int | str = "auto"):
    """Open a CIFTI-2 dense time series lazily as a ``(time, grayordinate)`` DataArray.

    Parameters
    ----------
    path_or_img : str, path, nibabel.cifti2.Cifti2Image or CiftiRunSource
        (a :class:`RemoteCiftiRunSource` for a URL).
    chunks : int or 'auto'
        Scans per dask chunk (``'auto'``: one read window).

    Returns
    -------
    xarray.DataArray
        Coordinates per grayordinate: ``structure`` (CIFTI brain structure),
        ``vertex`` (surface vertex, -1 for voxels) and ``voxel_i/j/k`` (-1 for
        vertices).  ``attrs`` hold ``t_r`` (when the series is in seconds), the
        ``filename`` and ``kind='cifti'``.
    """
    import dask.array as da
    import xarray as xr
    from dask import delayed

    source = path_or_img if isinstance(path_or_img, CiftiRunSource) else CiftiRunSource(path_or_img)
    n = source.n_scans
    chunks = source.window(1) if chunks == "auto" else int(chunks)
    blocks = [
        da.from_delayed(
            delayed(source.read, pure=True)(t0, min(t0 + chunks, n)),
            shape=(min(t0 + chunks, n) - t0, source.shape[0]), dtype=source.dtype,
        )
        for t0 in range(0, n, chunks)
    ]
    bm = source.geometry.brain_models
    coords = {
        "structure": ("grayordinate", np.asarray(bm.name)),
        "vertex": ("grayordinate", np.asarray(bm.vertex)),
        "voxel_i": ("grayordinate", np.asarray(bm.voxel[:, 0])),
        "voxel_j": ("grayordinate", np.asarray(bm.voxel[:, 1])),
        "voxel_k": ("grayordinate", np.asarray(bm.voxel[:, 2])),
        "time": ("time", np.asarray(source.series.time)),
    }
    attrs = {"kind": "cifti"}
    if source.t_r is not None:
        attrs["t_r"] = source.t_r
    if (filename := getattr(source, "url", None) or source.path) is not None:
        attrs["filename"] = str(filename)
    return xr.DataArray(
        da.concatenate(blocks, axis=0), dims=("time", "grayordinate"), coords=coords, attrs=attrs, name="bold"
    )


def write_cifti_run(path, brain_models: cifti2.BrainModelAxis, n_scans: int, t_r: float, fill,
                    dtype=np.float32) -> Path:
    """Write a ``.dtseries.nii`` block by block, never holding the whole run.

    Parameters
    ----------
    path : str or path
    brain_models : nibabel.cifti2.BrainModelAxis
    n_scans : int
    t_r : float
        Series step in seconds.
    fill : callable
        ``fill(g0, g1) -> ndarray (n_scans, g1 - g0)``: the time series of
        grayordinates ``g0..g1-1``.
    dtype : numpy dtype

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    series = cifti2.SeriesAxis(start=0.0, step=float(t_r), size=int(n_scans), unit="SECOND")
    header = cifti2.Cifti2Header.from_axes((series, brain_models))
    n_el = len(brain_models)
    zeros = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape=(n_scans, n_el), strides=(0, 0))
    img = cifti2.Cifti2Image(zeros, header=header)
    img.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_SERIES")
    img.to_filename(path)
    proxy = nib.load(path).dataobj
    block = max(1, BLOCK_BYTES // (n_scans * np.dtype(dtype).itemsize))
    for g0 in range(0, n_el, block):
        g1 = min(g0 + block, n_el)
        mm = np.memmap(path, dtype=proxy.dtype, mode="r+", shape=(n_scans, g1 - g0), order="F",
                       offset=int(proxy.offset) + g0 * n_scans * np.dtype(dtype).itemsize)
        mm[:] = fill(g0, g1)
        mm.flush()
        del mm
    return path


class CiftiArrayRunSource(RunSource):
    """A CIFTI run held as a ``(time, grayordinate)`` array (e.g. :func:`open_cifti_run`'s DataArray).

    Parameters
    ----------
    data : numpy or dask array (n_scans, n_grayordinates)
    geometry : CiftiGeometry
    name : str
    """

    def __init__(self, data, geometry: CiftiGeometry, name: str):
        if data.ndim != 2 or data.shape[1] != geometry.n_elements:
            raise SurfaceInputError(
                f"Run {name} has shape {tuple(data.shape)}; its CIFTI file has {geometry.n_elements} "
                "grayordinates (select scans, not grayordinates, before fitting)."
            )
        self.data, self.geometry, self.name = data, geometry, name
        self.affine = np.eye(4)
        self.shape = (int(data.shape[1]), int(data.shape[0]))
        self.dtype = np.dtype(data.dtype)

    def read(self, t0: int, t1: int) -> np.ndarray:
        return np.asarray(self.data[t0:t1])


def cifti_array_source(arr, name: str) -> CiftiArrayRunSource | None:
    """A source for a CIFTI ``(time, grayordinate)`` DataArray from :func:`open_cifti_run`, else None.

    The brain models are read again from the header of the DataArray's ``filename``.
    """
    if getattr(arr, "dims", None) != ("time", "grayordinate") or arr.attrs.get("kind") != "cifti":
        return None
    filename = arr.attrs.get("filename")
    if not filename:
        raise SurfaceInputError(f"Run {name} is a CIFTI DataArray without its 'filename' attribute.")
    geometry = CiftiRunSource(filename).geometry
    return CiftiArrayRunSource(arr.data, geometry, arr.name or name)
