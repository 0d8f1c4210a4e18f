"""AR(p) algebra and nilearn's 0.01 coefficient grid (pure numpy).

Formulas that live here:

- **Bins.**  nilearn's ``bins=100``: an AR(1) coefficient ``rho`` is truncated
  toward zero on the 0.01 grid, ``k = trunc(100 rho)`` clipped to
  ``[-99, 99]``; bin ``k`` stands for ``rho_k = k / 100`` and is stored at
  index ``k + 99`` (:data:`OLS_BIN` is ``rho = 0``).  Binned ``arN`` (N >= 2)
  truncates each coefficient the same way (:func:`quantize_ar`).
- **Toeplitz.**  ``Gamma[v]_{ij} = r_{|i-j|}[v]`` (:func:`toeplitz_stack`).
- **Durbin-Levinson** (:func:`levinson`): with ``v_0 = r_0``,
  ``kappa_k = (r_k - sum_{j<k} rho_j r_{k-j}) / v_{k-1}``, then the step-up
  ``rho_k = kappa_k``, ``rho_j <- rho_j - kappa_k rho_{k-j}`` (j < k) and
  ``v_k = v_{k-1} (1 - kappa_k^2)``.  :func:`pacf_to_ar` is the step-up alone:
  any partial autocorrelations in ``(-1, 1)^p`` give a stationary AR(p).
- **AR autocovariance** for unit innovations (:func:`ar_autocovariance`):
  ``gamma_k - sum_i rho_i gamma_|k-i| = delta_k0`` solved for k = 0..p, then
  ``gamma_k = sum_i rho_i gamma_{k-i}``.
- **Exact-whitening head** (:func:`head_blocks`): ``B = chol(Gamma_p)^{-1}``
  whitens the first ``p`` samples; ``H = B^T B - N^T N`` with ``N`` the head of
  the banded filter ``N[t, t-i] = c_i`` (``c_0 = 1, c_i = -rho_i``).

Coefficient arrays are ``(p, V)``: one column per voxel.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BINS_PER_UNIT",
    "N_BINS",
    "BIN_VALUES",
    "OLS_BIN",
    "ar1_bin_index",
    "quantize_ar",
    "toeplitz_stack",
    "levinson",
    "pacf_to_ar",
    "ar_autocovariance",
    "head_blocks",
]

#: nilearn's default ``bins=100``: coefficients are truncated toward zero on a 0.01 grid.
BINS_PER_UNIT = 100
#: Integer bin k in [-99, 99] stands for rho = k / 100; index = k + 99.
N_BINS = 2 * (BINS_PER_UNIT - 1) + 1
BIN_VALUES = np.arange(-(BINS_PER_UNIT - 1), BINS_PER_UNIT) * 1.0 / BINS_PER_UNIT
#: Index of rho = 0, i.e. the unwhitened OLS fit.
OLS_BIN = BINS_PER_UNIT - 1


# --------------------------------------------------------------------- bins
def ar1_bin_index(rho: np.ndarray) -> np.ndarray:
    """Bin index of each AR(1) coefficient, as nilearn's ``(rho * 100).astype(int)``.

    The cast truncates toward zero; |rho| >= 1 (impossible for Yule-Walker
    estimates but for rounding) is clipped to the outermost bin.

    Parameters
    ----------
    rho : ndarray
        AR(1) coefficients.

    Returns
    -------
    ndarray of int16
        Index into :data:`BIN_VALUES` (``0 .. N_BINS - 1``).
    """
    k = (np.asarray(rho) * BINS_PER_UNIT).astype(int)
    k = np.clip(k, -(BINS_PER_UNIT - 1), BINS_PER_UNIT - 1)
    return (k + BINS_PER_UNIT - 1).astype(np.int16)


def quantize_ar(rho: np.ndarray) -> np.ndarray:
    """Truncate AR coefficients toward zero on the 0.01 grid, as nilearn's AR(1) bins.

    Used by binned ``arN`` (N >= 2) instead of nilearn's KMeans clustering,
    which is a global (whole-brain) step.

    Parameters
    ----------
    rho : ndarray
        AR coefficients, any shape.

    Returns
    -------
    ndarray of float64
        ``trunc(100 rho) / 100`` clipped to ``[-0.99, 0.99]``.
    """
    k = np.trunc(np.asarray(rho, dtype=np.float64) * BINS_PER_UNIT)
    return np.clip(k, -(BINS_PER_UNIT - 1), BINS_PER_UNIT - 1) / BINS_PER_UNIT


# ---------------------------------------------------------------- algebra
def toeplitz_stack(r: np.ndarray) -> np.ndarray:
    """Per-voxel symmetric Toeplitz matrices ``T[v]_{ij} = r[|i - j|, v]``.

    Parameters
    ----------
    r : ndarray, shape (L, V)
        First column of each matrix (lags 0..L-1).

    Returns
    -------
    ndarray, shape (V, L, L)
        A view of ``r`` re-indexed, voxel axis first.
    """
    size = r.shape[0]
    idx = np.abs(np.arange(size)[:, None] - np.arange(size)[None, :])
    return np.moveaxis(r[idx], -1, 0)


def _step_up(rho: np.ndarray, kappa: np.ndarray, k: int) -> np.ndarray:
    """One Levinson step-up: order ``k - 1`` coefficients to order ``k`` with ``rho_k = kappa``."""
    new = rho.copy()
    new[k - 1] = kappa
    if k > 1:
        new[: k - 1] = rho[: k - 1] - kappa * rho[k - 2 :: -1][: k - 1]
    return new


def levinson(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Durbin-Levinson recursion, batched over voxels.

    Parameters
    ----------
    r : ndarray, shape (p + 1, V)
        Autocovariances (any common scale) at lags 0..p.

    Returns
    -------
    rho : ndarray, shape (p, V)
        Yule-Walker AR(p) coefficients.
    pacf : ndarray, shape (p, V)
        Partial autocorrelations.  A voxel with ``r_0 <= 0`` gets zeros.
    """
    r = np.asarray(r, dtype=np.float64)
    p, n_vox = r.shape[0] - 1, r.shape[1]
    rho = np.zeros((p, n_vox))
    pacf = np.zeros((p, n_vox))
    ok = r[0] > 0
    v = np.where(ok, r[0], 1.0)
    for k in range(1, p + 1):
        acc = r[k] - np.einsum("jv,jv->v", rho[: k - 1], r[k - 1 : 0 : -1]) if k > 1 else r[k].copy()
        kappa = np.where(ok & (v > 0), acc / np.where(v > 0, v, 1.0), 0.0)
        rho = _step_up(rho, kappa, k)
        pacf[k - 1] = kappa
        v = v * (1.0 - kappa**2)
    return rho, pacf


def pacf_to_ar(pacf: np.ndarray) -> np.ndarray:
    """AR coefficients from partial autocorrelations (Levinson step-up).

    Every ``pacf`` in ``(-1, 1)^p`` maps to a stationary AR(p).

    Parameters
    ----------
    pacf : ndarray, shape (p, V)

    Returns
    -------
    ndarray, shape (p, V)
    """
    pacf = np.asarray(pacf, dtype=np.float64)
    rho = np.zeros_like(pacf)
    for k in range(1, pacf.shape[0] + 1):
        rho = _step_up(rho, pacf[k - 1], k)
    return rho


def ar_autocovariance(rho: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocovariance ``gamma_0 .. gamma_max_lag`` of a stationary AR(p), unit innovations.

    Parameters
    ----------
    rho : ndarray, shape (p, V)
    max_lag : int

    Returns
    -------
    ndarray, shape (max_lag + 1, V)
    """
    rho = np.asarray(rho, dtype=np.float64)
    p, n_vox = rho.shape
    if p == 0:
        out = np.zeros((max_lag + 1, n_vox))
        out[0] = 1.0
        return out
    # gamma_k - sum_i rho_i gamma_|k-i| = delta_k0, k = 0..p
    A = np.zeros((n_vox, p + 1, p + 1))
    idx = np.arange(p + 1)
    A[:, idx, idx] = 1.0
    for k in range(p + 1):
        for i in range(1, p + 1):
            A[:, k, abs(k - i)] -= rho[i - 1]
    rhs = np.zeros((n_vox, p + 1, 1))
    rhs[:, 0, 0] = 1.0
    first = np.linalg.solve(A, rhs)[..., 0].T  # (p + 1, V)
    out = np.empty((max(max_lag, p) + 1, n_vox))
    out[: p + 1] = first
    for k in range(p + 1, max_lag + 1):
        out[k] = np.einsum("iv,iv->v", rho, out[k - p : k][::-1])
    return out[: max_lag + 1]


def _band_head(rho: np.ndarray) -> np.ndarray:
    """Head block ``N`` (V, p, p) of the banded filter: ``N[t, t-i] = c_i``."""
    p, n_vox = rho.shape
    N = np.zeros((n_vox, p, p))
    idx = np.arange(p)
    N[:, idx, idx] = 1.0
    for i in range(1, p):
        N[:, idx[i:], idx[:-i]] = -rho[i - 1][:, None]
    return N


def head_blocks(rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact-whitening head quantities.

    Parameters
    ----------
    rho : ndarray, shape (p, V)
        Stationary AR coefficients.

    Returns
    -------
    B : ndarray, shape (V, p, p)
        Lower-triangular whitener of the first ``p`` samples,
        ``B Gamma_p B^T = I``.
    H : ndarray, shape (V, p, p)
        ``B^T B - N^T N``: the head correction of the whitened cross-products.
    """
    p = rho.shape[0]
    Gamma = toeplitz_stack(ar_autocovariance(rho, p - 1))  # (V, p, p)
    chol = np.linalg.cholesky(Gamma)
    eye = np.broadcast_to(np.eye(p), Gamma.shape)
    B = np.linalg.solve(chol, eye)
    B = np.tril(B)
    N = _band_head(rho)
    H = np.einsum("vts,vtu->vsu", B, B) - np.einsum("vts,vtu->vsu", N, N)
    return B, H
