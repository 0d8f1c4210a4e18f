"""Voxel-block fits: a run's statistics split by voxel block and solved blockwise.

Per run the graph is::

    RunStats --split by voxel block--> dask arrays (voxel-chunked)
    blockwise(fit_block) --> packed rows (see kernels.fit.ResultLayout)

Design-only inputs (stacked design, design tables, covariance tables) enter
the graph once each as a delayed key (:class:`RunPlan`), never pickled per
task.  The numbers come from :mod:`daskglm.kernels.fit`.
"""

from __future__ import annotations

import math
import operator
import os
from functools import partial

import dask.array as da
import numpy as np
import pandas as pd
from dask import delayed
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from daskglm.graph.resources import in_dask_worker, limit_blas_on_local_computes, single_threaded_blas
from daskglm.graph.state import FittedState, RunFit
from daskglm.graph.stream import masker_key, run_stats
from daskglm.io.base import RunSource, time_chunk_size
from daskglm.kernels.fit import FitOptions, fit_block, residual_total_block
from daskglm.kernels.glm import DesignTables, constant_in_span, design_rank
from daskglm.kernels.gram import GramTables, binned_gram_inverses, ols_cov_table
from daskglm.kernels.scaling import needs_global_mean, scales_volumes
from daskglm.kernels.sufficient_stats import RunStats, stacked_design

__all__ = ["RunPlan", "build_fit", "fit_run", "run_fit", "chunk_sizes", "voxel_chunks", "voxel_block_size"]


STAT_FIELDS = ("sy", "yy", "yy_lag", "xy", "xy_sym", "head", "tail")


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
        field = delayed(getattr, pure=True)(stats_key, name, dask_key_name=f"{name}-of-{stats_key.key}")
        arrays[name] = _voxel_blocks(field, f"{name}-blocks-of-{stats_key.key}", shape, vchunks)
    return arrays


def _voxel_blocks(field, out_name: str, shape: tuple[int, ...], vchunks: tuple[int, ...]) -> da.Array:
    """A delayed array cut into voxel blocks by plain slicing: views, no copy.

    (``rechunk`` of the single chunk plans split-and-merge tasks whose
    concatenations copy the statistics - ~140 MB at 96x114x96 with 23
    regressors - while the next run is still streaming, and it probes
    ``dask.distributed``.)
    """
    bounds = np.cumsum((0, *vchunks))
    lead = (0,) * (len(shape) - 1)
    layer = {
        (out_name, *lead, j): (operator.getitem, field.key, (Ellipsis, slice(int(a), int(b))))
        for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    }
    graph = HighLevelGraph.from_collections(out_name, layer, dependencies=[field])
    return da.Array(graph, out_name, tuple((s,) for s in shape[:-1]) + (tuple(vchunks),), dtype=np.float64)


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
    if "name" not in kwargs:  # named after the kernel on the dashboard, not "call_on_stats"
        kwargs.setdefault("token", getattr(func, "__name__", "fit-block").strip("_").replace("_", "-"))
    return da.blockwise(
        partial(_call_on_stats, func, n_scans), out_index, *args,
        dtype=np.float64, concatenate=True, **kwargs,
    )


class RunPlan:
    """Everything design-side about one run, entered in the graph once.

    Attributes
    ----------
    stack, tables, gram_tables, cov_table : dask.delayed.Delayed
        The stacked design (streaming), the :class:`DesignTables`, the
        :class:`GramTables` (per-voxel AR(p) kinds only) and the covariance
        table that contrasts read (``options.cov_kind``).
    """

    def __init__(self, X: np.ndarray, options: FitOptions, token: str):
        self.X = X
        self.options = options
        self.n_scans, self.n_regressors = X.shape
        n_lags = options.n_lags
        self.stack = delayed(stacked_design, pure=True, name=f"design-stack-{token}")(X, n_lags)
        self.tables = delayed(DesignTables, pure=True, name=f"design-tables-{token}")(X, n_lags)
        self.gram_tables = None
        if options.uses_stack:
            # per-voxel AR(p): design-only lagged Gram stack (+ bias matrix if exact)
            self.gram_tables = delayed(GramTables, pure=True, name=f"gram-tables-{token}")(
                X, options.ar_order, options.exact
            )
            self.cov_table = delayed(_gram_stack, pure=True, name=f"gram-stack-{token}")(
                self.gram_tables
            )
        elif options.ar_order == 1:
            self.cov_table = delayed(binned_gram_inverses, pure=True, name=f"ar1-tables-{token}")(X)
        else:
            self.cov_table = delayed(ols_cov_table, pure=True, name=f"ols-table-{token}")(X)

    def cov_table_array(self) -> da.Array:
        """The covariance table as a (lazy) dask array."""
        p = self.n_regressors
        return da.from_delayed(
            self.cov_table, shape=(self.options.n_cov_tables, p, p), dtype=np.float64,
            name=f"array-of-{self.cov_table.key}",
        )


def _gram_stack(tables: GramTables) -> np.ndarray:
    return tables.gram_stack


def fit_run(plan: RunPlan, stats_key, vchunks: tuple[int, ...]) -> da.Array:
    """Lazy packed fit of one run (rows: ``plan.options.layout(p)``)."""
    p, n, opts = plan.n_regressors, plan.n_scans, plan.options
    arrays = stats_as_arrays(stats_key, n, opts.n_lags, p, vchunks)
    n_vox = sum(vchunks)
    global_mean = None
    if needs_global_mean(opts.signal_scaling):
        global_mean = arrays["sy"].sum() / (n * max(n_vox, 1))
    residual_mean = 0.0
    # nilearn centres residuals on their grand mean before Yule-Walker; that is a
    # global reduction (an extra pass over the blocks) only worth doing when the
    # design cannot represent a constant, since otherwise the mean is exactly 0.
    if opts.ar_order >= 1 and not opts.exact and not constant_in_span(plan.X):
        extra = (plan.tables, opts.signal_scaling) + ((global_mean,) if global_mean is not None else ())
        totals = _blockwise_stats(residual_total_block, "v", arrays, n, *extra)
        residual_mean = totals.sum() / (n * max(n_vox, 1))
    table = plan.gram_tables if opts.uses_stack else plan.cov_table
    extra = (plan.tables, table, opts, residual_mean)
    if global_mean is not None:
        extra = extra + (global_mean,)
    return _blockwise_stats(
        fit_block, "rv", arrays, n, *extra, new_axes={"r": opts.layout(p).n_rows}
    )


def run_fit(plan: RunPlan, packed: da.Array, columns: list) -> RunFit:
    """A run's :class:`RunFit` from its lazy packed rows."""
    parts = plan.options.layout(plan.n_regressors).unpack(packed)
    return RunFit(
        beta=parts["beta"],
        dispersion=parts["dispersion"],
        ar_coef=parts["ar_coef"],
        cov_index=parts["cov_index"].astype(np.int16),
        cov_table=plan.cov_table_array(),
        df_residuals=plan.n_scans - design_rank(plan.X),
        n_scans=plan.n_scans,
        columns=list(columns),
        cov_kind=plan.options.cov_kind,
        acf_before=parts.get("acf_before"),
        acf_after=parts.get("acf_after"),
        signal_mean=parts["signal_mean"],
    )


def chunk_sizes(chunks, source: RunSource, n_regressors: int) -> tuple[int, int]:
    """``(volumes per read, voxels per solve block)`` from the model's ``chunks``."""
    chunks = {} if chunks in (None, "auto") else dict(chunks)
    time = chunks.get("time") or time_chunk_size(source.spatial_shape, source.dtype)
    voxel = chunks.get("voxel") or voxel_block_size(n_regressors)
    if int(time) < 1 or int(voxel) < 1:
        raise ValueError(f"chunks must be positive integers, got {chunks!r}.")
    return int(time), int(voxel)


def build_fit(
    sources: list[RunSource],
    designs: list[pd.DataFrame],
    space,
    options: FitOptions,
    chunks="auto",
) -> FittedState:
    """The lazy fit of a list of runs: one streaming pass and one blockwise solve per run.

    Parameters
    ----------
    sources : list of RunSource
        The runs as streamed (on the grid of the space's stream masker).
    designs : list of pandas.DataFrame
        One design per run.
    space : daskglm.space.base.ElementSpace
        The fit's element space: its ``stream_masker()`` smooths and masks
        each streamed chunk, its ``n_elements`` sizes the solve.
    options : FitOptions
        The recipe (noise model, whitening, scaling, diagnostics).
    chunks : 'auto' or dict
        ``{'time': volumes per read, 'voxel': voxels per solve block}``.

    Returns
    -------
    FittedState
        Nothing is computed: every array is a dask graph.
    """
    limit_blas_on_local_computes()  # results_[...].values computes with one BLAS thread per task too
    token = tokenize(space)
    masker = masker_key(space, token)
    # the design tables' graph keys: they do not depend on the whitening mode for binned AR(1)
    if options.cov_kind == "table" and not options.diagnostic_lags:
        plan_key = (options.noise_model, options.n_lags)
    else:
        plan_key = (options.noise_model, options.n_lags, options.whitening)
    per_volume = scales_volumes(options.signal_scaling)
    # idle local cores: a background decompression thread, or a run cut at a gzip index; never on a
    # dask.distributed worker (a subject's fit built inside a worker task: its threads are its cores)
    background = not in_dask_worker() and sum(s.streamed for s in sources) < (os.cpu_count() or 1)
    n_voxels = space.n_elements
    runs = []
    for source, design in zip(sources, designs):
        X = design.to_numpy(dtype=np.float64)
        time_chunk, voxel_block = chunk_sizes(chunks, source, X.shape[1])
        plan = RunPlan(X, options, tokenize(X, *plan_key))
        stats = run_stats(
            source, masker, plan.stack, options.n_lags, time_chunk, per_volume,
            tokenize(source.identity(), token, X, time_chunk, per_volume),
            background=background,
        )
        packed = fit_run(plan, stats, voxel_chunks(n_voxels, voxel_block))
        runs.append(run_fit(plan, packed, design.columns))
    return FittedState(runs=tuple(runs), designs=tuple(designs), space=space, sources=tuple(sources),
                       masker=masker)
