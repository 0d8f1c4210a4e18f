"""The lazy beta series of a list of runs: one streaming pass per run, one blockwise solve of all trials.

Per run the graph is::

    run --stream (LSA design)--> RunStats --split by voxel block-->
    blockwise(trial_betas_block) --> (2 n_trials, V): betas, then variances

The run's LSA statistics are those of :func:`daskglm.graph.stream.run_stats`
(the engine's streaming pass, with the LSA design); the per-trial algebra is
:mod:`daskglm.kernels.single_trial`.  Design-only tables enter the graph once
per run (a delayed :class:`~daskglm.kernels.single_trial.TrialPlan`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from dask import delayed
from dask.base import tokenize

from daskglm.graph.fit import STAT_FIELDS, chunk_sizes, stats_as_arrays, voxel_chunks
from daskglm.graph.resources import in_dask_worker, limit_blas_on_local_computes, single_threaded_blas
from daskglm.graph.stream import masker_key, run_stats
from daskglm.kernels.fit import FitOptions
from daskglm.kernels.scaling import needs_global_mean, scales_volumes
from daskglm.kernels.single_trial import TrialModels, TrialPlan, trial_betas_block
from daskglm.kernels.sufficient_stats import RunStats, stacked_design

__all__ = ["BetaSeries", "build_betas"]

_INDICES = {"sy": "v", "yy": "v", "yy_lag": "lv", "xy": "pv", "xy_sym": "lpv", "head": "lv", "tail": "lv"}


@dataclass(frozen=True)
class BetaSeries:
    """A fitted beta series (lazy, or read from a store).

    Attributes
    ----------
    betas, variances : dask.array.Array (n_trials, V)
        Every trial's beta and its variance, runs one after the other.
    dof : dask.array.Array (n_trials,)
        Residual degrees of freedom of each trial's model.
    trials : pandas.DataFrame
        ``run``, ``trial_type``, ``onset``, ``duration`` of each trial.
    designs : tuple of pandas.DataFrame
        Each run's LSA design (kept scans).
    space : daskglm.space.base.ElementSpace
    sources : tuple or None
        The runs as streamed (``None`` when read from a store).
    """

    betas: Any
    variances: Any
    dof: Any
    trials: pd.DataFrame
    designs: tuple
    space: Any
    sources: tuple | None = None


def _solve_block(n_scans: int, *fields_and_extra):
    n_fields = len(STAT_FIELDS)
    stats = RunStats(n_scans, *fields_and_extra[:n_fields])
    plan, *global_mean = fields_and_extra[n_fields:]
    with single_threaded_blas:
        return trial_betas_block(stats, plan, *global_mean)


def _run_betas(stats_key, plan_key, n_scans: int, n_columns: int, n_trials: int, options: FitOptions,
               vchunks) -> da.Array:
    arrays = stats_as_arrays(stats_key, n_scans, options.n_lags, n_columns, vchunks)
    args = []
    for name in STAT_FIELDS:
        args += [arrays[name], _INDICES[name]]
    args += [plan_key, None]
    if needs_global_mean(options.signal_scaling):
        args += [arrays["sy"].sum() / (n_scans * max(sum(vchunks), 1)), ""]
    return da.blockwise(
        partial(_solve_block, n_scans), "rv", *args, new_axes={"r": 2 * n_trials},
        dtype=np.float64, concatenate=True, token="trial-betas",
    )


def _trial_plan(X: np.ndarray, models: TrialModels, options: FitOptions) -> TrialPlan:
    with single_threaded_blas:
        return TrialPlan(X, models, options)


def _plan_dof(plan: TrialPlan) -> np.ndarray:
    return plan.dof


def build_betas(sources: list, designs: list, models: list[TrialModels], trials: pd.DataFrame, space,
                options: FitOptions, chunks="auto") -> BetaSeries:
    """The lazy beta series of runs (nothing is computed).

    Parameters
    ----------
    sources : list of RunSource
    designs : list of pandas.DataFrame
        Each run's LSA design.
    models : list of TrialModels
        Each run's single-trial models (:func:`~daskglm.kernels.single_trial.trial_models`).
    trials : pandas.DataFrame
        The trials, runs one after the other.
    space : daskglm.space.base.ElementSpace
    options : FitOptions
    chunks : 'auto' or dict

    Returns
    -------
    BetaSeries
    """
    limit_blas_on_local_computes()  # betas_.values computes with one BLAS thread per task, as compute()
    token = tokenize(space)
    masker = masker_key(space, token)
    per_volume = scales_volumes(options.signal_scaling)
    background = not in_dask_worker() and sum(s.sequential for s in sources) < (os.cpu_count() or 1)
    betas, variances, dofs = [], [], []
    for source, design, run_models in zip(sources, designs, models):
        X = design.to_numpy(dtype=np.float64)
        n_scans, n_columns = X.shape
        time_chunk, voxel_block = chunk_sizes(chunks, source, n_columns)
        run_token = tokenize(X, options, run_models.rows, run_models.weights, run_models.group_matrix)
        stack = delayed(stacked_design, pure=True, name=f"design-stack-{run_token}")(X, options.n_lags)
        plan = delayed(_trial_plan, pure=True, name=f"trial-plan-{run_token}")(X, run_models, options)
        stats = run_stats(source, masker, stack, options.n_lags, time_chunk, per_volume,
                          tokenize(source.identity(), token, X, time_chunk, per_volume), background=background)
        n_trials = run_models.n_trials
        packed = _run_betas(stats, plan, n_scans, n_columns, n_trials, options,
                            voxel_chunks(space.n_elements, voxel_block))
        betas.append(packed[:n_trials])
        variances.append(packed[n_trials:])
        dofs.append(da.from_delayed(delayed(_plan_dof, pure=True)(plan), (n_trials,), dtype=np.float64))
    return BetaSeries(
        betas=da.concatenate(betas), variances=da.concatenate(variances), dof=da.concatenate(dofs),
        trials=trials, designs=tuple(designs), space=space, sources=tuple(sources),
    )
