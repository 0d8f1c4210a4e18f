"""Dask graph building: streaming statistics per run, blockwise voxel solves.

This module holds all of the dask plumbing and none of the statistics; the
numbers come from :mod:`daskglm.kernels` and :mod:`daskglm.contrasts`.

Per run the graph is::

    time chunks --chunk_stats--> partial RunStats --tree sum--> RunStats
    RunStats --split by voxel block--> dask arrays (voxel-chunked)
    blockwise(fit_block) --> packed (beta, dispersion, ar_coef, cov_index)

A ``.nii.gz`` run is one streaming task (gzip has no random access); ``.nii``
runs and in-memory arrays get one task per time chunk, tree-summed.
Design-only inputs (stacked design, design tables, AR(1) covariance tables)
enter the graph once each as a delayed key, never pickled per task.
"""

from __future__ import annotations

import math
from functools import partial

import dask.array as da
import numpy as np
from dask import delayed

from ..io.nifti import ArrayRunSource, RunSource
from ..kernels.ar import binned_gram_inverses
from ..kernels.exact import ExactTables
from ..kernels.fit import FitOptions, fit_block, packed_rows, residual_total_block
from ..kernels.glm import DesignTables, constant_in_span, whitened_gram_inverse
from ..kernels.masker import VolumeMasker
from ..kernels.stats import (
    RunStats,
    accumulate_chunk,
    chunk_stats,
    combine_stats,
    empty_stats,
    stacked_design,
)
from .resources import limit_heap_fragmentation, single_threaded_blas

__all__ = ["RunPlan", "run_stats", "fit_run", "voxel_chunks", "voxel_block_size", "time_chunk_size"]

#: volumes read and smoothed at once when streaming a .gz run
STREAM_READ = 4
#: scans per statistics update when streaming (fewer passes over the accumulator) ...
STREAM_BATCH = 48
#: ... within this many bytes of batched signal
STREAM_BATCH_BYTES = 48 * 2**20

STAT_FIELDS = ("sy", "yy", "yy_lag", "xy", "xy_sym", "head", "tail")


def time_chunk_size(spatial_shape, dtype, target_bytes: float = 48e6) -> int:
    """Volumes per read so that one chunk holds about ``target_bytes``."""
    per_volume = int(np.prod(spatial_shape)) * max(np.dtype(dtype).itemsize, 4)
    return int(max(1, min(64, target_bytes // per_volume)))


def voxel_block_size(n_regressors: int) -> int:
    """Voxels per solve block: a block's temporaries scale with voxels x regressors."""
    return int(min(32768, max(4096, 2**19 // max(n_regressors, 1))))


def voxel_chunks(n_voxels: int, block: int) -> tuple[int, ...]:
    if n_voxels == 0:
        return (0,)
    n_blocks = max(1, math.ceil(n_voxels / block))
    base = math.ceil(n_voxels / n_blocks)
    sizes = [base] * (n_voxels // base)
    if n_voxels % base:
        sizes.append(n_voxels % base)
    return tuple(sizes)


def _volume_scaling(Y: np.ndarray, per_volume: bool) -> np.ndarray:
    if not per_volume:
        return Y
    mean = np.maximum(Y.mean(axis=1, keepdims=True), 1.0)
    return 100.0 * (Y / mean - 1.0)


def _stream_stats(
    source: RunSource, masker, stack, n_lags, chunk, per_volume, background: bool = True
) -> RunStats:
    """One pass over a run, front to back.

    Volumes are read and smoothed a few at a time and their masked signals
    written into a float64 batch buffer, so that the statistics' GEMM runs on
    ``STREAM_BATCH`` scans at once; the last L scans are carried over for the
    lagged products.  Memory: the statistics plus a few volumes.
    """
    limit_heap_fragmentation()
    p = stack.shape[1] // (n_lags + 1)
    total = empty_stats(source.n_scans, n_lags, p, masker.n_voxels)
    previous = np.zeros((0, masker.n_voxels))
    batch, batch_t0, filled = None, 0, 0
    with single_threaded_blas:
        chunks = source.iter_chunks(min(chunk, STREAM_READ), background=background, reuse_buffer=True)
        for _, volumes in chunks:
            Y = _volume_scaling(masker.transform(volumes), per_volume)
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


def _flush(total, Y, t0, stack, n_lags, previous) -> np.ndarray:
    """Accumulate one batch; return the last L scans seen so far."""
    accumulate_chunk(total, Y, t0, stack, previous)
    context = np.concatenate([previous, Y[len(Y) - min(n_lags, len(Y)) :]])
    return context[len(context) - n_lags :]


def _file_chunk_stats(source: RunSource, masker, stack, n_lags, t0, t1, per_volume) -> RunStats:
    n_prev = min(t0, n_lags)
    with single_threaded_blas:
        Y = _volume_scaling(masker.transform(source.read(t0 - n_prev, t1)), per_volume)
        return chunk_stats(Y[n_prev:], t0, source.n_scans, stack, n_lags, Y[:n_prev])


def _array_chunk_stats(block, masker, stack, n_lags, t0, n_prev, n_scans, per_volume) -> RunStats:
    volumes = np.asarray(block).transpose(3, 2, 1, 0)
    with single_threaded_blas:
        Y = _volume_scaling(masker.transform(volumes), per_volume)
        return chunk_stats(Y[n_prev:], t0, n_scans, stack, n_lags, Y[:n_prev])


def _tree_sum(parts: list):
    while len(parts) > 1:
        parts = [
            delayed(combine_stats, pure=True)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
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
    if source.sequential:
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


def _field_shape(name: str, n_lags: int, p: int, n_vox: int) -> tuple[int, ...]:
    return {
        "sy": (n_vox,),
        "yy": (n_vox,),
        "yy_lag": (n_lags, n_vox),
        "xy": (p, n_vox),
        "xy_sym": (n_lags, p, n_vox),
        "head": (n_lags, n_vox),
        "tail": (n_lags, n_vox),
    }[name]


_INDICES = {
    "sy": "v",
    "yy": "v",
    "yy_lag": "lv",
    "xy": "pv",
    "xy_sym": "lpv",
    "head": "lv",
    "tail": "lv",
}


def stats_as_arrays(stats_key, n_scans, n_lags, p, vchunks) -> dict[str, da.Array]:
    """The fields of a delayed RunStats as voxel-chunked dask arrays."""
    n_vox = sum(vchunks)
    arrays = {}
    for name in STAT_FIELDS:
        shape = _field_shape(name, n_lags, p, n_vox)
        arr = da.from_delayed(getattr(stats_key, name), shape=shape, dtype=np.float64)
        arrays[name] = arr.rechunk(shape[:-1] + (vchunks,))
    return arrays


def _rebuild(n_scans, sy, yy, yy_lag, xy, xy_sym, head, tail) -> RunStats:
    return RunStats(n_scans, sy, yy, yy_lag, xy, xy_sym, head, tail)


def _call_on_stats(func, n_scans: int, *blocks_and_extra):
    """Rebuild a block's RunStats from its field blocks and call ``func`` on it."""
    n_fields = len(STAT_FIELDS)
    stats = _rebuild(n_scans, *blocks_and_extra[:n_fields])
    with single_threaded_blas:
        return func(stats, *blocks_and_extra[n_fields:])


def _blockwise_stats(func, out_index, arrays, n_scans, *extra, **kwargs):
    args = []
    for name in STAT_FIELDS:
        args += [arrays[name], _INDICES[name]]
    for e in extra:
        args += [e, "" if isinstance(e, da.Array) else None]
    return da.blockwise(
        partial(_call_on_stats, func, n_scans), out_index, *args,
        dtype=np.float64, concatenate=True, **kwargs,
    )


class RunPlan:
    """Everything design-side about one run, entered in the graph once."""

    def __init__(self, X: np.ndarray, options: FitOptions, n_lags: int, token: str):
        self.X = X
        self.options = options
        self.n_lags = n_lags
        self.token = token
        self.n_scans, self.n_regressors = X.shape
        self.stack = delayed(stacked_design, pure=True, name=f"design-stack-{token}")(X, n_lags)
        self.tables = delayed(DesignTables, pure=True, name=f"design-tables-{token}")(X, n_lags)
        self.exact_tables = None
        if options.uses_stack:
            # per-voxel AR(p): design-only lagged Gram stack (+ bias matrix if exact)
            self.exact_tables = delayed(ExactTables, pure=True, name=f"exact-tables-{token}")(
                X, options.ar_order, options.exact
            )
            self.cov_table = delayed(_gram_stack, pure=True, name=f"gram-stack-{token}")(
                self.exact_tables
            )
        elif options.ar_order == 1:
            self.cov_table = delayed(binned_gram_inverses, pure=True, name=f"ar1-tables-{token}")(X)
        else:
            self.cov_table = delayed(_ols_cov_table, pure=True, name=f"ols-table-{token}")(X)


    @property
    def n_tables(self) -> int:
        """Length of the ``cov_table`` axis."""
        if self.options.uses_stack:
            p = self.options.ar_order
            return (p + 1) ** 2 + p**2
        from ..kernels.ar import N_BINS

        return N_BINS


def _gram_stack(tables: ExactTables) -> np.ndarray:
    return tables.gram_stack


def _ols_cov_table(X: np.ndarray) -> np.ndarray:
    from ..kernels.ar import N_BINS, OLS_BIN

    table = np.zeros((N_BINS,) + (X.shape[1],) * 2)
    table[OLS_BIN] = whitened_gram_inverse(X, np.zeros(1))
    return table


def fit_run(plan: RunPlan, stats_key, vchunks: tuple[int, ...]) -> da.Array:
    """Lazy packed fit (rows: beta, dispersion, ar_coef, cov_index) of one run."""
    p, n, opts = plan.n_regressors, plan.n_scans, plan.options
    arrays = stats_as_arrays(stats_key, n, plan.n_lags, p, vchunks)
    n_vox = sum(vchunks)
    global_mean = None
    if opts.signal_scaling == (0, 1):
        global_mean = arrays["sy"].sum() / (n * max(n_vox, 1))
    residual_mean = 0.0
    # nilearn centres residuals on their grand mean before Yule-Walker; that is a
    # global reduction (an extra pass over the blocks) only worth doing when the
    # design cannot represent a constant, since otherwise the mean is exactly 0.
    if opts.ar_order >= 1 and not opts.exact and not constant_in_span(plan.X):
        extra = (plan.tables, opts.signal_scaling) + ((global_mean,) if global_mean is not None else ())
        totals = _blockwise_stats(residual_total_block, "v", arrays, n, *extra)
        residual_mean = totals.sum() / (n * max(n_vox, 1))
    rows = packed_rows(p, opts.ar_order, opts.diagnostic_lags)
    table = plan.exact_tables if opts.uses_stack else plan.cov_table
    extra = (plan.tables, table, opts, residual_mean)
    if global_mean is not None:
        extra = extra + (global_mean,)
    return _blockwise_stats(
        fit_block, "rv", arrays, n, *extra, new_axes={"r": rows}
    )


def masker_key(mask: np.ndarray, affine: np.ndarray, fwhm, token: str):
    return delayed(VolumeMasker, pure=True, name=f"masker-{token}")(mask, affine, fwhm)


def _scaling_coefficients(signal_mean, signal_scaling, global_mean):
    """Per-voxel ``(a, b)`` of nilearn's scaling, ``Y_scaled = a Y + b``."""
    if signal_scaling == 0:
        return 100.0 / np.maximum(signal_mean, 1.0), -100.0
    if signal_scaling == (0, 1):
        return 100.0 / max(float(global_mean), 1.0), -100.0
    return 1.0, 0.0  # False, or 1 (applied per volume while streaming)


def _stream_timeseries(
    source: RunSource, masker, X, beta, rho, signal_mean, signal_scaling, per_volume,
    residuals_array, predicted_array, chunk: int,
) -> np.ndarray:
    """Second pass over a run: write residuals and predictions, return r-square."""
    from ..kernels.timeseries import TimeseriesAccumulator

    limit_heap_fragmentation()
    a, b = _scaling_coefficients(signal_mean, signal_scaling, np.mean(signal_mean))
    acc = TimeseriesAccumulator(X, beta, rho)
    with single_threaded_blas:
        for t0, volumes in source.iter_chunks(chunk, background=False, reuse_buffer=True):
            Y = _volume_scaling(masker.transform(volumes), per_volume)
            Y = a * np.asarray(Y, dtype=np.float64) + b
            residuals, predicted = acc.update(Y, t0)
            residuals_array[t0 : t0 + len(Y)] = residuals
            predicted_array[t0 : t0 + len(Y)] = predicted
    return acc.r_square()


def timeseries_tasks(sources, masker_key, fits, designs, signal_scaling, per_volume, group, chunk):
    """Delayed second-pass tasks, one per run, writing into the Zarr ``group``."""
    tasks = []
    for i, (source, fit, design) in enumerate(zip(sources, fits, designs)):
        n, n_vox = design.shape[0], fit.beta.shape[1]
        arrays = []
        for name in ("residuals", "predicted"):
            arrays.append(group.create_array(
                f"run{i}/{name}", shape=(n, n_vox), chunks=(chunk, min(n_vox, 65536)),
                dtype="float64", overwrite=True,
            ))
        tasks.append(
            delayed(_stream_timeseries, pure=False)(
                source, masker_key, design.to_numpy(dtype=np.float64), fit.beta, fit.ar_coef,
                fit.signal_mean, signal_scaling, per_volume, arrays[0], arrays[1], chunk,
            )
        )
    return tasks
