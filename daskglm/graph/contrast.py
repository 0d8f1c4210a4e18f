"""Dask graphs of contrasts: per-run effects and variances, then statistics.

The numbers come from :mod:`daskglm.kernels.contrast` (binned tables and
per-voxel Gram stacks); the contrast definitions from :mod:`daskglm.contrasts`.
This module only maps them over voxel blocks and combines runs.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np

from ..contrasts import contrast_kind, pad_contrast
from ..errors import ContrastError
from ..kernels.contrast import contrast_block, contrast_outputs, fixed_effect_sum, stack_contrast_block
from .state import RunFit

__all__ = ["run_contrast", "contrast_statistics", "combined_contrast"]


def run_contrast(fit: RunFit, con: np.ndarray, kind: str, dim: int) -> tuple[da.Array, da.Array]:
    """Lazy effect ((V,) for t, (q, V) for F) and variance (V,) of one run's contrast."""
    q = dim if kind == "F" else 1
    if fit.cov_kind != "table":
        exact = fit.cov_kind == "exact"
        packed = da.blockwise(
            _stack_contrast_packed, "rv",
            fit.beta, "pv", fit.dispersion, "v", fit.ar_coef, "lv", fit.cov_table, "kpq",
            con, None, kind, None, exact, None, float(fit.df_residuals), None,
            new_axes={"r": q + 1}, dtype=np.float64, concatenate=True,
        )
        effect = packed[:q] if kind == "F" else packed[0]
        return effect, packed[q]
    packed = da.blockwise(
        _contrast_block_packed, "rv",
        fit.beta, "pv", fit.dispersion, "v", fit.cov_index, "v", fit.cov_table, "kpq",
        con, None, kind, None,
        new_axes={"r": q + 1}, dtype=np.float64, concatenate=True,
    )
    effect = packed[:q] if kind == "F" else packed[0]
    return effect, packed[q]


def _stack_contrast_packed(beta, dispersion, ar_coef, gram_stack, con, kind, exact, df):
    effect, variance = stack_contrast_block(
        beta, dispersion, ar_coef, gram_stack, con, kind, exact, df if exact else None
    )
    return np.concatenate([np.atleast_2d(effect), variance[None]])


def _contrast_block_packed(beta, dispersion, cov_index, cov_table, con, kind):
    effect, variance = contrast_block(beta, dispersion, cov_index.astype(np.intp), cov_table, con, kind)
    return np.concatenate([np.atleast_2d(effect), variance[None]])


def _outputs_block(effect, variance, dof, kind, dim):
    eff = effect if kind == "F" else effect[0]
    return contrast_outputs(eff, variance, dof, kind, dim)


def contrast_statistics(effect: da.Array, variance: da.Array, dof: float, kind: str, dim: int) -> da.Array:
    """Lazy packed maps ``[effect (q), variance, stat, p, z]`` from effect and variance."""
    if effect.ndim == 1:
        effect = effect[None]
    return da.map_blocks(
        _outputs_block, effect, variance, float(dof), kind, dim,
        dtype=np.float64, chunks=((effect.shape[0] + 4,), effect.chunks[1]),
    )


def combined_contrast(runs, cons: list[np.ndarray], stat_type=None) -> tuple[da.Array, int]:
    """Lazy packed maps ``[effect (q), variance, stat, p, z]`` of a contrast over runs.

    Each run's effect and variance are computed blockwise, then combined with
    nilearn's multi-run fixed effects (``sum / R``, ``sum / R**2``, dofs summed).

    Parameters
    ----------
    runs : sequence of RunFit
    cons : list of ndarray
        One contrast per run (:func:`daskglm.contrasts.per_run_contrasts`).
    stat_type : {None, 't', 'F'}

    Returns
    -------
    packed : dask.array.Array, shape (q + 4, V)
    q : int
        Rows of the effect (1 for t, the contrast's rank for F).
    """
    effects, variances, dofs, kinds = [], [], [], []
    for i, (con, fit) in enumerate(zip(cons, runs)):
        kind, dim = contrast_kind(con, stat_type)
        if np.all(con == 0):
            warnings.warn(f"Contrast for run {i} is null.", UserWarning, stacklevel=4)
            continue
        p = fit.beta.shape[0]
        con = pad_contrast(con if con.ndim == 1 or kind == "F" else con[0], p, kind)
        kinds.append((kind, dim))
        effect, variance = run_contrast(fit, con, kind, dim)
        effects.append(effect)
        variances.append(variance)
        dofs.append(fit.df_residuals)
    if not effects:
        raise ContrastError("All contrasts provided were null contrasts.")
    if len(set(kinds)) > 1:
        raise ContrastError(f"The per-run contrasts disagree in type or dimension: {kinds}.")
    kind, dim = kinds[0]
    if kind == "F" and len(effects) > 1:
        warnings.warn("Running approximate fixed effects on F statistics.", UserWarning, stacklevel=4)
    effect, variance = fixed_effect_sum(effects, variances)
    packed = contrast_statistics(effect, variance, sum(dofs), kind, dim)
    return packed, packed.shape[0] - 4
