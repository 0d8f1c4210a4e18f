"""Dask graphs of contrasts: per-run effects and variances, then statistics.

The numbers come from :mod:`daskglm.contrasts` (AR(1)-binned fits) and
:mod:`daskglm.kernels.exact` (per-voxel covariance of binned arN and exact
whitening); this module only maps them over voxel blocks.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ..contrasts import contrast_block, contrast_outputs
from .fitted import RunFit

__all__ = ["run_contrast", "contrast_statistics"]


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
    from ..kernels.exact import stack_contrast_block

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
