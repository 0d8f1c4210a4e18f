"""nilearn's ``signal_scaling``: the one dispatch over its values, and how it is applied.

- ``0`` (nilearn's ``mean_scaling``): every voxel's series becomes
  ``100 * (Y / m - 1)`` with ``m = max(mean_t Y, 1)``, i.e. ``a * Y + b`` with
  per-voxel ``a = 100 / m`` and ``b = -100``.
- ``(0, 1)``: the same with one ``m = max(global mean, 1)`` for all voxels
  (the mean over voxels and scans).
- ``1``: every *volume* is scaled by its in-mask mean,
  ``100 * (Y_t / max(mean_v Y_t, 1) - 1)`` (:func:`scale_volumes`); applied
  while streaming, so the statistics need no further scaling.
- ``False``: no scaling.

The per-voxel maps are affine, so they are applied to the sufficient
statistics after accumulation (:func:`affine_transform_stats`) rather than to
the data: with ``late_k = sum_{t>=k} Y_t`` and ``early_k = sum_{t<n-k} Y_t``,

    sum (aY_t + b)(aY_{t-k} + b) = a^2 yy_k + a b (late_k + early_k) + (n - k) b^2,
    sum X_{t-k} (aY_t + b) + X_t (aY_{t-k} + b) = a xy_sym_k + (sum X_{t-k} + sum X_t) b.
"""

from __future__ import annotations

import numpy as np

from daskglm.kernels.sufficient_stats import RunStats

__all__ = [
    "scales_statistics",
    "scales_volumes",
    "needs_global_mean",
    "scaling_coefficients",
    "scale_volumes",
    "affine_transform_stats",
]


def scales_statistics(signal_scaling) -> bool:
    """Whether ``signal_scaling`` is a per-voxel affine map of the statistics (0 or (0, 1)).

    Parameters
    ----------
    signal_scaling : {0, 1, (0, 1), False}

    Returns
    -------
    bool
    """
    if signal_scaling is False or signal_scaling is None:
        return False  # False == 0 in Python: test it first
    return signal_scaling == 0 or signal_scaling == (0, 1)


def needs_global_mean(signal_scaling) -> bool:
    """Whether the scaling needs the mean over all voxels and scans ((0, 1))."""
    return scales_statistics(signal_scaling) and signal_scaling != 0


def scales_volumes(signal_scaling) -> bool:
    """Whether ``signal_scaling`` scales each volume while streaming (1).

    Parameters
    ----------
    signal_scaling : {0, 1, (0, 1), False}

    Returns
    -------
    bool
    """
    if signal_scaling is False or signal_scaling is None:
        return False
    return signal_scaling == 1


def scaling_coefficients(
    signal_mean: np.ndarray, signal_scaling, global_mean: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel ``(a, b)`` of the scaling applied to the statistics, ``Y_scaled = a Y + b``.

    Parameters
    ----------
    signal_mean : ndarray, shape (V,)
        Each voxel's time mean of the (unscaled) signal.
    signal_scaling : {0, 1, (0, 1), False}
    global_mean : float, optional
        Mean over voxels and scans; needed for ``(0, 1)``.

    Returns
    -------
    a, b : ndarray, shape (V,)
        ``100 / max(mean, 1)`` and ``-100`` for 0 and (0, 1); ``1`` and ``0``
        for ``False`` and ``1`` (the latter is applied per volume while
        streaming, :func:`scale_volumes`).
    """
    signal_mean = np.asarray(signal_mean, dtype=np.float64)
    if not scales_statistics(signal_scaling):
        return np.ones_like(signal_mean), np.zeros_like(signal_mean)
    if signal_scaling == 0:
        a = 100.0 / np.maximum(signal_mean, 1.0)
    else:  # (0, 1)
        a = np.full_like(signal_mean, 100.0 / max(float(global_mean), 1.0))
    return a, np.full_like(a, -100.0)


def scale_volumes(Y: np.ndarray, per_volume: bool) -> np.ndarray:
    """``signal_scaling=1``: scale each volume (row) by its mean over voxels.

    Parameters
    ----------
    Y : ndarray, shape (k, V)
        Masked volumes.
    per_volume : bool
        Whether to scale (:func:`scales_volumes`); ``Y`` is returned as is otherwise.

    Returns
    -------
    ndarray, shape (k, V)
        ``100 * (Y_t / max(mean_v Y_t, 1) - 1)``.
    """
    if not per_volume:
        return Y
    mean = np.maximum(Y.mean(axis=1, keepdims=True), 1.0)
    return 100.0 * (Y / mean - 1.0)


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
