"""Dask graphs of contrasts: per-run effects and variances, then statistics.

The numbers come from :mod:`daskglm.kernels.contrast` (binned tables and
per-voxel Gram stacks); the contrast definitions from :mod:`daskglm.glm.contrasts`.
This module only maps them over voxel blocks and combines runs.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np

from daskglm.errors import ContrastError
from daskglm.glm.contrasts import contrast_kind, pad_contrast
from daskglm.graph.state import RunFit
from daskglm.kernels.contrast import (
    ContrastLayout,
    contrast_block,
    contrast_outputs,
    fixed_effect_sum,
    stack_contrast_block,
)

__all__ = ["run_contrast", "contrast_statistics", "combined_contrast"]


def run_contrast(fit: RunFit, con: np.ndarray, stat_type: str, dim: int) -> tuple[da.Array, da.Array]:
    """Lazy effect ((V,) for t, (q, V) for F) and variance (V,) of one run's contrast."""
    layout = ContrastLayout.for_contrast(stat_type, dim)
    if fit.cov_kind == "table":  # binned: each voxel's covariance is a row of the table
        kernel, args = _contrast_block_packed, (fit.cov_index, "v", fit.cov_table, "kpq",
                                                con, None, stat_type, None)
    else:  # per-voxel Gram rebuilt from the AR coefficients
        kernel, args = _stack_contrast_packed, (
            fit.ar_coef, "lv", fit.cov_table, "kpq", con, None, stat_type, None,
            fit.cov_kind == "exact", None, float(fit.df_residuals), None,
        )
    packed = da.blockwise(
        kernel, "rv", fit.beta, "pv", fit.dispersion, "v", *args,
        new_axes={"r": layout.n_effect_variance_rows}, dtype=np.float64, concatenate=True,
    )
    return layout.split_effect_variance(packed, squeeze=stat_type != "F")


def _stack_contrast_packed(beta, dispersion, ar_coef, gram_stack, con, stat_type, exact, df):
    effect, variance = stack_contrast_block(
        beta, dispersion, ar_coef, gram_stack, con, stat_type, exact, df if exact else None
    )
    return ContrastLayout.pack_effect_variance(effect, variance)


def _contrast_block_packed(beta, dispersion, cov_index, cov_table, con, stat_type):
    effect, variance = contrast_block(beta, dispersion, cov_index.astype(np.intp), cov_table, con, stat_type)
    return ContrastLayout.pack_effect_variance(effect, variance)


def _outputs_block(effect, variance, dof, stat_type, dim):
    eff = effect if stat_type == "F" else effect[0]
    return contrast_outputs(eff, variance, dof, stat_type, dim)


def contrast_statistics(effect: da.Array, variance: da.Array, dof: float, stat_type: str, dim: int) -> da.Array:
    """Lazy packed maps (:class:`~daskglm.kernels.contrast.ContrastLayout`) from effect and variance."""
    if effect.ndim == 1:
        effect = effect[None]
    return da.map_blocks(
        _outputs_block, effect, variance, float(dof), stat_type, dim,
        dtype=np.float64, chunks=((ContrastLayout(effect.shape[0]).n_rows,), effect.chunks[1]),
    )


def combined_contrast(runs, cons: list[np.ndarray], stat_type=None) -> tuple[da.Array, int]:
    """Lazy packed maps ``[effect (q), variance, stat, p, z]`` of a contrast over runs.

    Each run's effect and variance are computed blockwise, then combined with
    nilearn's multi-run fixed effects (``sum / R``, ``sum / R**2``, dofs summed).

    Parameters
    ----------
    runs : sequence of RunFit
    cons : list of ndarray
        One contrast per run (:func:`daskglm.glm.contrasts.per_run_contrasts`).
    stat_type : {None, 't', 'F'}

    Returns
    -------
    packed : dask.array.Array, shape (q + 4, V)
    q : int
        Rows of the effect (1 for t, the contrast's rank for F).
    """
    effects, variances, dofs, types = [], [], [], []
    for i, (con, fit) in enumerate(zip(cons, runs)):
        run_type, dim = contrast_kind(con, stat_type)
        if np.all(con == 0):
            warnings.warn(f"Contrast for run {i} is null.", UserWarning, stacklevel=4)
            continue
        p = fit.beta.shape[0]
        con = pad_contrast(con if con.ndim == 1 or run_type == "F" else con[0], p, run_type)
        types.append((run_type, dim))
        effect, variance = run_contrast(fit, con, run_type, dim)
        effects.append(effect)
        variances.append(variance)
        dofs.append(fit.df_residuals)
    if not effects:
        raise ContrastError("All contrasts provided were null contrasts.")
    if len(set(types)) > 1:
        raise ContrastError(f"The per-run contrasts disagree in type or dimension: {types}.")
    run_type, dim = types[0]
    if run_type == "F" and len(effects) > 1:
        warnings.warn("Running approximate fixed effects on F statistics.", UserWarning, stacklevel=4)
    effect, variance = fixed_effect_sum(effects, variances)
    packed = contrast_statistics(effect, variance, sum(dofs), run_type, dim)
    return packed, ContrastLayout.for_contrast(run_type, dim).q
