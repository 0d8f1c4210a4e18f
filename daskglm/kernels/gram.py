"""Whitened Gram matrices of the design, and the per-voxel AR(p) fit built on them.

This module holds the design-only tables of the covariance of beta: nilearn's
per-bin ``pinv(WX) pinv(WX)^T`` for binned ``ar1`` (:func:`binned_gram_inverses`;
:func:`ols_cov_table` for ``ols``) and the lagged Gram stack (:class:`GramTables`)
from which ``(W_v X)^T (W_v X)`` is rebuilt per voxel for binned ``arN``
(N >= 2) and ``whitening="exact"``, with the fit that uses it
(:func:`whitened_fit`), the bias-corrected AR estimate
(:func:`bias_corrected_ar`) and the residual autocorrelation diagnostics.
It is pure numpy; every function works on one block of voxels.  The AR
algebra (Levinson, step-up, autocovariance, head blocks) is in
:mod:`daskglm.kernels.ar`.  The formulas are collected in
``docs/statistics.md``; in short:

**Noise model.**  ``e_t = sum_{i=1..p} rho_i e_{t-i} + u_t``, ``u`` white with
variance ``s^2``, stationary.  ``gamma_k`` denotes its autocovariance for unit
innovation variance and ``Gamma_p = toeplitz(gamma_0 .. gamma_{p-1})``.

**Exact whitening.**  With ``c_0 = 1, c_i = -rho_i`` the banded filter
``F = sum_i c_i S_i`` (``S_i`` shifts by ``i`` with zero fill; it is nilearn's
``ARModel.whiten``) is right for rows ``t >= p``.  The exact whitener ``W``
replaces the first ``p`` rows by ``B z_{0:p}`` with ``B`` lower triangular and
``B Gamma_p B^T = I`` (``B = chol(Gamma_p)^{-1}``; for AR(1) the first sample
times ``sqrt(1 - rho^2)``).  Then ``W Cov(e) W^T = s^2 I``.  As only head rows
change,

    (WX)^T (WY) = sum_{i,j} c_i c_j M_ij + X_h^T H Y_h,
    H = B^T B - N^T N = Gamma_p^{-1} - N^T N,

where ``M_ij = sum_{t >= max(i, j)} X_{t-i} Y_{t-j}`` are the lagged sums of
:func:`daskglm.kernels.glm.whitened_cross`, ``X_h, Y_h`` the first ``p`` rows
and ``N`` (``N[t, t-i] = c_i``) the head block of ``F``.  The same holds for
``(WX)^T (WX)``: a per-voxel weighted sum of ``(p+1)^2 + p^2`` design-only
``q x q`` matrices (:attr:`GramTables.gram_stack`), so contrasts can rebuild
``(X~^T X~)^{-1}`` from the stored coefficients.

**Bias correction.**  OLS residuals are ``e = R y`` with ``R = I - X X^+``.
For the lag sums ``a_l = sum_{t >= l} e_t e_{t-l} = e^T S_l e``,

    E[a_l] = s^2 sum_{j >= 0} gamma_j(rho) T_lj,
    T_lj = tr(R S_l R K_j),  K_0 = I, K_j = S_j + S_j^T,

(Worsley et al. 2002, NeuroImage 15:1-15, eq. for the bias of residual
autocorrelations; ``T`` is design-only).  Worsley truncates the sum at lag
``p``; here the whole AR(p) autocovariance is used (up to ``max_lag``), and
``rho`` is the method-of-moments solution of "the expected residual partial
autocorrelations equal the observed ones", found per voxel by the fixed-point
iteration ``kappa <- kappa + (kappa_obs - kappa_model(kappa))`` in partial
autocorrelation space (which keeps every iterate stationary; ``|kappa|`` is
clipped at :data:`MAX_PACF`).
"""

from __future__ import annotations

import numpy as np

from daskglm.kernels.ar import (
    BIN_VALUES,
    N_BINS,
    OLS_BIN,
    ar_autocovariance,
    head_blocks,
    levinson,
    pacf_to_ar,
)
from daskglm.kernels.glm import (
    _cross_yy,
    design_rank,
    lagged_gram,
    residual_lag_sums,
    whitened_cross,
    whitened_gram_inverse,
)
from daskglm.kernels.sufficient_stats import RunStats

__all__ = [
    "MAX_PACF",
    "DEFAULT_MAX_LAG",
    "binned_gram_inverses",
    "ols_cov_table",
    "GramTables",
    "bias_matrix",
    "stack_weights",
    "stack_gram",
    "bias_corrected_ar",
    "whitened_fit",
    "residual_acf",
    "whitened_residual_acf",
]

#: Partial autocorrelations are clipped to ``[-MAX_PACF, MAX_PACF]``.
MAX_PACF = 0.99
#: Autocovariance lags used in the bias correction (beyond, ``gamma_j`` is ~0).
DEFAULT_MAX_LAG = 256


# ------------------------------------------------------------ design tables
def binned_gram_inverses(X: np.ndarray) -> np.ndarray:
    """``pinv(WX) pinv(WX).T`` for every AR(1) bin, nilearn's binned covariance table.

    Parameters
    ----------
    X : ndarray, shape (n, p)

    Returns
    -------
    ndarray, shape (N_BINS, p, p)
        Entry ``k`` whitens with ``rho = BIN_VALUES[k]``.
    """
    return np.stack([whitened_gram_inverse(X, np.array([rho])) for rho in BIN_VALUES])


def ols_cov_table(X: np.ndarray) -> np.ndarray:
    """The binned table of an OLS fit: only the ``rho = 0`` entry, ``pinv(X) pinv(X)^T``.

    Parameters
    ----------
    X : ndarray, shape (n, p)

    Returns
    -------
    ndarray, shape (N_BINS, p, p)
        Zero except at :data:`~daskglm.kernels.ar.OLS_BIN`.
    """
    table = np.zeros((N_BINS,) + (X.shape[1],) * 2)
    table[OLS_BIN] = whitened_gram_inverse(X, np.zeros(1))
    return table


def bias_matrix(X: np.ndarray, order: int, max_lag: int) -> np.ndarray:
    """``T_lj = tr(R S_l R K_j)`` for l = 0..order, j = 0..max_lag (design only).

    ``R = I - X X^+`` is built from an orthonormal basis ``U`` of the column
    space, ``R S_l R = S_l - P S_l - S_l P + P S_l P`` with ``P = U U^T``.

    Parameters
    ----------
    X : ndarray (n, q)
    order : int
        AR order ``p``.
    max_lag : int
        Last autocovariance lag ``J``.

    Returns
    -------
    ndarray (p + 1, J + 1)
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    u, s, _ = np.linalg.svd(X, full_matrices=False)
    tol = s.max() * max(X.shape) * np.finfo(np.float64).eps if s.size else 0.0
    U = u[:, s > tol]
    T = np.zeros((order + 1, max_lag + 1))
    for lag in range(order + 1):
        # R S_l R = (I - U U^T) S_l (I - U U^T)
        Q = np.zeros((n, n))
        rows = np.arange(lag, n)
        Q[rows, rows - lag] = 1.0
        Q -= U @ (U.T @ Q)
        Q -= (Q @ U) @ U.T
        for j in range(min(max_lag, n - 1) + 1):
            T[lag, j] = np.trace(Q, offset=j) + (np.trace(Q, offset=-j) if j else 0.0)
    return T


class GramTables:
    """Design-only quantities for per-voxel AR(p) fits of one run.

    Parameters
    ----------
    X : ndarray, shape (n, q)
    order : int
        AR order ``p >= 1``.
    bias : bool, default=True
        Compute :attr:`bias` (only exact whitening needs it).
    max_lag : int, optional
        Autocovariance lags used in the bias correction
        (default ``min(n - 1, DEFAULT_MAX_LAG)``).

    Attributes
    ----------
    gram_stack : ndarray, shape ((p+1)^2 + p^2, q, q)
        ``G_ij = sum_{t >= max(i,j)} X_{t-i} X_{t-j}^T`` (row-major over i, j),
        then ``X_s X_t^T`` for the head rows s, t < p.
    bias : ndarray, shape (p + 1, max_lag + 1) or None
        :func:`bias_matrix`.
    rank : int
    """

    def __init__(self, X: np.ndarray, order: int, bias: bool = True, max_lag: int | None = None):
        X = np.asarray(X, dtype=np.float64)
        self.X = X
        self.n_scans, self.n_regressors = X.shape
        self.order = int(order)
        p, n = self.order, self.n_scans
        mats = []
        for i in range(p + 1):
            for j in range(p + 1):
                m = max(i, j)
                mats.append(X[m - i : n - i].T @ X[m - j : n - j])
        head = X[:p]
        for s in range(p):
            for t in range(p):
                mats.append(np.outer(head[s], head[t]))
        self.gram_stack = np.stack(mats)
        self.rank = design_rank(X)
        self.max_lag = min(n - 1, DEFAULT_MAX_LAG) if max_lag is None else int(max_lag)
        self.bias = bias_matrix(X, p, self.max_lag) if bias else None


def stack_weights(rho: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-voxel weights of :attr:`GramTables.gram_stack` for coefficients ``rho``.

    ``(WX)^T (WX) = sum_k w_k G_k``: the band weights ``c_i c_j`` then, for
    exact whitening, the head correction ``H`` (:func:`~daskglm.kernels.ar.head_blocks`).

    Parameters
    ----------
    rho : ndarray (p, V)
    exact : bool
        ``False`` gives nilearn's whitening (first samples unscaled, ``H = 0``).

    Returns
    -------
    weights : ndarray ((p+1)^2 + p^2, V)
    H : ndarray (V, p, p) or None
    """
    p, n_vox = rho.shape
    coef = np.concatenate([np.ones((1, n_vox)), -rho])
    band = (coef[:, None, :] * coef[None, :, :]).reshape((p + 1) ** 2, n_vox)
    if exact:
        _, H = head_blocks(rho)
        head = H.reshape(n_vox, p * p).T
    else:
        H = None
        head = np.zeros((p * p, n_vox))
    return np.concatenate([band, head]), H


def stack_gram(rho: np.ndarray, gram_stack: np.ndarray, exact: bool) -> np.ndarray:
    """Whitened Gram ``(WX)^T (WX)`` per voxel.

    Parameters
    ----------
    rho : ndarray (p, V)
    gram_stack : ndarray ((p+1)^2 + p^2, q, q)
    exact : bool

    Returns
    -------
    ndarray (V, q, q)
    """
    w, _ = stack_weights(rho, exact)
    return np.einsum("kv,kab->vab", w, gram_stack)


# ------------------------------------------------------------ AR estimation
def bias_corrected_ar(
    autocov: np.ndarray, bias: np.ndarray, n_iter: int = 6
) -> np.ndarray:
    """Per-voxel AR(p) coefficients corrected for the residual-forming projection.

    Parameters
    ----------
    autocov : ndarray, shape (p + 1, V)
        Lagged sums ``a_l = sum_{t>=l} e_t e_{t-l}`` of the OLS residuals.
    bias : ndarray, shape (p + 1, J + 1)
        :func:`bias_matrix` of the design.
    n_iter : int
        Fixed-point iterations (the map is close to a shift; 4-6 suffice).

    Returns
    -------
    ndarray, shape (p, V)
        Stationary AR coefficients with ``|pacf| <= MAX_PACF``.
    """
    _, kappa_obs = levinson(autocov)
    kappa = np.clip(kappa_obs, -MAX_PACF, MAX_PACF)
    max_lag = bias.shape[1] - 1
    for _ in range(n_iter):
        gamma = ar_autocovariance(pacf_to_ar(kappa), max_lag)
        _, kappa_model = levinson(bias @ gamma)
        kappa = np.clip(kappa + (kappa_obs - kappa_model), -MAX_PACF, MAX_PACF)
    return pacf_to_ar(kappa)


# -------------------------------------------------------------- whitened fit
def whitened_fit(
    stats: RunStats, tables: GramTables, rho: np.ndarray, exact: bool
) -> tuple[np.ndarray, np.ndarray]:
    """GLS fit with per-voxel AR whitening from the sufficient statistics.

    Parameters
    ----------
    stats : RunStats
        Statistics with ``n_lags >= p``.
    tables : GramTables
    rho : ndarray, shape (p, V)
    exact : bool
        Exact whitening (scaled first ``p`` samples) or nilearn's.

    Returns
    -------
    beta : ndarray (q, V)
    dispersion : ndarray (V,)
        ``SSE / (n - rank)`` of the whitened fit (``n - q`` for nilearn's
        whitening, as its ``OLSModel``).
    """
    p = rho.shape[0]
    w, H = stack_weights(rho, exact)
    gram = np.einsum("kv,kab->vab", w, tables.gram_stack)
    xty, yty = whitened_cross(stats, tables.X, rho)
    if exact:
        head_y = stats.head[:p]
        xty = xty + np.einsum("ta,vts,sv->av", tables.X[:p], H, head_y)
        yty = yty + np.einsum("tv,vts,sv->v", head_y, H, head_y)
    q = tables.n_regressors
    if tables.rank == q:
        beta = np.linalg.solve(gram, xty.T[..., None])[..., 0].T
    else:
        beta = np.einsum("vab,bv->av", np.linalg.pinv(gram, hermitian=True), xty)
    sse = yty - np.einsum("av,av->v", beta, xty)
    dof = tables.n_scans - (tables.rank if exact else q)
    return beta, sse / dof


# ------------------------------------------------------------- diagnostics
def residual_acf(autocov: np.ndarray, lags: int) -> np.ndarray:
    """Autocorrelation ``a_l / a_0``, l = 1..lags, from residual lag sums.

    Parameters
    ----------
    autocov : ndarray (L + 1, V)
        Lag sums ``a_0..a_L``, ``L >= lags``.
    lags : int

    Returns
    -------
    ndarray (lags, V)
        0 where ``a_0 <= 0``.
    """
    a0 = autocov[0]
    safe = np.where(a0 > 0, a0, 1.0)
    return np.where(a0 > 0, autocov[1 : lags + 1] / safe, 0.0)


def whitened_residual_acf(
    stats: RunStats, X: np.ndarray, beta: np.ndarray, rho: np.ndarray, exact: bool, lags: int
) -> np.ndarray:
    """Autocorrelation at lags 1..``lags`` of the whitened residuals ``W (Y - X beta)``.

    Needs ``stats.n_lags >= p + lags``.  With ``z = Y - X beta`` and the banded
    filter ``b = F z``, ``sum_{t>=l} b_t b_{t-l} = sum_{i,j} c_i c_j N_{i, l+j}``
    where ``N_ab = sum_{t>=max(a,b)} z_{t-a} z_{t-b}`` are lag sums of ``z``;
    exact whitening then swaps the first ``p`` rows, which touches only the
    products with ``t < p + l`` (head rows).

    Returns
    -------
    ndarray, shape (lags, V)
    """
    p, n_vox = rho.shape
    L, n = stats.n_lags, stats.n_scans
    if L < p + lags:
        raise ValueError(f"need statistics with n_lags >= {p + lags}, got {L}")
    X = np.asarray(X, dtype=np.float64)
    z_lag = residual_lag_sums(stats, X, lagged_gram(X, L), beta)
    z_head = stats.head - X[:L] @ beta
    z_tail = stats.tail - X[n - L :] @ beta
    zstats = RunStats(
        n, stats.sy - X.sum(axis=0) @ beta, z_lag[0], z_lag[1:], stats.xy, stats.xy_sym,
        z_head, z_tail,
    )
    coef = np.concatenate([np.ones((1, n_vox)), -rho])
    sums = np.zeros((lags + 1, n_vox))
    for lag in range(lags + 1):
        for i in range(p + 1):
            for j in range(p + 1):
                sums[lag] += coef[i] * coef[j] * _cross_yy(zstats, i, lag + j)
    if exact and p:
        m = min(p + lags, n)
        band = np.zeros((m, n_vox))
        for t in range(m):
            for i in range(min(t, p) + 1):
                band[t] += coef[i] * z_head[t - i]
        white = band.copy()
        B, _ = head_blocks(rho)
        white[:p] = np.einsum("vts,sv->tv", B, z_head[:p])
        for lag in range(lags + 1):
            for t in range(lag, min(p + lag, n)):
                sums[lag] += white[t] * white[t - lag] - band[t] * band[t - lag]
    return residual_acf(sums, lags)
