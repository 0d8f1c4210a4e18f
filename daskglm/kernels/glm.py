"""GLM solves from sufficient statistics: OLS, Yule-Walker, AR(p) prewhitening.

Formulas follow nilearn 0.14.1 (``nilearn.glm.first_level.run_glm``,
``nilearn.glm.regression``) exactly; docs/architecture.md maps each step.
The ones that live here:

- OLS: ``beta = pinv(X) Y`` from ``X^T Y``, ``SSE = Y^T Y - beta^T X^T Y``,
  ``df = n - rank(X)`` with nilearn's rank tolerance (:func:`ols_fit`,
  :func:`design_rank`);
- residual lag sums ``c_k = sum_{t>=k} (e_t - mu)(e_{t-k} - mu)`` with
  nilearn's grand-mean centring ``mu`` (:func:`residual_lag_sums`);
- Yule-Walker: ``r_k = c_k / ((n - k) n)``, ``rho = Toeplitz(r_0..r_{L-1})^{-1}
  r_{1..L}`` (:func:`yule_walker`);
- nilearn's whitening and ``(WX)^T (WY)``, ``(WY)^T (WY)`` from the lagged sums
  (below; :func:`whitened_cross`), ``pinv(WX) pinv(WX)^T``
  (:func:`whitened_gram_inverse`) and the whitened least squares
  ``sigma^2 = SSE_w / (n - p)`` (:func:`fit_whitened_table`).

Notation: ``W`` whitens a series with AR coefficients ``rho_1..rho_L`` the way
nilearn's ``ARModel.whiten`` does, ``(W z)_t = z_t - sum_{i<=min(t,L)} rho_i z_{t-i}``
(the first samples are not rescaled).  Writing ``W = sum_i c_i S_i`` with
``c_0 = 1, c_i = -rho_i`` and ``S_i`` the shift by ``i`` with zero fill,

    (W X)^T (W Y) = sum_{i,j} c_i c_j M_ij,   M_ij = sum_{t>=max(i,j)} X_{t-i} Y_{t-j}

``M_ii`` is ``xy`` and, for ``d = j - i > 0``, ``M_ij + M_ji`` is the
accumulated symmetric lag sum ``xy_sym[d-1]``, each minus a few edge terms from
the last ``L`` volumes.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as spl

from daskglm.kernels.ar import toeplitz_stack
from daskglm.kernels.sufficient_stats import RunStats

__all__ = [
    "DesignTables",
    "lagged_gram",
    "design_rank",
    "constant_in_span",
    "ols_fit",
    "residual_sum",
    "residual_lag_sums",
    "residual_autocovariance",
    "yule_walker",
    "whiten_design",
    "whitened_gram_inverse",
    "whitened_cross",
    "fit_whitened_table",
]


class DesignTables:
    """Design-only quantities of one run, computed once and shared by all blocks.

    Parameters
    ----------
    X : ndarray (n, p)
        The run's design matrix.
    n_lags : int
        Lags ``L`` of the statistics.

    Attributes
    ----------
    X : ndarray (n, p)
    pinv_cov : ndarray (p, p)
        ``pinv(X) pinv(X).T``, nilearn's ``normalized_cov_beta`` for OLS.
    lagged_gram : ndarray (L + 1, p, p)
        ``A_k = sum_{t>=k} X_t X_{t-k}^T``.
    rank : int
        ``matrix_rank(X)`` with nilearn's tolerance; df = n - rank.
    """

    def __init__(self, X: np.ndarray, n_lags: int):
        X = np.asarray(X, dtype=np.float64)
        self.X = X
        self.n_scans, self.n_regressors = X.shape
        self.n_lags = n_lags
        pinv = spl.pinv(X)
        self.pinv_cov = pinv @ pinv.T
        self.lagged_gram = lagged_gram(X, n_lags)
        self.rank = design_rank(X)


def lagged_gram(X: np.ndarray, n_lags: int) -> np.ndarray:
    """Lagged Gram matrices ``A_k = sum_{t>=k} X_t X_{t-k}^T``, k = 0..n_lags.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    n_lags : int

    Returns
    -------
    ndarray, shape (n_lags + 1, p, p)
    """
    n = X.shape[0]
    return np.stack([X[k:].T @ X[: n - k] for k in range(n_lags + 1)])


def design_rank(X: np.ndarray) -> int:
    """``rank(X)`` with nilearn's tolerance (``sum|X| * eps``); df = n - rank.

    Parameters
    ----------
    X : ndarray (n, p)

    Returns
    -------
    int
    """
    X = np.asarray(X, dtype=np.float64)
    return int(np.linalg.matrix_rank(X, np.abs(X).sum() * np.finfo(np.float64).eps))


def constant_in_span(X: np.ndarray) -> bool:
    """Whether the constant series lies in the column space of ``X``.

    Then every voxel's OLS residuals sum to zero, and nilearn's grand-mean
    centring before Yule-Walker subtracts only rounding noise.

    Parameters
    ----------
    X : ndarray (n, p)

    Returns
    -------
    bool
    """
    X = np.asarray(X, dtype=np.float64)
    ones = np.ones(X.shape[0])
    residual = ones - X @ (spl.pinv(X) @ ones)
    return bool(np.linalg.norm(residual) <= 1e-8 * np.sqrt(X.shape[0]))


def ols_fit(stats: RunStats, tables: DesignTables) -> tuple[np.ndarray, np.ndarray]:
    """OLS ``beta = pinv(X) Y`` and the residual sum of squares, per voxel.

    Parameters
    ----------
    stats : RunStats
    tables : DesignTables

    Returns
    -------
    beta : ndarray (p, V)
    sse : ndarray (V,)
    """
    beta = tables.pinv_cov @ stats.xy
    sse = stats.yy - np.einsum("pv,pv->v", beta, stats.xy)
    return beta, sse


def _quad(beta: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``beta_v^T A beta_v`` for every voxel."""
    return np.einsum("pv,pv->v", beta, A @ beta)  # one GEMM: the 3-operand einsum is a naive loop


def residual_sum(stats: RunStats, X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``sum_t e_t`` of the residuals ``e = Y - X beta``, per voxel.

    Parameters
    ----------
    stats : RunStats
    X : ndarray (n, p)
    beta : ndarray (p, V)

    Returns
    -------
    ndarray (V,)
    """
    return stats.sy - X.sum(axis=0) @ beta


def residual_lag_sums(
    stats: RunStats, X: np.ndarray, gram: np.ndarray, beta: np.ndarray, grand_mean: float = 0.0
) -> np.ndarray:
    """Lagged sums ``c_k = sum_{t>=k} (e_t - mu)(e_{t-k} - mu)`` of ``e = Y - X beta``, k = 0..L.

    With ``A_k`` the lagged Gram of ``X`` (:func:`lagged_gram`) and the
    statistics' lag sums,

        sum_{t>=k} e_t e_{t-k} = yy_lag[k] - beta^T xy_sym[k] + beta^T A_k beta

    (``yy``, ``xy`` and ``2 beta^T xy`` at lag 0); the centring on ``mu``
    adds ``-mu (sum_{t>=k} e_t + sum_{t<n-k} e_t) + (n - k) mu^2``.

    Parameters
    ----------
    stats : RunStats
        Statistics of ``Y`` with ``n_lags = L``.
    X : ndarray, shape (n, p)
    gram : ndarray, shape (>= L + 1, p, p)
        :func:`lagged_gram` of ``X``.
    beta : ndarray, shape (p, V)
    grand_mean : float
        ``mu``; 0 for plain lag sums.

    Returns
    -------
    ndarray, shape (L + 1, V)
    """
    n, L = stats.n_scans, stats.n_lags
    e_sum = residual_sum(stats, X, beta)
    e_head = stats.head - X[:L] @ beta
    e_tail = stats.tail - X[n - L :] @ beta
    head_sum = np.cumsum(e_head, axis=0)
    tail_sum = np.cumsum(e_tail[::-1], axis=0)

    c = np.empty((L + 1, stats.n_voxels))
    c[0] = (
        stats.yy
        - 2 * np.einsum("pv,pv->v", beta, stats.xy)
        + _quad(beta, gram[0])
    )
    c[0] += -2 * grand_mean * e_sum + n * grand_mean**2
    for k in range(1, L + 1):
        cross = stats.xy_sym[k - 1]
        c[k] = stats.yy_lag[k - 1] - np.einsum("pv,pv->v", beta, cross)
        c[k] += _quad(beta, gram[k])
        late, early = e_sum - head_sum[k - 1], e_sum - tail_sum[k - 1]
        c[k] += -grand_mean * (late + early) + (n - k) * grand_mean**2
    return c


def residual_autocovariance(
    stats: RunStats, tables: DesignTables, beta: np.ndarray, grand_mean: float = 0.0
) -> np.ndarray:
    """Lagged sums ``c_k = sum_{t>=k} (e_t - mu)(e_{t-k} - mu)`` of the OLS residuals, k = 0..L.

    ``mu`` is nilearn's Yule-Walker centring: one mean over all voxels and
    scans of the OLS residuals (about 0 when the design has an intercept).
    :func:`residual_lag_sums` with the run's :class:`DesignTables`.

    Parameters
    ----------
    stats : RunStats
    tables : DesignTables
    beta : ndarray, shape (p, V)
    grand_mean : float

    Returns
    -------
    ndarray, shape (L + 1, V)
    """
    return residual_lag_sums(stats, tables.X, tables.lagged_gram, beta, grand_mean)


def yule_walker(autocov: np.ndarray, n_scans: int) -> np.ndarray:
    """Yule-Walker AR coefficients from lagged sums, as nilearn's ``_yule_walker``.

    Parameters
    ----------
    autocov : ndarray (L + 1, V)
        Residual lag sums ``c_0..c_L`` (:func:`residual_autocovariance`).
    n_scans : int

    Returns
    -------
    ndarray (L, V)
        A voxel whose residuals are all zero (a constant voxel) gets
        coefficients 0 instead of nilearn's NaN.
    """
    L = autocov.shape[0] - 1
    r = autocov / ((n_scans - np.arange(L + 1))[:, None] * n_scans)
    degenerate = ~(r[0] > 0)
    r = np.where(degenerate, 0.0, r)
    r[0] = np.where(degenerate, 1.0, r[0])
    if L == 1:
        return r[1:] / r[0]
    toeplitz = toeplitz_stack(r[:L])  # (V, L, L)
    rho = np.linalg.solve(toeplitz, r[1:].T[:, :, None])[..., 0]
    return rho.T


def whiten_design(X: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """nilearn's ``ARModel.whiten``: first samples are left unscaled.

    Parameters
    ----------
    X : ndarray (n, p)
    rho : array-like (L,)
        AR coefficients.

    Returns
    -------
    ndarray (n, p)
        ``x_t - sum_{i <= min(t, L)} rho_i x_{t-i}``.
    """
    X = np.asarray(X, dtype=np.float64)
    out = X.copy()
    for i, r in enumerate(np.atleast_1d(rho)):
        out[i + 1 :] = out[i + 1 :] - r * X[: -(i + 1)]
    return out


#: Below this condition number of ``(WX)^T (WX)`` its inverse comes from a
#: p x p eigendecomposition; above it, from nilearn's own SVD of ``WX``.
GRAM_COND_LIMIT = 1e8


def whitened_gram_inverse(X: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``pinv(WX) pinv(WX).T``, nilearn's ``normalized_cov_beta`` of ``ARModel``.

    Mathematically ``((WX)^T (WX))^+``.  For a well-conditioned design it is
    computed from the p x p Gram matrix (n times cheaper than an SVD of the
    n x p ``WX``; differences ~cond^2 eps).  Near-singular designs take
    nilearn's route, ``scipy.linalg.pinv`` of ``WX``, so its rank cut-off applies.

    Parameters
    ----------
    X : ndarray (n, p)
    rho : ndarray (L,)

    Returns
    -------
    ndarray (p, p)
    """
    wx = whiten_design(X, rho)
    gram = wx.T @ wx
    eigval, eigvec = np.linalg.eigh(gram)
    if eigval[0] > 0 and eigval[-1] / eigval[0] < GRAM_COND_LIMIT:
        return (eigvec / eigval) @ eigvec.T
    pinv = spl.pinv(wx)
    return pinv @ pinv.T


def _tail_rows(stats: RunStats, start: int, stop: int) -> np.ndarray:
    """Rows ``start..stop-1`` (global scan indices) of the run's last L volumes."""
    offset = stats.n_scans - stats.n_lags
    return stats.tail[start - offset : stop - offset]


def _cross_xy(stats: RunStats, X: np.ndarray, i: int, j: int) -> np.ndarray:
    """``M_ii`` for ``i == j``, else ``M_ij + M_ji``, of shape (p, V).

    ``M_ij = sum_{t>=max(i,j)} X_{t-i} Y_{t-j}``.  With ``d = |j - i|`` and
    ``hi = max(i, j)``, ``lo = min(i, j)``, the accumulated sums run over the
    whole run; the pairs with ``t > n - 1`` after the shift are taken off:

    - ``sum_{s=0}^{n-1-hi} X_{s+d} Y_s`` = (the ``X_{t} Y_{t-d}`` half) minus
      ``s = n-hi .. n-1-d``;
    - ``sum_{u=d}^{n-1-lo} X_{u-d} Y_u`` = (the ``X_{t-d} Y_t`` half) minus
      ``u = n-lo .. n-1``.
    """
    n = stats.n_scans
    lo, hi = min(i, j), max(i, j)
    d = hi - lo
    if d == 0:
        full = stats.xy
        edges = [(range(n - hi, n), 0)]
    else:
        full = stats.xy_sym[d - 1]
        edges = [(range(n - hi, n - d), d), (range(n - lo, n), -d)]
    out = full
    for edge, shift in edges:
        if len(edge):
            rows_x = X[[s + shift for s in edge]]
            out = out - rows_x.T @ _tail_rows(stats, edge.start, edge.stop)
    return out


def _cross_yy(stats: RunStats, i: int, j: int) -> np.ndarray:
    """``N_ij = sum_{t>=max(i,j)} Y_{t-i} Y_{t-j}`` of shape (V,)."""
    n = stats.n_scans
    lo, hi = min(i, j), max(i, j)
    d = hi - lo  # sum_{s=0}^{n-1-hi} Y_{s+d} Y_s
    full = stats.yy if d == 0 else stats.yy_lag[d - 1]
    edge = range(n - hi, n - d)
    if len(edge) == 0:
        return full
    y_s = _tail_rows(stats, edge.start, edge.stop)
    y_sd = _tail_rows(stats, edge.start + d, edge.stop + d)
    return full - np.einsum("tv,tv->v", y_s, y_sd)


def whitened_cross(
    stats: RunStats, X: np.ndarray, rho: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(WX)^T (WY)`` and ``(WY)^T (WY)`` for per-voxel AR coefficients, nilearn's whitening.

    Parameters
    ----------
    stats : RunStats
        Statistics with ``n_lags >= L``.
    X : ndarray (n, p)
    rho : ndarray (L, V)

    Returns
    -------
    xty : ndarray (p, V)
    yty : ndarray (V,)
    """
    order = rho.shape[0]
    coef = np.concatenate([np.ones((1, rho.shape[1])), -rho])  # c_0 .. c_L
    xty = np.zeros_like(stats.xy)
    yty = np.zeros_like(stats.yy)
    for i in range(order + 1):
        for j in range(i, order + 1):
            w = coef[i] * coef[j]
            xty += w * _cross_xy(stats, X, i, j)  # both (i, j) and (j, i) when i < j
            yty += (w if i == j else 2 * w) * _cross_yy(stats, i, j)
    return xty, yty


def fit_whitened_table(
    xty: np.ndarray, yty: np.ndarray, table: np.ndarray, index: np.ndarray, n_regressors: int, n_scans: int
) -> tuple[np.ndarray, np.ndarray]:
    """Whitened least squares from cross-products, per voxel.

    Parameters
    ----------
    xty : ndarray (p, V)
        ``(WX)^T (WY)``.
    yty : ndarray (V,)
        ``(WY)^T (WY)``.
    table : ndarray (n_tables, p, p)
        ``pinv(WX) pinv(WX)^T`` per whitening (AR(1) bin).
    index : ndarray (V,) of int
        Row of ``table`` for each voxel.  Voxels are grouped by row, so no
        (V, p, p) array is built.

    Returns
    -------
    beta : ndarray (p, V)
    dispersion : ndarray (V,)
        ``SSE / (n - p)`` as nilearn's ``OLSModel.fit``.
    """
    beta = np.empty_like(xty)
    order = np.argsort(index, kind="stable")
    entries, starts = np.unique(index[order], return_index=True)
    bounds = np.append(starts, len(order))
    for k, entry in enumerate(entries):
        sel = order[bounds[k] : bounds[k + 1]]
        beta[:, sel] = table[entry] @ xty[:, sel]
    sse = yty - np.einsum("pv,pv->v", beta, xty)
    return beta, sse / (n_scans - n_regressors)
