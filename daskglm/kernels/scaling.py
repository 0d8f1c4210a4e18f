"""Per-voxel affine rescaling applied to sufficient statistics.

nilearn's ``mean_scaling`` (``signal_scaling=0``) maps every voxel's series to
``100 * (Y / m - 1)`` with ``m = max(mean_t Y, 1)``.  That is ``a * Y + b`` with
per-voxel ``a = 100 / m`` and ``b = -100``, so it can be applied to the
statistics after they were accumulated, instead of to the data.
"""

from __future__ import annotations

import numpy as np

from .stats import RunStats

__all__ = ["mean_scaling_coefficients", "affine_transform_stats"]


def mean_scaling_coefficients(stats: RunStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(a, b, mean)`` of nilearn's mean scaling for each voxel."""
    mean = stats.sy / stats.n_scans
    scale = np.maximum(mean, 1.0)
    a = 100.0 / scale
    b = np.full_like(a, -100.0)
    return a, b, mean


def affine_transform_stats(
    stats: RunStats, X: np.ndarray, a: np.ndarray, b: np.ndarray
) -> RunStats:
    """Statistics of ``a * Y + b`` (per voxel) from the statistics of ``Y``.

    Parameters
    ----------
    stats : RunStats
        Statistics of the raw data, for a block of voxels.
    X : ndarray, shape (n_scans, p)
        The run's design matrix.
    a, b : ndarray, shape (n_voxels,)
        Per-voxel scale and offset.
    """
    n = stats.n_scans
    L = stats.n_lags
    X = np.asarray(X, dtype=np.float64)
    head_sum = np.cumsum(stats.head, axis=0)  # sum_{t<k} Y_t, k = 1..L
    tail_sum = np.cumsum(stats.tail[::-1], axis=0)  # sum_{t>n-1-k} Y_t

    yy_lag = np.empty_like(stats.yy_lag)
    xy_sym = np.empty_like(stats.xy_sym)
    for k in range(1, L + 1):
        late = stats.sy - head_sum[k - 1]  # sum_{t>=k} Y_t
        early = stats.sy - tail_sum[k - 1]  # sum_{t<=n-1-k} Y_t
        yy_lag[k - 1] = a * a * stats.yy_lag[k - 1] + a * b * (late + early) + b * b * (n - k)
        x_early = X[: n - k].sum(axis=0)  # sum_{t>=k} X_{t-k}
        x_late = X[k:].sum(axis=0)  # sum_{t>=k} X_t
        xy_sym[k - 1] = a * stats.xy_sym[k - 1] + np.outer(x_early + x_late, b)

    return RunStats(
        n_scans=n,
        sy=a * stats.sy + b * n,
        yy=a * a * stats.yy + 2 * a * b * stats.sy + b * b * n,
        yy_lag=yy_lag,
        xy=a * stats.xy + np.outer(X.sum(axis=0), b),
        xy_sym=xy_sym,
        head=a * stats.head + b,
        tail=a * stats.tail + b,
    )
