"""Exact AR(p) prewhitening with bias-corrected per-voxel coefficients.

This module implements ``FirstLevelModel(whitening="exact")`` and the
per-voxel part of binned ``arN`` (N >= 2).  It is pure numpy; every function
works on one block of voxels.  The formulas are collected in
``docs/statistics.md``; in short:

**Noise model.**  ``e_t = sum_{i=1..p} phi_i e_{t-i} + u_t``, ``u`` white with
variance ``s^2``, stationary.  ``gamma_k`` denotes its autocovariance for unit
innovation variance and ``Gamma_p = toeplitz(gamma_0 .. gamma_{p-1})``.

**Exact whitening.**  With ``c_0 = 1, c_i = -phi_i`` the banded filter
``F = sum_i c_i S_i`` (``S_i`` shifts by ``i`` with zero fill; it is nilearn's
``ARModel.whiten``) is right for rows ``t >= p``.  The exact whitener ``W``
replaces the first ``p`` rows by ``B z_{0:p}`` with ``B`` lower triangular and
``B Gamma_p B^T = I`` (``B = chol(Gamma_p)^{-1}``; for AR(1) the first sample
times ``sqrt(1 - phi^2)``).  Then ``W Cov(e) W^T = s^2 I``.  As only head rows
change,

    (WX)^T (WY) = sum_{i,j} c_i c_j M_ij + X_h^T H Y_h,
    H = B^T B - N^T N = Gamma_p^{-1} - N^T N,

where ``M_ij = sum_{t >= max(i, j)} X_{t-i} Y_{t-j}`` are the lagged sums of
:func:`daskglm.kernels.glm.whitened_cross`, ``X_h, Y_h`` the first ``p`` rows
and ``N`` (``N[t, t-i] = c_i``) the head block of ``F``.  The same holds for
``(WX)^T (WX)``: a per-voxel weighted sum of ``(p+1)^2 + p^2`` design-only
``q x q`` matrices (:attr:`ExactTables.gram_stack`), so contrasts can rebuild
``(X~^T X~)^{-1}`` from the stored coefficients.

**Bias correction.**  OLS residuals are ``e = R y`` with ``R = I - X X^+``.
For the lag sums ``a_l = sum_{t >= l} e_t e_{t-l} = e^T S_l e``,

    E[a_l] = s^2 sum_{j >= 0} gamma_j(phi) T_lj,
    T_lj = tr(R S_l R K_j),  K_0 = I, K_j = S_j + S_j^T,

(Worsley et al. 2002, NeuroImage 15:1-15, eq. for the bias of residual
autocorrelations; ``T`` is design-only).  Worsley truncates the sum at lag
``p``; here the whole AR(p) autocovariance is used (up to ``max_lag``), and
``phi`` is the method-of-moments solution of "the expected residual partial
autocorrelations equal the observed ones", found per voxel by the fixed-point
iteration ``kappa <- kappa + (kappa_obs - kappa_model(kappa))`` in partial
autocorrelation space (which keeps every iterate stationary; ``|kappa|`` is
clipped at :data:`MAX_PACF`).
"""

from __future__ import annotations

import numpy as np

from .glm import _cross_yy, design_rank, whitened_cross
from .stats import RunStats

__all__ = [
    "MAX_PACF",
    "DEFAULT_MAX_LAG",
    "ExactTables",
    "levinson",
    "pacf_to_ar",
    "ar_autocovariance",
    "head_blocks",
    "stack_weights",
    "stack_gram",
    "bias_matrix",
    "bias_corrected_ar",
    "quantize_ar",
    "whitened_fit",
    "whitened_residual_acf",
    "residual_acf",
    "stack_contrast_block",
    "satterthwaite_df",
    "calibrated_variance",
]

#: Partial autocorrelations are clipped to ``[-MAX_PACF, MAX_PACF]``.
MAX_PACF = 0.99
#: Autocovariance lags used in the bias correction (beyond, ``gamma_j`` is ~0).
DEFAULT_MAX_LAG = 256
#: Quantization grid of binned ``arN`` coefficients (nilearn's ``bins=100``).
BINS_PER_UNIT = 100


# --------------------------------------------------------------- AR algebra
def levinson(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Durbin-Levinson recursion, batched over voxels.

    Parameters
    ----------
    r : ndarray, shape (p + 1, V)
        Autocovariances (any common scale) at lags 0..p.

    Returns
    -------
    phi : ndarray, shape (p, V)
        Yule-Walker AR(p) coefficients.
    pacf : ndarray, shape (p, V)
        Partial autocorrelations.  A voxel with ``r_0 <= 0`` gets zeros.
    """
    r = np.asarray(r, dtype=np.float64)
    p, n_vox = r.shape[0] - 1, r.shape[1]
    phi = np.zeros((p, n_vox))
    pacf = np.zeros((p, n_vox))
    ok = r[0] > 0
    v = np.where(ok, r[0], 1.0)
    for k in range(1, p + 1):
        acc = r[k] - np.einsum("jv,jv->v", phi[: k - 1], r[k - 1 : 0 : -1]) if k > 1 else r[k].copy()
        kappa = np.where(ok & (v > 0), acc / np.where(v > 0, v, 1.0), 0.0)
        new = phi.copy()
        new[k - 1] = kappa
        if k > 1:
            new[: k - 1] = phi[: k - 1] - kappa * phi[k - 2 :: -1][: k - 1]
        phi = new
        pacf[k - 1] = kappa
        v = v * (1.0 - kappa**2)
    return phi, pacf


def pacf_to_ar(pacf: np.ndarray) -> np.ndarray:
    """AR coefficients from partial autocorrelations (Levinson step-up).

    Every ``pacf`` in ``(-1, 1)^p`` maps to a stationary AR(p).
    """
    pacf = np.asarray(pacf, dtype=np.float64)
    p = pacf.shape[0]
    phi = np.zeros_like(pacf)
    for k in range(1, p + 1):
        kappa = pacf[k - 1]
        new = phi.copy()
        new[k - 1] = kappa
        if k > 1:
            new[: k - 1] = phi[: k - 1] - kappa * phi[k - 2 :: -1][: k - 1]
        phi = new
    return phi


def ar_autocovariance(phi: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocovariance ``gamma_0 .. gamma_max_lag`` of a stationary AR(p), unit innovations.

    Parameters
    ----------
    phi : ndarray, shape (p, V)
    max_lag : int

    Returns
    -------
    ndarray, shape (max_lag + 1, V)
    """
    phi = np.asarray(phi, dtype=np.float64)
    p, n_vox = phi.shape
    if p == 0:
        out = np.zeros((max_lag + 1, n_vox))
        out[0] = 1.0
        return out
    # gamma_k - sum_i phi_i gamma_|k-i| = delta_k0, k = 0..p
    A = np.zeros((n_vox, p + 1, p + 1))
    idx = np.arange(p + 1)
    A[:, idx, idx] = 1.0
    for k in range(p + 1):
        for i in range(1, p + 1):
            A[:, k, abs(k - i)] -= phi[i - 1]
    rhs = np.zeros((n_vox, p + 1, 1))
    rhs[:, 0, 0] = 1.0
    first = np.linalg.solve(A, rhs)[..., 0].T  # (p + 1, V)
    out = np.empty((max(max_lag, p) + 1, n_vox))
    out[: p + 1] = first
    for k in range(p + 1, max_lag + 1):
        out[k] = np.einsum("iv,iv->v", phi, out[k - p : k][::-1])
    return out[: max_lag + 1]


def _band_head(phi: np.ndarray) -> np.ndarray:
    """Head block ``N`` (V, p, p) of the banded filter: ``N[t, t-i] = c_i``."""
    p, n_vox = phi.shape
    N = np.zeros((n_vox, p, p))
    idx = np.arange(p)
    N[:, idx, idx] = 1.0
    for i in range(1, p):
        N[:, idx[i:], idx[:-i]] = -phi[i - 1][:, None]
    return N


def head_blocks(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact-whitening head quantities.

    Parameters
    ----------
    phi : ndarray, shape (p, V)
        Stationary AR coefficients.

    Returns
    -------
    B : ndarray, shape (V, p, p)
        Lower-triangular whitener of the first ``p`` samples,
        ``B Gamma_p B^T = I``.
    H : ndarray, shape (V, p, p)
        ``B^T B - N^T N``: the head correction of the whitened cross-products.
    """
    p = phi.shape[0]
    gamma = ar_autocovariance(phi, p - 1)  # (p, V)
    idx = np.abs(np.arange(p)[:, None] - np.arange(p)[None, :])
    Gamma = np.moveaxis(gamma[idx], -1, 0)  # (V, p, p)
    chol = np.linalg.cholesky(Gamma)
    eye = np.broadcast_to(np.eye(p), Gamma.shape)
    B = np.linalg.solve(chol, eye)
    B = np.tril(B)
    N = _band_head(phi)
    H = np.einsum("vts,vtu->vsu", B, B) - np.einsum("vts,vtu->vsu", N, N)
    return B, H


def quantize_ar(phi: np.ndarray) -> np.ndarray:
    """Truncate AR coefficients toward zero on the 0.01 grid, as nilearn's AR(1) bins.

    Used by binned ``arN`` (N >= 2) instead of nilearn's KMeans clustering,
    which is a global (whole-brain) step.  Values are clipped to ``[-0.99, 0.99]``.
    """
    k = np.trunc(np.asarray(phi, dtype=np.float64) * BINS_PER_UNIT)
    return np.clip(k, -(BINS_PER_UNIT - 1), BINS_PER_UNIT - 1) / BINS_PER_UNIT


# ------------------------------------------------------------ design tables
def bias_matrix(X: np.ndarray, order: int, max_lag: int) -> np.ndarray:
    """``T_lj = tr(R S_l R K_j)`` for l = 0..order, j = 0..max_lag (design only).

    ``R = I - X X^+`` is built from an orthonormal basis ``U`` of the column
    space, ``R S_l R = S_l - P S_l - S_l P + P S_l P`` with ``P = U U^T``.
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


class ExactTables:
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

    @property
    def df_residuals(self) -> int:
        return self.n_scans - self.rank


def stack_weights(phi: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-voxel weights of :attr:`ExactTables.gram_stack` for coefficients ``phi``.

    Returns ``(weights (K, V), H (V, p, p) or None)``; ``exact=False`` gives
    nilearn's whitening (first samples unscaled, ``H = 0``).
    """
    p, n_vox = phi.shape
    coef = np.concatenate([np.ones((1, n_vox)), -phi])
    band = (coef[:, None, :] * coef[None, :, :]).reshape((p + 1) ** 2, n_vox)
    if exact:
        _, H = head_blocks(phi)
        head = H.reshape(n_vox, p * p).T
    else:
        H = None
        head = np.zeros((p * p, n_vox))
    return np.concatenate([band, head]), H


def stack_gram(phi: np.ndarray, gram_stack: np.ndarray, exact: bool) -> np.ndarray:
    """Whitened Gram ``(WX)^T (WX)`` per voxel, shape (V, q, q)."""
    w, _ = stack_weights(phi, exact)
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
    stats: RunStats, tables: ExactTables, phi: np.ndarray, exact: bool
) -> tuple[np.ndarray, np.ndarray]:
    """GLS fit with per-voxel AR whitening from the sufficient statistics.

    Parameters
    ----------
    stats : RunStats
        Statistics with ``n_lags >= p``.
    tables : ExactTables
    phi : ndarray, shape (p, V)
    exact : bool
        Exact whitening (scaled first ``p`` samples) or nilearn's.

    Returns
    -------
    beta : ndarray (q, V)
    dispersion : ndarray (V,)
        ``SSE / (n - rank)`` of the whitened fit (``n - q`` for nilearn's
        whitening, as its ``OLSModel``).
    """
    p = phi.shape[0]
    w, H = stack_weights(phi, exact)
    gram = np.einsum("kv,kab->vab", w, tables.gram_stack)
    xty, yty = whitened_cross(stats, tables.X, phi)
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
    """Autocorrelation ``a_l / a_0``, l = 1..lags, from residual lag sums (L+1, V)."""
    a0 = autocov[0]
    safe = np.where(a0 > 0, a0, 1.0)
    return np.where(a0 > 0, autocov[1 : lags + 1] / safe, 0.0)


def whitened_residual_acf(
    stats: RunStats, X: np.ndarray, beta: np.ndarray, phi: np.ndarray, exact: bool, lags: int
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
    p, n_vox = phi.shape
    L, n = stats.n_lags, stats.n_scans
    if L < p + lags:
        raise ValueError(f"need statistics with n_lags >= {p + lags}, got {L}")
    X = np.asarray(X, dtype=np.float64)
    z_lag = _residual_lag_sums(stats, X, beta)
    z_head = stats.head - X[:L] @ beta
    z_tail = stats.tail - X[n - L :] @ beta
    zstats = RunStats(
        n, stats.sy - X.sum(axis=0) @ beta, z_lag[0], z_lag[1:], stats.xy, stats.xy_sym,
        z_head, z_tail,
    )
    coef = np.concatenate([np.ones((1, n_vox)), -phi])
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
        B, _ = head_blocks(phi)
        white[:p] = np.einsum("vts,sv->tv", B, z_head[:p])
        for lag in range(lags + 1):
            for t in range(lag, min(p + lag, n)):
                sums[lag] += white[t] * white[t - lag] - band[t] * band[t - lag]
    return residual_acf(sums, lags)


def _residual_lag_sums(stats: RunStats, X: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``sum_{t>=k} z_t z_{t-k}``, k = 0..L, for ``z = Y - X beta`` (no centring)."""
    n, L = stats.n_scans, stats.n_lags
    out = np.empty((L + 1, stats.n_voxels))
    out[0] = (
        stats.yy
        - 2 * np.einsum("pv,pv->v", beta, stats.xy)
        + np.einsum("pv,pq,qv->v", beta, X.T @ X, beta)
    )
    for k in range(1, L + 1):
        cross = stats.xy_sym[k - 1]
        gram = X[k:].T @ X[: n - k]
        out[k] = (
            stats.yy_lag[k - 1]
            - np.einsum("pv,pv->v", beta, cross)
            + np.einsum("pv,pq,qv->v", beta, gram, beta)
        )
    return out


# --------------------------------------------------------------- contrasts
def stack_contrast_block(
    beta: np.ndarray,
    sigma2: np.ndarray,
    ar_coef: np.ndarray,
    gram_stack: np.ndarray,
    con: np.ndarray,
    stat_type: str,
    exact: bool,
    df: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Effect and variance of a contrast with per-voxel whitened Gram matrices.

    The same outputs as :func:`daskglm.contrasts.contrast_block`, with
    ``G_v = ((W_v X)^T (W_v X))^{-1}`` rebuilt from the stored coefficients
    and the design-only :attr:`ExactTables.gram_stack`.

    Parameters
    ----------
    beta : ndarray (q, V)
    sigma2 : ndarray (V,)
    ar_coef : ndarray (p, V)
    gram_stack : ndarray (K, q, q)
    con : ndarray (q,) or (r, q)
    stat_type : {'t', 'F'}
    exact : bool
    df : float, optional
        The run's residual df.  With exact whitening the variance is then
        calibrated to the per-voxel Satterthwaite df (:func:`satterthwaite_df`,
        :func:`calibrated_variance`), so p and z maps computed with ``df`` are
        valid under the null.

    Returns
    -------
    effect : ndarray (V,) for t, (r, V) for F
    variance : ndarray (V,)
    """
    C = np.atleast_2d(con)
    ar_coef = np.asarray(ar_coef, dtype=np.float64)
    full_rank = np.linalg.matrix_rank(gram_stack[0], hermitian=True) == gram_stack.shape[1]
    ccov = _contrast_cov(ar_coef, gram_stack, C, exact, full_rank)
    cbeta = C @ beta
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    if stat_type == "t":
        effect, variance = cbeta[0], ccov[:, 0, 0] * sigma2
    else:
        evals, evecs = np.linalg.eigh(ccov)
        inv_root = np.einsum("vij,vj,vkj->vik", evecs, 1.0 / np.sqrt(evals), evecs)
        effect, variance = np.einsum("vij,jv->iv", inv_root, cbeta), sigma2
    if df is None or not exact:
        return effect, variance
    nu = satterthwaite_df(ar_coef, gram_stack, C, df, ccov, full_rank)
    return effect, calibrated_variance(effect, variance, stat_type, C.shape[0], nu, df)


def _contrast_cov(ar_coef, gram_stack, C, exact, full_rank) -> np.ndarray:
    """``C ((WX)^T WX)^{-1} C^T`` per voxel, shape (V, r, r)."""
    gram = stack_gram(ar_coef, gram_stack, exact)
    if full_rank:
        sol = np.linalg.solve(gram, np.broadcast_to(C.T, gram.shape[:2] + (C.shape[0],)))
    else:
        sol = np.einsum("vpq,jq->vpj", np.linalg.pinv(gram, hermitian=True), C)
    return np.einsum("ip,vpj->vij", C, sol)


def satterthwaite_df(
    ar_coef: np.ndarray,
    gram_stack: np.ndarray,
    con: np.ndarray,
    df: float,
    ccov: np.ndarray | None = None,
    full_rank: bool = True,
    step: float = 1e-4,
) -> np.ndarray:
    """Effective degrees of freedom of a contrast under estimated AR coefficients.

    The variance estimate ``v = sigma^2 c G(phi)^{-1} c^T`` is treated as a
    scaled chi-square whose relative variance adds the sampling variance of
    ``sigma^2`` (``2 / df``) and, by the delta method, that of the plug-in
    ``phi``:

        1 / nu = 1 / df + g^T Cov(phi_hat) g / 2,
        g = d log(c G(phi)^{-1} c^T) / d phi,   Cov(phi_hat) = Gamma_p(phi)^{-1} / df

    (the Yule-Walker asymptotic covariance).  For an F contrast ``g`` is the
    gradient of ``log det(C G^{-1} C^T) / r``.  ``g`` is computed by central
    differences over the design-only Gram stack.

    Returns
    -------
    ndarray, shape (V,)
    """
    C = np.atleast_2d(con)
    p, n_vox = ar_coef.shape
    r = C.shape[0]

    def logvar(phi):
        cov = _contrast_cov(phi, gram_stack, C, True, full_rank)
        return np.linalg.slogdet(cov)[1] / r

    grad = np.empty((p, n_vox))
    for i in range(p):
        shift = np.zeros((p, 1))
        shift[i] = step
        grad[i] = (logvar(ar_coef + shift) - logvar(ar_coef - shift)) / (2 * step)
    gamma = ar_autocovariance(ar_coef, p - 1)
    idx = np.abs(np.arange(p)[:, None] - np.arange(p)[None, :])
    Gamma = np.moveaxis(gamma[idx], -1, 0)
    quad = np.einsum("iv,vij,jv->v", grad, np.linalg.inv(Gamma), grad) / df
    return 1.0 / (1.0 / df + 0.5 * quad)


def calibrated_variance(
    effect: np.ndarray, variance: np.ndarray, stat_type: str, dim: int, nu: np.ndarray, df: float
) -> np.ndarray:
    """Variance rescaled so that the statistic referred to ``df`` has the ``nu`` p-value.

    The pipeline refers every statistic to one (per-run) ``df``; to apply a
    per-voxel effective ``nu`` the statistic is mapped through the quantiles,
    ``t' = F_df^{-1}(F_nu(t))`` (likewise for F), and the variance is scaled by
    ``(t / t')^2`` (``F / F'``).  Voxels whose p value underflows keep ``df``.
    """
    import scipy.stats as sps  # only exact mode needs it; keeps `import daskglm` light

    var = np.maximum(variance, 1e-50)
    if stat_type == "t":
        stat = np.abs(effect) / np.sqrt(var)
        pval = sps.t.sf(stat, nu)
        mapped = sps.t.isf(pval, df)
        ratio2 = np.where((stat > 1e-8) & (pval > 1e-290), (stat / np.where(mapped > 0, mapped, 1.0)) ** 2, 1.0)
        return variance * ratio2
    stat = np.sum(np.atleast_2d(effect) ** 2, axis=0) / dim / var
    pval = sps.f.sf(stat, dim, nu)
    mapped = sps.f.isf(pval, dim, df)
    ratio = np.where((stat > 1e-8) & (pval > 1e-290), stat / np.where(mapped > 0, mapped, 1.0), 1.0)
    return variance * ratio
