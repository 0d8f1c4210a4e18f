"""What a run is to the engine: geometry plus chunked volume reads.

:class:`RunSource` is the seam between storage formats and the engine: a
reader (NIfTI today; GIfTI, CIFTI and object storage next) subclasses it and
yields volumes ``t0..t1`` as a ``(k, nz, ny, nx)`` array (the C-order view of
NIfTI's Fortran-ordered volumes, so a volume is one contiguous block).
Nothing is read when a source is created.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import NiftiInputError

__all__ = ["RunSource", "check_4d", "time_chunk_size"]


class RunSource:
    """A 4D run: geometry plus chunked volume reads."""

    shape: tuple[int, int, int, int]
    affine: np.ndarray
    dtype: np.dtype  # dtype of the data after NIfTI scaling
    name: str

    @property
    def n_scans(self) -> int:
        return self.shape[3]

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return self.shape[:3]

    @property
    def sequential(self) -> bool:
        """True when reads are cheap only front to back (gzip streams)."""
        return False

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
