"""Per-scan model outputs for ``minimize_memory=False`` (second streaming pass).

nilearn 0.14's ``RegressionResults`` define, per voxel and for the whitening
``W`` of the voxel's AR model (first samples unscaled, as ``ARModel.whiten``):

- ``predicted = (W X) beta`` (the *whitened* design times the estimates);
- ``residuals = Y - predicted`` (``Y`` the scaled, unwhitened data);
- ``r_square = var_t(predicted) / var_t(W Y)``.

:class:`TimeseriesAccumulator` computes them for consecutive chunks of scans,
carrying the last ``p`` scans, and accumulates the moments ``r_square`` needs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TimeseriesAccumulator", "ar_filter"]


def ar_filter(z: np.ndarray, previous: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``z_t - sum_i rho_i z_{t-i}`` for a chunk ``z`` (k, V), given earlier rows.

    Parameters
    ----------
    z : ndarray (k, V)
    previous : ndarray (m, V)
        The rows just before the chunk (at most ``p``, fewer at the start of
        the run, where the missing terms are zero as in nilearn).
    rho : ndarray (p, V)

    Returns
    -------
    ndarray (k, V)
    """
    context = np.concatenate([previous, z]) if len(previous) else z
    offset = len(previous)
    out = z.copy()
    for i in range(rho.shape[0]):
        lag = i + 1
        start = max(lag - offset, 0)  # first chunk row whose t - lag exists
        if start < len(z):
            out[start:] -= rho[i] * context[offset + start - lag : offset + len(z) - lag]
    return out


class TimeseriesAccumulator:
    """Residuals and predictions chunk by chunk, plus the r-square moments.

    Parameters
    ----------
    X : ndarray (n, p)
    beta : ndarray (p, V)
    rho : ndarray (order, V)
        AR coefficients of the whitening (zeros for OLS).
    """

    def __init__(self, X: np.ndarray, beta: np.ndarray, rho: np.ndarray):
        self.X = np.asarray(X, dtype=np.float64)
        self.beta = beta
        self.rho = rho
        self.order = rho.shape[0]
        n_vox = beta.shape[1]
        self._prev_fit = np.zeros((0, n_vox))
        self._prev_y = np.zeros((0, n_vox))
        self.n = 0
        self.moments = np.zeros((4, n_vox))  # sum pred, sum pred^2, sum wy, sum wy^2

    def update(self, Y: np.ndarray, t0: int) -> tuple[np.ndarray, np.ndarray]:
        """Residuals and predictions of scans ``t0 .. t0 + k - 1``.

        Parameters
        ----------
        Y : ndarray (k, V)
            The scaled (unwhitened) data of the chunk; chunks come in order.
        t0 : int

        Returns
        -------
        residuals, predicted : ndarray (k, V)
        """
        Y = np.asarray(Y, dtype=np.float64)
        fit = self.X[t0 : t0 + len(Y)] @ self.beta
        predicted = ar_filter(fit, self._prev_fit, self.rho)
        whitened_y = ar_filter(Y, self._prev_y, self.rho)
        self.moments[0] += predicted.sum(axis=0)
        self.moments[1] += np.einsum("tv,tv->v", predicted, predicted)
        self.moments[2] += whitened_y.sum(axis=0)
        self.moments[3] += np.einsum("tv,tv->v", whitened_y, whitened_y)
        self.n += len(Y)
        keep = self.order
        if keep:
            self._prev_fit = np.concatenate([self._prev_fit, fit])[-keep:]
            self._prev_y = np.concatenate([self._prev_y, Y])[-keep:]
        return Y - predicted, predicted

    def r_square(self) -> np.ndarray:
        """``var(predicted) / var(W Y)`` over the scans seen (nilearn's r_square).

        Returns
        -------
        ndarray (V,)
            0 where ``var(W Y) = 0``.
        """
        mean_p, mean_w = self.moments[0] / self.n, self.moments[2] / self.n
        var_p = self.moments[1] / self.n - mean_p**2
        var_w = self.moments[3] / self.n - mean_w**2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(var_w > 0, var_p / np.where(var_w > 0, var_w, 1.0), 0.0)
