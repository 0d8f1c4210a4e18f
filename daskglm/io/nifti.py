"""Lazy NIfTI runs: header-only opening and chunked volume reads (the xarray view: :mod:`.dataarray`).

A run is described by a :class:`RunSource` that knows its shape, affine and
how to read volumes ``t0..t1`` as a ``(k, nz, ny, nx)`` array (the C-order view
of NIfTI's Fortran-ordered volumes, so a volume is one contiguous block).
Nothing is read when a source is created.

``.nii`` files are memory-mapped (read-only), so any time chunk can be read
independently.  ``.nii.gz`` files are streamed once, front to back, through
ISA-L's gzip reader (decompression runs in a background thread).  With
``rapidgzip`` installed, :meth:`FileRunSource.build_index` builds (once, cached)
a seek index and :meth:`FileRunSource.read_indexed` reads any time chunk from
it, so one long compressed run can be split over workers (:mod:`.gzindex`).
Plain :meth:`FileRunSource.read` on a ``.gz`` re-decompresses from the start
and is kept for ``open_run``'s occasional slicing.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.volumeutils import apply_read_scaling

from daskglm.errors import NiftiInputError
from daskglm.io import gzindex
from daskglm.io.base import RunSource, check_4d, read_exact, skip, stream_volumes

__all__ = ["FileRunSource", "load_image"]



def load_image(obj, what: str = "image") -> nib.Nifti1Image:
    """Load a NIfTI from a path (header only) or pass an image through."""
    if isinstance(obj, (nib.Nifti1Image, nib.Nifti2Image)):
        return obj
    if isinstance(obj, str) and "://" in obj and not obj.startswith("file://"):  # fsspec URL (a mask)
        from daskglm.io.remote import load_remote_image

        return load_remote_image(obj, what=what)
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"The {what} file {str(path)!r} does not exist.")
        if path.is_dir():
            raise NiftiInputError(f"The {what} path {str(path)!r} is a directory, not a NIfTI file.")
        try:
            img = nib.load(path)
        except Exception as err:  # nibabel raises ImageFileError, EOFError, OSError...
            raise NiftiInputError(
                f"Could not read the {what} {str(path)!r} as NIfTI: {err}"
            ) from err
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise NiftiInputError(
                f"The {what} {str(path)!r} is a {type(img).__name__}, not a NIfTI image."
            )
        return img
    raise TypeError(
        f"The {what} must be a path or a nibabel Nifti1Image, got {type(obj).__name__}."
    )


class FileRunSource(RunSource):
    """A run stored in a ``.nii`` or ``.nii.gz`` file."""

    def __init__(self, path: str | os.PathLike, img: nib.Nifti1Image | None = None):
        self.path = Path(path)
        img = img if img is not None else load_image(self.path, "run")
        self.name = str(self.path)
        self.shape = check_4d(img.shape, self.name)
        self.affine = np.asarray(img.affine, dtype=np.float64)
        self.header = img.header
        proxy = img.dataobj
        self.raw_dtype = np.dtype(img.header.get_data_dtype())
        # for .nii.gz, header.get_data_offset() can read 0; the proxy knows the truth
        self.offset = int(getattr(proxy, "offset", img.header.get_data_offset()))
        self.slope = getattr(proxy, "slope", 1.0)
        self.inter = getattr(proxy, "inter", 0.0)
        self.compressed = _is_gzip(self.path)
        probe = apply_read_scaling(np.zeros(1, self.raw_dtype), self._slope(), self._inter())
        self.dtype = probe.dtype
        self.volume_bytes = int(np.prod(self.shape[:3])) * self.raw_dtype.itemsize
        self._check_size()

    def _slope(self):
        s = np.asanyarray(self.slope)
        return s

    def _inter(self):
        i = np.asanyarray(self.inter)
        return i.astype(np.asanyarray(self.slope).dtype) if np.can_cast(i, np.asanyarray(self.slope).dtype) else i

    def _check_size(self) -> None:
        needed = self.offset + self.volume_bytes * self.n_scans
        if self.compressed:
            _check_gzip_length(self.path, needed, self.n_scans, self.name)
            return
        size = self.path.stat().st_size
        if size < needed:
            raise NiftiInputError(
                f"Run {self.name} is truncated: the header announces {self.n_scans} volumes "
                f"({needed} bytes) but the file has {size} bytes."
            )

    @property
    def sequential(self) -> bool:
        return self.compressed

    def identity(self) -> dict:
        st = self.path.stat()
        return {"path": str(self.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        return apply_read_scaling(raw, self._slope(), self._inter())

    def as_volumes(self, buf, k: int) -> np.ndarray:
        nx, ny, nz = self.shape[:3]
        raw = np.frombuffer(buf, dtype=self.raw_dtype, count=k * nx * ny * nz)
        return self._scale(raw.reshape(k, nz, ny, nx))

    def read(self, t0: int, t1: int) -> np.ndarray:
        k = t1 - t0
        if self.compressed:
            with _open_gzip(self.path, threaded=False) as fh:
                skip(fh, self.offset + t0 * self.volume_bytes, self.name)
                buf = read_exact(fh, k * self.volume_bytes, self.name)
            return self.as_volumes(buf, k)
        nx, ny, nz = self.shape[:3]
        mm = np.memmap(
            self.path,
            dtype=self.raw_dtype,
            mode="r",
            offset=self.offset + t0 * self.volume_bytes,
            shape=(k, nz, ny, nx),
        )
        out = self._scale(np.array(mm))
        del mm
        return out

    @property
    def indexable(self) -> bool:
        """True for a ``.nii.gz`` that a seek index can open to random access (``rapidgzip`` installed)."""
        return self.compressed and gzindex.available()

    def build_index(self, upto_scan: int | None = None) -> str:
        """Build (or find cached) this ``.nii.gz``'s seek index; return its path (:mod:`.gzindex`).

        ``upto_scan``: index only up to that scan (enough to start reading there).
        """
        upto = None if upto_scan is None else self.offset + int(upto_scan) * self.volume_bytes
        try:
            return gzindex.build_index(self.path, upto)
        except (OSError, RuntimeError, ValueError) as err:
            raise NiftiInputError(f"Run {self.name} is corrupt or truncated: {err}") from err

    def read_indexed(self, t0: int, t1: int, index: str) -> np.ndarray:
        """Volumes ``t0..t1-1`` of a ``.nii.gz``, decompressed from the nearest checkpoint of ``index``."""
        k = t1 - t0
        buf = np.empty(k * self.volume_bytes, dtype=np.uint8)
        try:
            got = gzindex.read_range(self.path, index, self.offset + t0 * self.volume_bytes, buf)
        except (OSError, RuntimeError, ValueError) as err:
            raise NiftiInputError(f"Run {self.name} is corrupt or truncated: {err}") from err
        if got != len(buf):
            raise NiftiInputError(
                f"Run {self.name} is truncated: expected {len(buf)} bytes of image data, got {got}."
            )
        return self.as_volumes(buf, k)

    def iter_indexed(self, t0: int, t1: int, chunk: int, index: str) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(t, volumes)`` for consecutive chunks of scans ``t0..t1`` read through the seek ``index``.

        One decompressor and one buffer for the whole range: each yielded array is only valid
        until the next one is requested.
        """
        starts = list(range(t0, t1, chunk))
        sizes = [(min(t + chunk, t1) - t) * self.volume_bytes for t in starts]
        buf = np.empty(max(sizes, default=0), dtype=np.uint8)
        pieces = gzindex.iter_range(self.path, index, self.offset + t0 * self.volume_bytes, sizes, buf)
        try:
            for t, size, raw in zip(starts, sizes, pieces):
                if len(raw) != size:
                    raise NiftiInputError(
                        f"Run {self.name} is truncated: expected {size} bytes of image data, got {len(raw)}."
                    )
                yield t, self.as_volumes(raw, size // self.volume_bytes)
        except (OSError, RuntimeError) as err:
            raise NiftiInputError(f"Run {self.name} is corrupt or truncated: {err}") from err
        finally:
            pieces.close()

    def iter_chunks(
        self, chunk: int, background: bool = True, reuse_buffer: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        if not self.compressed:
            yield from super().iter_chunks(chunk)
            return
        with _open_gzip(self.path, threaded=background) as fh:
            yield from stream_volumes(self, fh, chunk, reuse_buffer)


def _gzip_isize(path: Path) -> int | None:
    """The ISIZE trailer of a gzip file (uncompressed length mod 2**32), or None if too short."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 18:  # 10-byte header + 8-byte trailer at least
            return None
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0]


def _gzip_stream_length(path: Path, limit: int) -> tuple[int, str]:
    """Decompress up to ``limit`` bytes; return how many came out and the error, if any."""
    got = 0
    try:
        with _open_gzip(path, threaded=False) as fh:
            while got < limit:
                buf = fh.read(min(limit - got, 1 << 16))
                if not buf:
                    break
                got += len(buf)
    except (EOFError, OSError, gzip.BadGzipFile, ValueError) as err:
        return got, str(err)
    return got, ""


def _check_gzip_length(path: Path, needed: int, n_scans: int, name: str) -> None:
    """Fail early on a truncated ``.nii.gz``.

    The cheap test reads the 4-byte ISIZE trailer of the (last) gzip member,
    which equals the uncompressed length mod 2**32 for the usual single-member
    files.  Only when it disagrees (truncated file, multi-member or padded
    stream) is the stream decompressed - up to the bytes the header needs - to
    tell a truncated file from a valid unusual one.
    """
    if _gzip_isize(path) == needed % (1 << 32):
        return
    got, err = _gzip_stream_length(path, needed)
    if got < needed:
        detail = f" ({err})" if err else ""
        raise NiftiInputError(
            f"Run {name} is truncated or corrupt: the header announces {n_scans} volumes "
            f"({needed} bytes uncompressed) but only {got} bytes could be decompressed{detail}."
        )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_gzip(path: Path, threaded: bool):
    try:
        if threaded:
            from isal import igzip_threaded

            return igzip_threaded.open(path, "rb", threads=1)
        from isal import igzip

        return igzip.open(path, "rb")
    except ImportError:  # pragma: no cover - isal is a core dependency
        return gzip.open(path, "rb")


