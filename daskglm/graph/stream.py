"""Streaming statistics: one pass over a run, reduced to its sufficient statistics.

Per run the graph is::

    time chunks --chunk_stats--> partial RunStats --tree sum--> RunStats

A ``.nii.gz`` run is one streaming task (gzip has no random access), unless
cores would sit idle and ``rapidgzip`` is installed: then it is cut into one
streamed piece per worker thread, each reading its scans from a gzip seek
index, tree-summed (few pieces: partial statistics are O(voxels x regressors)
each).  A NIfTI-Zarr run is streamed the same way, one piece per worker thread
when cores would idle (any scan is readable: each piece reads the L scans
before it for the lagged products), else one piece; at the same pieces its
statistics are bit for bit those of the ``.nii.gz``.  ``.nii`` runs and in-memory arrays get one task per time chunk,
tree-summed.  The numbers come from :mod:`daskglm.kernels.sufficient_stats`; this module only schedules them.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask import delayed

from daskglm.graph.resources import (
    in_dask_worker,
    limit_heap_fragmentation,
    single_threaded_blas,
    worker_threads,
)
from daskglm.io.base import RunSource
from daskglm.io.nifti_zarr import NiftiZarrRunSource
from daskglm.io.runs import ArrayRunSource
from daskglm.kernels.scaling import scale_volumes
from daskglm.kernels.sufficient_stats import (
    RunStats,
    accumulate_chunk,
    chunk_stats,
    combine_stats,
    empty_stats,
)

__all__ = ["run_stats", "masker_key", "stream_batch_rows"]


#: volumes per read when streaming (2: peak RSS at 96x114x96x450 716 -> 679 MB, no CPU cost)
STREAM_READ = 2
#: scans per statistics update when streaming (fewer passes over the accumulator) ...
STREAM_BATCH = 48
#: ... within this many bytes of batched signal
STREAM_BATCH_BYTES = 48 * 2**20


def _stream_stats(
    source: RunSource, masker, stack, n_lags, chunk, per_volume, background: bool = True,
    span: tuple[int, int] | None = None, index: str | None = None,
) -> RunStats:
    """One pass over a run (or over scans ``span`` of it, read from the gzip seek ``index``), front to back.

    Volumes are read and smoothed a few at a time and their masked signals
    written into a float64 batch buffer, so that the statistics' GEMM runs on
    ``STREAM_BATCH`` scans at once; the last L scans are carried over for the
    lagged products.  Memory: the statistics plus a few volumes.  ``background``
    decompression is skipped on a dask.distributed worker: its threads are its cores.
    """
    limit_heap_fragmentation()
    background = background and not in_dask_worker()
    p = stack.shape[1] // (n_lags + 1)
    total = empty_stats(source.n_scans, n_lags, p, masker.n_voxels)
    previous = np.zeros((0, masker.n_voxels))
    start, stop = span if span is not None else (0, source.n_scans)
    batch, batch_t0, filled = None, start, 0
    with single_threaded_blas:
        step = min(chunk, STREAM_READ)
        if isinstance(source, NiftiZarrRunSource):  # random access: scans start..stop, the L before them read too
            lead = min(start, n_lags)
            if lead:
                previous = scale_volumes(masker.transform(source.read(start - lead, start)), per_volume)
                previous = previous.astype(np.float64)
            chunks = source.iter_range(start, stop, step, reuse_buffer=True)
        elif index is None:
            chunks = source.iter_chunks(step, background=background, reuse_buffer=True)
        else:  # a piece of an indexed .nii.gz, with the L scans before it for the lagged products
            lead = min(start, n_lags)
            if lead:
                prior = source.read_indexed(start - lead, start, index)
                previous = scale_volumes(masker.transform(prior), per_volume).astype(np.float64)
            chunks = source.iter_indexed(start, stop, step, index)
        for t, volumes in chunks:
            if t >= stop:  # the first piece of a split run (span's cuts are multiples of step)
                break
            Y = scale_volumes(masker.transform(volumes), per_volume)
            del volumes
            if batch is None:  # float64: the statistics' GEMM runs on it in place
                batch = np.empty((stream_batch_rows(masker.n_voxels), masker.n_voxels))
            start = 0
            while start < len(Y):
                take = min(len(Y) - start, len(batch) - filled)
                batch[filled : filled + take] = Y[start : start + take]
                filled += take
                start += take
                if filled == len(batch):
                    previous = _flush(total, batch, batch_t0, stack, n_lags, previous)
                    batch_t0, filled = batch_t0 + filled, 0
        if filled:
            _flush(total, batch[:filled], batch_t0, stack, n_lags, previous)
    return total


def stream_batch_rows(n_voxels: int) -> int:
    """Scans per statistics update: up to ``STREAM_BATCH``, within ``STREAM_BATCH_BYTES``."""
    rows = STREAM_BATCH_BYTES // max(n_voxels * 8, 1)
    return int(min(STREAM_BATCH, max(8, rows)))


def _index_pieces(source: RunSource, background: bool) -> int:
    """Pieces to split a streamed run into: the worker threads when cores would idle, else 1.

    A ``.nii.gz`` splits only at a gzip seek index; a NIfTI-Zarr run anywhere.
    """
    splittable = isinstance(source, NiftiZarrRunSource) or (source.sequential and getattr(source, "indexable", False))
    if not (background and splittable):
        return 1
    return int(max(1, min(worker_threads(), source.n_scans // STREAM_BATCH)))


def _flush(total, Y, t0, stack, n_lags, previous) -> np.ndarray:
    """Accumulate one batch; return the last L scans seen so far."""
    accumulate_chunk(total, Y, t0, stack, previous)
    context = np.concatenate([previous, Y[len(Y) - min(n_lags, len(Y)) :]])
    return context[len(context) - n_lags :]


def _file_chunk_stats(source: RunSource, masker, stack, n_lags, t0, t1, per_volume) -> RunStats:
    n_prev = min(t0, n_lags)
    with single_threaded_blas:
        Y = scale_volumes(masker.transform(source.read(t0 - n_prev, t1)), per_volume)
        return chunk_stats(Y[n_prev:], t0, source.n_scans, stack, n_lags, Y[:n_prev])


def _array_chunk_stats(block, masker, stack, n_lags, t0, n_prev, n_scans, per_volume) -> RunStats:
    volumes = np.asarray(block).transpose(3, 2, 1, 0)
    with single_threaded_blas:
        Y = scale_volumes(masker.transform(volumes), per_volume)
        return chunk_stats(Y[n_prev:], t0, n_scans, stack, n_lags, Y[:n_prev])


def _add_into(a: RunStats, b: RunStats) -> RunStats:
    """``a + b``, written into ``a``'s arrays when they are writable.

    ``a`` is a partial sum private to this tree (its only dependent is this
    task), so no third copy of the statistics is allocated: at 200 trials x 96k
    voxels the two streamed pieces and their sum peaked at 1.3 GB, 3 x 0.33 GB.
    """
    arrays_a, arrays_b = a.arrays(), b.arrays()
    if not all(arr.flags.writeable for arr in arrays_a.values()):  # e.g. received read-only from another worker
        return combine_stats(a, b)
    for name, arr in arrays_a.items():
        arr += arrays_b[name]
    return a


def _tree_sum(parts: list):
    while len(parts) > 1:
        parts = [
            delayed(_add_into, pure=True)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def run_stats(
    source: RunSource,
    masker_key,
    stack_key,
    n_lags: int,
    chunk: int,
    per_volume_scaling: bool,
    token: str,
    background: bool = True,
):
    """Delayed :class:`RunStats` of one run.

    ``background`` decompresses a ``.nii.gz`` in a second thread; it pays off
    only when there are idle cores (fewer streamed runs than cores).
    """
    pieces = _index_pieces(source, background)
    if pieces > 1:  # idle cores: split the .nii.gz at a seek index (cached; io/gzindex.py)
        step = min(chunk, STREAM_READ)
        cuts = [int(c) for c in np.linspace(0, source.n_scans / step, pieces + 1).round() * step]
        cuts[-1] = source.n_scans
        # the first piece streams from the start while the index is built up to the last cut
        index = None
        if source.sequential:
            index = delayed(source.build_index, pure=True)(cuts[-2], dask_key_name=f"gzip-index-{token}")
        return _tree_sum([
            delayed(_stream_stats, pure=True)(
                source, masker_key, stack_key, n_lags, chunk, per_volume_scaling, False, (a, b),
                None if a == 0 else index,
            )
            for a, b in zip(cuts[:-1], cuts[1:])
        ])
    if source.streamed:
        return delayed(_stream_stats, pure=True, name=f"stream-stats-{token}")(
            source, masker_key, stack_key, n_lags, chunk, per_volume_scaling, background
        )
    bounds = [(t0, min(t0 + chunk, source.n_scans)) for t0 in range(0, source.n_scans, chunk)]
    parts = []
    if isinstance(source, ArrayRunSource):
        data = source.data
        if not isinstance(data, da.Array):
            data = da.from_array(np.asarray(data), chunks=(-1, -1, -1, chunk))
        for t0, t1 in bounds:
            n_prev = min(t0, n_lags)
            parts.append(
                delayed(_array_chunk_stats, pure=True)(
                    data[..., t0 - n_prev : t1], masker_key, stack_key, n_lags, t0, n_prev,
                    source.n_scans, per_volume_scaling,
                )
            )
    else:
        for t0, t1 in bounds:
            parts.append(
                delayed(_file_chunk_stats, pure=True)(
                    source, masker_key, stack_key, n_lags, t0, t1, per_volume_scaling
                )
            )
    return _tree_sum(parts)


def masker_key(space, token: str):
    """Graph key of the space's stream masker (a kernel from :mod:`daskglm.kernels`), built once per graph.

    The graph holds the kernel's recipe (plain arrays), not the space.
    """
    factory, args = space.stream_masker_recipe()
    return delayed(factory, pure=True, name=f"masker-{token}")(*args)
