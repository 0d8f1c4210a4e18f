"""What a run is to the engine: geometry plus chunked scan reads.

:class:`RunSource` is the seam between storage formats and the engine; every
reader subclasses it: NIfTI files (:mod:`~daskglm.io.nifti`), surface images
and GIfTI files (:mod:`~daskglm.io.gifti`), CIFTI-2 dense runs
(:mod:`~daskglm.io.cifti`), runs at fsspec URLs (:mod:`~daskglm.io.remote`), NIfTI-Zarr
stores (:mod:`~daskglm.io.nifti_zarr`),
in-memory arrays (:mod:`~daskglm.io.runs`) and the censored or resampled
views of a run (:mod:`~daskglm.io.views`).  A source yields scans ``t0..t1``
as a ``(k, nz, ny, nx)`` array for volumes (the C-order view of NIfTI's
Fortran-ordered volumes, so a volume is one contiguous block) and as
``(k, n_elements)`` for surfaces and CIFTI.  Nothing is read when a source is
created.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from daskglm.errors import NiftiInputError

__all__ = ["RunSource", "check_4d", "time_chunk_size", "read_into", "read_exact", "skip", "stream_volumes"]


class RunSource:
    """A 4D run: geometry plus chunked volume reads."""

    shape: tuple[int, ...]  # (*elements, time): (x, y, z, t) for volumes, (n, t) for surfaces
    affine: np.ndarray
    dtype: np.dtype  # dtype of the data after NIfTI scaling
    name: str

    @property
    def n_scans(self) -> int:
        return self.shape[-1]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[:-1])

    @property
    def sequential(self) -> bool:
        """True when reads are cheap only front to back (gzip streams)."""
        return False

    @property
    def streamed(self) -> bool:
        """True when a fit reads this run in streamed pieces (one task per piece), not per time chunk."""
        return self.sequential

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Volumes ``t0..t1-1`` as an array of shape (k, nz, ny, nx)."""
        raise NotImplementedError

    def iter_chunks(
        self, chunk: int, background: bool = True, reuse_buffer: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(t0, volumes)`` for consecutive chunks of the whole run.

        Parameters
        ----------
        chunk : int
            Volumes per chunk.
        background : bool
            Decompress ``.nii.gz`` in a background thread (overlaps with the
            caller's work; worth it when cores are idle).
        reuse_buffer : bool
            Read every chunk into one buffer: the yielded array is only valid
            until the next one is requested.
        """
        for t0 in range(0, self.n_scans, chunk):
            yield t0, self.read(t0, min(t0 + chunk, self.n_scans))

    def identity(self) -> dict:
        """What identifies this input (for resuming fits)."""
        return {"name": self.name, "shape": list(self.shape)}


def check_4d(shape, name: str) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        raise NiftiInputError(
            f"Run {name} is a 3D image of shape {shape}; a run must be 4D (x, y, z, time)."
        )
    if len(shape) == 5 and shape[3] == 1:  # some writers store time as 5th dim
        shape = (*shape[:3], shape[4])
    if len(shape) != 4:
        raise NiftiInputError(f"Run {name} must be 4D (x, y, z, time), got shape {shape}.")
    if min(shape) < 1:
        raise NiftiInputError(f"Run {name} has an empty dimension: shape {shape}.")
    return shape  # type: ignore[return-value]


def time_chunk_size(spatial_shape, dtype, target_bytes: float = 48e6) -> int:
    """Volumes per read so that one chunk holds about ``target_bytes``."""
    per_volume = int(np.prod(spatial_shape)) * max(np.dtype(dtype).itemsize, 4)
    return int(max(1, min(64, target_bytes // per_volume)))


def read_into(fh, buf: np.ndarray, name: str) -> None:
    """Fill ``buf`` from the stream ``fh`` (no intermediate bytes objects)."""
    view, filled = memoryview(buf), 0
    try:
        while filled < len(view):
            got = fh.readinto(view[filled:])
            if not got:
                break
            filled += got
    except (EOFError, OSError) as err:  # gzip.BadGzipFile is an OSError
        raise NiftiInputError(f"Run {name} is corrupt or truncated: {err}") from err
    if filled != len(view):
        raise NiftiInputError(
            f"Run {name} is truncated: expected {len(view)} more bytes of image data, got {filled}."
        )


def read_exact(fh, n: int, name: str) -> np.ndarray:
    """The next ``n`` bytes of the stream as a uint8 array."""
    buf = np.empty(n, dtype=np.uint8)
    read_into(fh, buf, name)
    return buf


def skip(fh, n: int, name: str) -> None:
    """Read past ``n`` bytes of a stream that cannot seek (gzip), 16 MiB at a time."""
    while n > 0:
        step = min(n, 1 << 24)
        read_exact(fh, step, name)
        n -= step


def stream_volumes(source, fh, chunk: int, reuse_buffer: bool) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t0, volumes)`` from a decompressed NIfTI stream ``fh`` positioned at its start.

    ``source`` gives the layout (``offset``, ``volume_bytes``, ``n_scans``,
    ``name``) and turns raw bytes into volumes (``as_volumes(buf, k)``).
    """
    shared = np.empty(chunk * source.volume_bytes, dtype=np.uint8) if reuse_buffer else None
    skip(fh, source.offset, source.name)
    for t0 in range(0, source.n_scans, chunk):
        k = min(chunk, source.n_scans - t0)
        n_bytes = k * source.volume_bytes
        buf = np.empty(n_bytes, dtype=np.uint8) if shared is None else shared[:n_bytes]
        read_into(fh, buf, source.name)
        yield t0, source.as_volumes(buf, k)
