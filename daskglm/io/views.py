"""Views of a run: its kept scans (censoring) and its volumes on another grid.

Both are :class:`~daskglm.io.base.RunSource` wrappers, so everything that
streams a run (the statistics pass, the residuals pass, the EPI mask) works
on them unchanged and never holds more than a chunk:

- :class:`CensoredRunSource` exposes only the kept scans of a run (nilearn's
  ``sample_mask``), renumbered ``0 .. n_kept - 1`` as if contiguous: the
  statistics' lagged products then pair consecutive *kept* scans, which is
  what nilearn's AR model sees after ``Y[sample_mask]``.  Censored volumes are
  skipped while streaming (a ``.nii.gz`` is still decompressed front to back).
- :class:`ResampledRunSource` resamples every volume it yields onto a target
  grid with nilearn's ``resample_img`` numerics
  (:mod:`daskglm.kernels.resample`).

Their :meth:`identity` adds the sample mask or the target grid to the
wrapped run's, so resume keys tell them apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

from daskglm.io.base import RunSource
from daskglm.kernels.resample import ResamplingGrid, resample_volumes, resampled_dtype, value_range

__all__ = ["CensoredRunSource", "ResampledRunSource", "run_value_range", "base_source"]


def base_source(source: RunSource) -> RunSource:
    """The run under its views (censored, resampled): the run as given."""
    while isinstance(source, _RunView):
        source = source.source
    return source


def run_value_range(source: RunSource, chunk: int = 16) -> tuple[float, float]:
    """``(min, max)`` of a whole run's finite values, streamed (one pass)."""
    lo, hi = float("inf"), float("-inf")
    for _, volumes in source.iter_chunks(chunk, background=False, reuse_buffer=True):
        a, b = value_range(volumes)
        lo, hi = min(lo, a), max(hi, b)
    return lo, hi


class _RunView(RunSource):
    """A run derived from another one (``self.source``)."""

    source: RunSource

    @property
    def sequential(self) -> bool:
        return self.source.sequential

    @property
    def geometry(self):
        """The wrapped run's surface / CIFTI geometry (None for volumes)."""
        return getattr(self.source, "geometry", None)

    def view_identity(self) -> dict:
        """What this view adds to the wrapped run's identity."""
        raise NotImplementedError

    def identity(self) -> dict:
        return {**self.source.identity(), **self.view_identity()}


class CensoredRunSource(_RunView):
    """The kept scans of a run, renumbered as one contiguous run.

    Parameters
    ----------
    source : RunSource
        The whole run.
    kept : array of int
        Strictly increasing indices of the kept scans (validated by the caller).
    """

    def __init__(self, source: RunSource, kept: np.ndarray):
        self.source = source
        self.kept = np.asarray(kept, dtype=np.int64)
        self.name = source.name
        self.affine = source.affine
        self.dtype = source.dtype
        self.shape = (*source.spatial_shape, len(self.kept))

    def view_identity(self) -> dict:
        digest = hashlib.sha256(self.kept.tobytes()).hexdigest()
        return {"sample_mask": digest, "n_kept": int(len(self.kept))}

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Kept scans ``t0 .. t1 - 1`` (reads the span of the run that holds them)."""
        wanted = self.kept[t0:t1]
        if len(wanted) == 0:
            return np.zeros((0, *self.spatial_shape[::-1]), dtype=self.dtype)
        first, last = int(wanted[0]), int(wanted[-1])
        if last - first + 1 == len(wanted):
            return self.source.read(first, last + 1)
        return self.source.read(first, last + 1)[wanted - first]

    def iter_chunks(
        self, chunk: int, background: bool = True, reuse_buffer: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream the whole run and yield only kept volumes, numbered in kept order."""
        position = 0
        for t0, volumes in self.source.iter_chunks(chunk, background=background, reuse_buffer=reuse_buffer):
            t1 = t0 + len(volumes)
            stop = int(np.searchsorted(self.kept, t1))
            local = self.kept[position:stop] - t0
            if len(local) == len(volumes):
                yield position, volumes
            elif len(local):
                yield position, volumes[local]
            position = stop


class ResampledRunSource(_RunView):
    """A run's volumes resampled onto a target grid (continuous interpolation).

    Parameters
    ----------
    source : RunSource
    grid : daskglm.kernels.resample.ResamplingGrid
        From :func:`~daskglm.kernels.resample.resampling_grid` for the source's grid.
    clip_range : (float, float), optional
        ``(min, max)`` of the whole run (:func:`run_value_range`): nilearn clips
        the resampled run to it.  Without it each volume is clipped to its own range.
    """

    def __init__(self, source: RunSource, grid: ResamplingGrid, clip_range: tuple[float, float] | None = None):
        self.source = source
        self.grid = grid
        self.clip_range = clip_range
        self.name = source.name
        self.affine = np.asarray(grid.affine, dtype=np.float64)
        self.dtype = resampled_dtype(source.dtype)
        self.shape = (*grid.shape, source.n_scans)

    def view_identity(self) -> dict:
        return {"target_affine": np.round(self.grid.affine, 6).tolist(), "target_shape": list(self.grid.shape)}

    def read(self, t0: int, t1: int) -> np.ndarray:
        return resample_volumes(self.source.read(t0, t1), self.grid, clip_range=self.clip_range)

    def iter_chunks(
        self, chunk: int, background: bool = True, reuse_buffer: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        for t0, volumes in self.source.iter_chunks(chunk, background=background, reuse_buffer=reuse_buffer):
            yield t0, resample_volumes(volumes, self.grid, clip_range=self.clip_range)
