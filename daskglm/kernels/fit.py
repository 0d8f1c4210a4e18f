"""The per-voxel-block GLM pipeline: scaled statistics -> OLS -> AR fit.

:func:`fit_block` is what the orchestration layer maps over voxel blocks.  Its
output is packed in one float64 array so a single blockwise call carries it:
rows ``[beta (p), dispersion, ar_coef (order), cov_index]``.
"""

from __future__ import annotations

import numpy as np

from .ar import BIN_VALUES, OLS_BIN, ar1_bin_index
from .glm import (
    DesignTables,
    fit_whitened,
    ols_fit,
    residual_autocovariance,
    residual_sum,
    whitened_cross,
    yule_walker,
)
from .scaling import affine_transform_stats, mean_scaling_coefficients
from .stats import RunStats

__all__ = ["FitOptions", "scaled_stats", "residual_total_block", "fit_block", "packed_rows", "unpack"]


class FitOptions:
    """What the block kernels need to know about the model."""

    def __init__(self, noise_model: str, signal_scaling, global_scale: bool = False):
        self.noise_model = noise_model
        self.ar_order = 0 if noise_model == "ols" else int(noise_model[2:])
        self.signal_scaling = signal_scaling


def scaled_stats(
    stats: RunStats, tables: DesignTables, signal_scaling, global_mean: float | None = None
) -> RunStats:
    """Apply nilearn's mean scaling to the statistics, if it is asked for."""
    if signal_scaling is False or signal_scaling is None:
        return stats
    if signal_scaling == 0:
        a, b, _ = mean_scaling_coefficients(stats)
    elif signal_scaling == (0, 1):
        scale = max(float(global_mean), 1.0)
        a = np.full(stats.n_voxels, 100.0 / scale)
        b = np.full(stats.n_voxels, -100.0)
    else:  # 1: already applied volume by volume while streaming
        return stats
    return affine_transform_stats(stats, tables.X, a, b)


def residual_total_block(
    stats: RunStats, tables: DesignTables, signal_scaling, global_mean=None
) -> np.ndarray:
    """Per-voxel sum over time of the OLS residuals (for nilearn's YW centring)."""
    stats = scaled_stats(stats, tables, signal_scaling, global_mean)
    beta, _ = ols_fit(stats, tables)
    return residual_sum(stats, tables.X, beta)


def packed_rows(n_regressors: int, ar_order: int) -> int:
    return n_regressors + 2 + max(ar_order, 1)


def fit_block(
    stats: RunStats,
    tables: DesignTables,
    cov_table: np.ndarray,
    options: FitOptions,
    residual_mean: float = 0.0,
    global_mean: float | None = None,
) -> np.ndarray:
    """Fit one voxel block; returns the packed result (see module docstring)."""
    stats = scaled_stats(stats, tables, options.signal_scaling, global_mean)
    p, n = tables.n_regressors, tables.n_scans
    beta_ols, _ = ols_fit(stats, tables)
    if options.ar_order == 0:
        rho = np.zeros((1, stats.n_voxels))
        index = np.full(stats.n_voxels, OLS_BIN)
    elif options.ar_order == 1:
        autocov = residual_autocovariance(stats, tables, beta_ols, residual_mean)
        raw = yule_walker(autocov[:2], n)[0]
        index = ar1_bin_index(raw)
        rho = BIN_VALUES[index][None, :]
    else:
        raise NotImplementedError(f"noise_model={options.noise_model!r} in binned mode")
    xty, yty = whitened_cross(stats, tables.X, rho)
    beta, dispersion = fit_whitened(xty, yty, cov_table[index], p, n)
    return np.concatenate([beta, dispersion[None], rho, index[None].astype(np.float64)])


def unpack(packed: np.ndarray, n_regressors: int, ar_order: int) -> dict[str, np.ndarray]:
    """Split a packed fit result into named arrays."""
    p, r = n_regressors, max(ar_order, 1)
    return {
        "beta": packed[:p],
        "dispersion": packed[p],
        "ar_coef": packed[p + 1 : p + 1 + r],
        "cov_index": packed[p + 1 + r],
    }
