"""Runs on object storage or HTTP(S): :class:`RemoteRunSource` over fsspec file objects.

A run given as an fsspec URL (``s3://bucket/sub-01/func/...bold.nii.gz``,
``gs://...``, ``https://...``) is never downloaded whole, and never to the
client: creating the source reads the NIfTI header (the first few KiB) and
the object's size; the worker that fits the run opens it itself and streams
it front to back through an fsspec file object with a read-ahead buffer of
:data:`BLOCK_SIZE`, decompressing ``.nii.gz`` on the fly with ISA-L.  Memory
per streamed run is the read-ahead block, the inflater's window and one chunk
of volumes, whatever the run's size.  Uncompressed ``.nii`` objects allow
random access: each time chunk is one ranged read.

The source is picklable (URL, options and header fields; no open handle), so
it travels in the dask graph.  :class:`RemoteGiftiRunSource` streams a pair
of ``.func.gii`` hemispheres the same way (incremental XML parse).
``storage_options`` are fsspec's (for S3: ``anon``, ``key``, ``secret``, ``endpoint_url``, ...); options set in
``fsspec.config.conf`` for the protocol on the client are captured too, so
workers need no configuration of their own.
"""

from __future__ import annotations

import io
import struct

import nibabel as nib
import numpy as np
from nibabel.volumeutils import apply_read_scaling

from daskglm.errors import NiftiInputError
from daskglm.io.base import RunSource, check_4d, read_exact, skip, stream_volumes
from daskglm.io.gifti import GiftiRunSource, _single_array_layout

__all__ = ["RemoteRunSource", "RemoteGiftiRunSource", "is_url", "open_url", "read_remote_bytes", "load_remote_image", "BLOCK_SIZE"]

#: Read-ahead block of the fsspec file objects (bytes).
BLOCK_SIZE = 4 << 20
_HEADER_PROBE = 1 << 14


def is_url(obj) -> bool:
    """Whether ``obj`` is a string URL with a scheme other than ``file://``."""
    return isinstance(obj, str) and "://" in obj and not obj.startswith("file://")


def _options(url: str, storage_options: dict | None) -> dict:
    import fsspec

    protocol = url.split("://", 1)[0]
    options = dict(fsspec.config.conf.get(protocol, {}))
    options.update(storage_options or {})
    return options


def open_url(url: str, storage_options: dict | None = None, block_size: int = BLOCK_SIZE,
             cache_type: str = "readahead"):
    """A binary fsspec file object on ``url`` (read-ahead buffer; ``cache_type="none"``: exact ranges)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **_options(url, storage_options))
    try:
        return fs.open(path, "rb", block_size=block_size, cache_type=cache_type)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"The file {url!r} does not exist.") from err


def read_remote_bytes(url: str, storage_options: dict | None = None) -> bytes:
    """The whole content of a (small) object: sidecars, events, confounds, masks."""
    with open_url(url, storage_options) as fh:
        return fh.read()


def load_remote_image(url: str, storage_options: dict | None = None, what: str = "image"):
    """A small NIfTI (a mask) read into memory from a URL."""
    data = read_remote_bytes(url, storage_options)
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    try:
        return nib.Nifti1Image.from_bytes(data)
    except Exception as err:
        raise NiftiInputError(f"Could not read the {what} {url!r} as NIfTI: {err}") from err


def _gzip_reader(fh):
    try:
        from isal import igzip

        return igzip.open(fh, "rb")
    except ImportError:  # pragma: no cover - isal is a core dependency
        import gzip

        return gzip.open(fh, "rb")


def _inflate_prefix(prefix: bytes, n: int) -> bytes:
    """The first ``n`` uncompressed bytes of a gzip stream, from its first compressed bytes."""
    import zlib

    try:
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(prefix, n)
    except zlib.error as err:
        raise NiftiInputError(f"Not a valid gzip stream: {err}") from err


def _parse_header(head: bytes, url: str):
    if len(head) < 348:
        raise NiftiInputError(f"Run {url} is too short to hold a NIfTI header ({len(head)} bytes).")
    for klass, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        for endian in "<>":
            if struct.unpack(f"{endian}i", head[:4])[0] == size and len(head) >= size:
                hdr = klass.from_fileobj(io.BytesIO(head[:size]))
                return hdr
    raise NiftiInputError(f"Run {url} is not a NIfTI file (bad sizeof_hdr).")


class RemoteRunSource(RunSource):
    """A ``.nii`` / ``.nii.gz`` run at an fsspec URL, streamed by whichever process reads it.

    Parameters
    ----------
    url : str
        ``s3://``, ``gs://``, ``https://``, ... URL of the run.
    storage_options : dict, optional
        fsspec options, e.g. ``{"anon": True}`` for public buckets (OpenNeuro) or
        ``{"endpoint_url": ..., "key": ..., "secret": ...}``.
    """

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = self.name = str(url)
        self.storage_options = _options(self.url, storage_options)
        with open_url(self.url, self.storage_options, block_size=_HEADER_PROBE) as fh:
            self.size = int(fh.size)
            info = getattr(fh, "details", {}) or {}
            prefix = fh.read(_HEADER_PROBE)
        self.compressed = prefix[:2] == b"\x1f\x8b"
        head = _inflate_prefix(prefix, 540) if self.compressed else prefix[:540]
        self._version = str(info.get("ETag") or info.get("etag") or info.get("LastModified")
                            or info.get("mtime") or "")
        hdr = _parse_header(head, self.url)
        self.header = hdr
        self.shape = check_4d(hdr.get_data_shape(), self.name)
        self.affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
        self.raw_dtype = np.dtype(hdr.get_data_dtype())
        self.offset = int(hdr.get_data_offset())
        slope, inter = hdr.get_slope_inter()
        self.slope = 1.0 if slope is None else slope
        self.inter = 0.0 if inter is None else inter
        self.dtype = apply_read_scaling(np.zeros(1, self.raw_dtype), self.slope, self.inter).dtype
        self.volume_bytes = int(np.prod(self.shape[:3])) * self.raw_dtype.itemsize
        needed = self.offset + self.volume_bytes * self.n_scans
        if not self.compressed and self.size < needed:
            raise NiftiInputError(
                f"Run {self.name} is truncated: the header announces {self.n_scans} volumes "
                f"({needed} bytes) but the object has {self.size} bytes."
            )

    def __repr__(self) -> str:
        return f"RemoteRunSource({self.url!r})"

    def __str__(self) -> str:
        return self.url

    @property
    def sequential(self) -> bool:
        return self.compressed

    def identity(self) -> dict:
        return {"url": self.url, "size": self.size, "version": self._version}

    def as_volumes(self, buf, k: int) -> np.ndarray:
        nx, ny, nz = self.shape[:3]
        raw = np.frombuffer(buf, dtype=self.raw_dtype, count=k * nx * ny * nz)
        return apply_read_scaling(raw.reshape(k, nz, ny, nx), self.slope, self.inter)

    def read(self, t0: int, t1: int) -> np.ndarray:
        k = t1 - t0
        start = self.offset + t0 * self.volume_bytes
        with open_url(self.url, self.storage_options,
                      cache_type="readahead" if self.compressed else "none") as fh:
            if self.compressed:  # no random access: inflate from the start
                with _gzip_reader(fh) as gz:
                    skip(gz, start, self.name)
                    buf = read_exact(gz, k * self.volume_bytes, self.name)
            else:
                fh.seek(start)
                buf = read_exact(fh, k * self.volume_bytes, self.name)
        return self.as_volumes(buf, k)

    def iter_chunks(self, chunk: int, background: bool = True, reuse_buffer: bool = False):
        if not self.compressed:
            yield from super().iter_chunks(chunk)
            return
        with open_url(self.url, self.storage_options) as fh, _gzip_reader(fh) as gz:
            yield from stream_volumes(self, gz, chunk, reuse_buffer)


def _gifti_head(fh, url: str) -> tuple[dict, int]:
    """The first DataArray's attributes and the number of scans, from the start of a GIfTI stream."""
    import xml.etree.ElementTree as ET

    from daskglm.errors import SurfaceInputError

    n_arrays = None
    try:
        for _, elem in ET.iterparse(fh, events=("start",)):
            if elem.tag == "GIFTI":
                n_arrays = int(elem.attrib.get("NumberOfDataArrays", 0))
            elif elem.tag == "DataArray":
                return dict(elem.attrib), int(n_arrays or 0)
    except ET.ParseError as err:
        raise SurfaceInputError(f"{url} is not a GIfTI file: {err}") from err
    raise SurfaceInputError(f"{url} holds no DataArray.")


class RemoteGiftiRunSource(GiftiRunSource):
    """One ``.func.gii`` per mesh part at fsspec URLs, streamed scan by scan by the reader.

    Creating the source reads the start of each file (the ``GIFTI`` element's
    ``NumberOfDataArrays`` and the first ``DataArray``'s attributes); reading
    parses each file's XML incrementally from an fsspec stream (read-ahead
    :data:`BLOCK_SIZE`), one scan per part decoded at a time, as
    :class:`~daskglm.io.gifti.GiftiRunSource` does for local files.

    Parameters
    ----------
    urls : dict
        Mesh part (``"left"``, ``"right"``) -> URL.
    mesh : nilearn.surface.PolyMesh
    storage_options : dict, optional
    """

    def __init__(self, urls: dict, mesh, storage_options: dict | None = None):
        from daskglm.errors import SurfaceInputError
        from daskglm.io.gifti import SurfaceGeometry, _array_dtype

        self.geometry = SurfaceGeometry(mesh)
        if set(urls) != set(self.geometry.part_names):
            raise SurfaceInputError(f"GIfTI files given for {sorted(urls)}, the mesh has parts {self.geometry.part_names}.")
        self.urls = {p: str(urls[p]) for p in self.geometry.part_names}
        self.url = self.name = self.urls[self.geometry.part_names[0]]
        self.storage_options = _options(self.url, storage_options)
        self.path, self.affine, self._single, self._versions = None, np.eye(4), {}, {}
        lengths, dtypes = set(), []
        for part, size in zip(self.geometry.part_names, self.geometry.sizes):
            with open_url(self.urls[part], self.storage_options) as fh:
                info = getattr(fh, "details", {}) or {}
                attrs, n_scans = _gifti_head(fh, self.urls[part])
            self._versions[part] = [int(info.get("size", 0) or 0), str(info.get("ETag") or info.get("mtime") or "")]
            if attrs.get("Encoding") in ("ExternalFileBinary", "GIFTI_ENCODING_EXTBIN"):
                raise SurfaceInputError(f"{self.urls[part]}: external-file GIfTI data cannot be read from a URL.")
            # one 2-D array: (vertex, time), or (time, vertex) as nilearn reads it
            dims = (int(attrs["Dim0"]), int(attrs.get("Dim1", 1)))
            self._single[part] = n_scans == 1 and int(attrs.get("Dimensionality", 1)) == 2
            if self._single[part]:  # oriented as the local reader does (a square array: nilearn's way)
                n_scans, time_major = _single_array_layout(self.urls[part], attrs, size)
                self._single[part] = "time" if time_major else "vertex"
            elif dims[0] != size:
                raise SurfaceInputError(f"{self.urls[part]} holds arrays of shape {dims}; the mesh part {part} has "
                                        f"{size} vertices.")
            lengths.add(n_scans)
            dtypes.append(_array_dtype(attrs).newbyteorder("="))
        if len(lengths) != 1 or min(lengths) < 1:
            raise SurfaceInputError(f"The GIfTI files hold different numbers of scans: {sorted(lengths)}.")
        self.shape = (self.geometry.n_elements, lengths.pop())
        self.dtype = np.result_type(*dtypes)

    def __repr__(self) -> str:
        return f"RemoteGiftiRunSource({self.urls!r})"

    def __str__(self) -> str:
        return self.url

    def _part_scans(self, part: str):
        import xml.etree.ElementTree as ET

        from daskglm.io.gifti import _decode

        with open_url(self.urls[part], self.storage_options) as fh:
            attrs = None
            for event, elem in ET.iterparse(fh, events=("start", "end")):
                if event == "start" and elem.tag == "DataArray":
                    attrs = dict(elem.attrib)
                elif event == "end" and elem.tag == "Data" and attrs is not None:
                    values = _decode(attrs, elem.text or "", None)
                    elem.clear()
                    if self._single[part]:
                        order = "F" if attrs.get("ArrayIndexingOrder") == "ColumnMajorOrder" else "C"
                        block = values.reshape(int(attrs["Dim0"]), int(attrs["Dim1"]), order=order)
                        yield from (block.T if self._single[part] == "vertex" else block)
                        return
                    yield values
                elif event == "end" and elem.tag == "DataArray":
                    elem.clear()
                    attrs = None

    def identity(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "mesh": self.geometry.digest(),
                **{part: {"url": url, "version": self._versions[part]} for part, url in self.urls.items()}}
