"""Second-level statistics for one voxel block: OLS as nilearn, and mixed effects.

OLS (nilearn's ``run_glm(noise_model="ols")`` on ``Y = (subjects, voxels)``)::

    β = pinv(X) Y,   σ² = ‖Y − Xβ‖² / (n − rank X),   cov(β) = pinv(X) pinv(X)ᵀ σ²

and the contrast maps follow :func:`daskglm.kernels.contrast.contrast_block`
with the single covariance table ``pinv(X) pinv(X)ᵀ``.

Mixed effects (FSL FLAME1-like).  Each subject's effect is
``y_i = x_iᵀβ + e_i`` with ``e_i ~ N(0, σ²_g + v_i)``: ``v_i`` is the known
first-level variance of that subject's effect and ``σ²_g`` the unknown
between-subject variance of the voxel.  The estimator is REML (not ML):
``σ²_g`` is the global maximiser over the closed half-line ``σ²_g ≥ 0`` of
the restricted log-likelihood (the likelihood of the n − r error contrasts,
r = rank X; β profiled out by GLS)::

    ℓ_R(σ²_g) = −½ [Σ log(σ²_g + v_i) + log|Xᵀ W X| + yᵀ P y],
    W = diag(1 / (σ²_g + v_i)),  P = W − W X (XᵀWX)⁻¹ Xᵀ W

(X replaced by an orthonormal basis of its column space, which changes ℓ_R
by a constant only).  The boundary is part of the domain: the estimate is 0
when ℓ_R is highest there (slope ``−½ [tr P − ‖P y‖²]`` ≤ 0 at 0).  The
search (:func:`reml_between_variance`) is vectorised over voxels: ℓ_R on a
geometric grid over ``[0, s²_OLS + max v]`` (the maximum cannot lie beyond),
then safeguarded Newton on the slope inside the bracket of the best grid
point; all traces are sums over p × p matrices, never n × n.  Then
``β = A⁻¹ XᵀW y`` and ``var(cβ) = c A⁻¹ cᵀ`` (``A = XᵀWX``) at that σ²_g; t
(and F) statistics use ``n − rank X`` degrees of freedom, as FLAME1 does.
Checked against a per-voxel scipy REML solve (tests/group/test_mixed_effects_reml.py).
"""

from __future__ import annotations

import numpy as np

__all__ = ["OLSDesign", "ols_design", "ols_block", "reml_between_variance", "mixed_contrast_block",
           "ols_contrast_outputs", "mixed_contrast_outputs", "MIXED_EXTRA_ROWS"]

#: The row a mixed-effects contrast packs after ``z`` (:class:`daskglm.kernels.contrast.ContrastLayout`).
MIXED_EXTRA_ROWS = ("between_variance",)

#: Grid points of the REML search, its safeguarded-Newton iterations and relative tolerance.
REML_GRID = 32
REML_MAX_ITER = 100
REML_TOL = 1e-12


class OLSDesign:
    """What an OLS fit needs from the design only.

    Attributes
    ----------
    X : ndarray (n, p)
    pinv : ndarray (p, n)
    cov : ndarray (1, p, p)
        ``pinv(X) pinv(X)ᵀ`` as a one-entry covariance table.
    df : int
        ``n − rank(X)`` (nilearn's rank tolerance).
    """

    def __init__(self, X: np.ndarray):
        from daskglm.kernels.glm import design_rank

        self.X = np.asarray(X, dtype=np.float64)
        self.pinv = np.linalg.pinv(self.X)
        self.cov = (self.pinv @ self.pinv.T)[None]
        self.df = int(self.X.shape[0] - design_rank(self.X))


def ols_design(X: np.ndarray) -> OLSDesign:
    """The :class:`OLSDesign` of ``X``."""
    return OLSDesign(X)


def ols_block(Y: np.ndarray, design: OLSDesign) -> tuple[np.ndarray, np.ndarray]:
    """β (p, V) and residual variance (V,) of a block ``Y (n, V)``."""
    Y = np.asarray(Y, dtype=np.float64)
    beta = design.pinv @ Y
    resid = Y - design.X @ beta
    sse = np.einsum("nv,nv->v", resid, resid)
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = sse / design.df
    return beta, dispersion


def _weighted_terms(X: np.ndarray, w: np.ndarray, power: int) -> np.ndarray:
    """``Xᵀ diag(w^power) X`` per voxel: (V, p, p) for ``w (n, V)``."""
    n, p = X.shape
    outer = (X[:, :, None] * X[:, None, :]).reshape(n, p * p)
    return ((w if power == 1 else w ** power).T @ outer).reshape(-1, p, p)


def _gls(Y: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A⁻¹ (V, p, p) and β (p, V) of the weighted fit."""
    A = _weighted_terms(X, w, 1)
    A_inv = np.linalg.pinv(A)
    xwy = (w * Y).T @ X
    beta = np.einsum("vpq,vq->pv", A_inv, xwy)
    return A_inv, beta


def _column_basis(X: np.ndarray) -> np.ndarray:
    """Orthonormal basis (n, rank X) of the column space of ``X``.

    ℓ_R depends on the design only through its column space (up to a constant),
    so the search runs on a full-rank basis whose ``XᵀWX`` is invertible.
    """
    from daskglm.kernels.glm import design_rank

    U = np.linalg.svd(np.asarray(X, dtype=np.float64), full_matrices=False)[0]
    return U[:, :design_rank(X)]


def _reml_terms(Y: np.ndarray, Q: np.ndarray, Vw: np.ndarray, s2: np.ndarray, want: str,
                Y2: np.ndarray | None = None):
    """ℓ_R (``want="loglik"``), or its first and second derivatives in σ²_g (``want="slope"``).

    ``Q (n, r)`` is a full-rank basis of the design, ``s2 (V,)`` the trial σ²_g,
    ``Y2`` the squares of ``Y`` (computed once for the whole grid).
    With ``A = QᵀWQ``, ``P = W − W Q A⁻¹ Qᵀ W`` and ``u = P y = W r``::

        ℓ_R  = −½ [Σ log(σ²_g + v_i) + log|A| + yᵀ P y]
        ℓ_R' = −½ [tr P − uᵀu]
        ℓ_R″ = ½ tr(PP) − uᵀ P u
    """
    d = s2[None] + Vw
    w = 1.0 / d
    A = _weighted_terms(Q, w, 1)
    A_inv = np.linalg.inv(A)
    qwy = (w * Y).T @ Q
    if want == "loglik":  # yᵀPy = yᵀWy − (QᵀWy)ᵀ A⁻¹ (QᵀWy): no residual array
        Y2 = Y * Y if Y2 is None else Y2
        ypy = np.einsum("nv,nv->v", Y2, w) - np.einsum("vp,vpq,vq->v", qwy, A_inv, qwy)
        return -0.5 * (np.log(d).sum(0) + np.linalg.slogdet(A)[1] + ypy)
    u = w * (Y - Q @ np.einsum("vpq,vq->pv", A_inv, qwy))
    B2 = np.einsum("vpq,vqr->vpr", A_inv, _weighted_terms(Q, w, 2))
    tr_p = w.sum(0) - np.einsum("vpp->v", B2)
    tr_pp = ((w ** 2).sum(0) - 2 * np.einsum("vpq,vqp->v", A_inv, _weighted_terms(Q, w, 3))
             + np.einsum("vpq,vqp->v", B2, B2))
    qwu = (w * u).T @ Q
    upu = np.einsum("nv,nv->v", w * u, u) - np.einsum("vp,vpq,vq->v", qwu, A_inv, qwu)
    slope = -0.5 * (tr_p - np.einsum("nv,nv->v", u, u))
    return slope, 0.5 * tr_pp - upu


def reml_between_variance(Y: np.ndarray, Vw: np.ndarray, X: np.ndarray) -> np.ndarray:
    """REML estimate of the between-subject variance per voxel (the global maximum over σ²_g ≥ 0).

    The maximum lies in ``[0, U]``, ``U = s²_OLS + max v_i`` (beyond it the
    slope of ℓ_R is negative: ``tr P ≥ (n − r)/(σ²_g + max v)`` and
    ``‖Py‖² ≤ RSS_OLS/(σ²_g + min v)²``).  ℓ_R is evaluated on a grid of
    :data:`REML_GRID` points geometric in ``σ²_g + min v`` (the scale on which
    it varies), which picks the best local maximum; the grid neighbours of the
    best point bracket it, and Newton steps on the slope (bisection when a step
    leaves the bracket or the curvature is not negative) refine it to a relative
    :data:`REML_TOL`.  The estimate is 0 when the slope at 0 is ≤ 0 there.

    Parameters
    ----------
    Y : ndarray (n, V)
        Subjects' effects.
    Vw : ndarray (n, V)
        Their known (first-level) variances, ≥ 0.
    X : ndarray (n, p)
        Group design.

    Returns
    -------
    ndarray (V,)
        σ²_g ≥ 0.
    """
    Y = np.asarray(Y, dtype=np.float64)
    Vw = np.maximum(np.asarray(Vw, dtype=np.float64), 0.0)
    Q = _column_basis(X)
    n_vox = Y.shape[1]
    if Q.shape[1] >= Y.shape[0] or n_vox == 0:
        return np.zeros(n_vox)
    _, ols_var = ols_block(Y, OLSDesign(X))
    ols_var = np.nan_to_num(ols_var)
    Vw = Vw + 1e-12 * np.maximum(ols_var, 1e-12)[None]  # v_i = 0 stays finite (the OLS case)
    Y = Y - Q @ (Q.T @ Y)  # ℓ_R sees y only through P y = P (y − Xb): OLS residuals, no cancellation
    upper = ols_var + Vw.max(0)
    floor = np.maximum(Vw.min(0), 1e-9 * upper)
    ratio = (1.0 + upper / floor) ** (1.0 / (REML_GRID - 1))
    grid = floor[None] * (ratio[None] ** np.arange(REML_GRID)[:, None] - 1.0)  # (K, V), grid[0] = 0
    grid[-1] = upper
    Y2 = Y * Y
    loglik = np.stack([_reml_terms(Y, Q, Vw, g, "loglik", Y2) for g in grid])
    best = np.argmax(np.nan_to_num(loglik, nan=-np.inf), axis=0)
    cols = np.arange(n_vox)
    lo = grid[np.maximum(best - 1, 0), cols]
    hi = grid[np.minimum(best + 1, REML_GRID - 1), cols]
    s2 = grid[best, cols]
    at_zero = best == 0
    if at_zero.any():  # the boundary: a maximum at 0 when the slope there is not positive
        slope0, _ = _reml_terms(Y[:, at_zero], Q, Vw[:, at_zero], np.zeros(at_zero.sum()), "slope")
        boundary = np.zeros(n_vox, dtype=bool)
        boundary[at_zero] = ~(slope0 > 0)
        s2[at_zero] = 0.5 * hi[at_zero]
    else:
        boundary = np.zeros(n_vox, dtype=bool)
    active = ~boundary & np.isfinite(loglik).all(0)
    for _ in range(REML_MAX_ITER):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        cur = s2[idx]
        slope, curvature = _reml_terms(Y[:, idx], Q, Vw[:, idx], cur, "slope")
        rising = slope > 0
        lo[idx] = np.where(rising, cur, lo[idx])
        hi[idx] = np.where(rising, hi[idx], cur)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = cur - slope / curvature
        inside = (curvature < 0) & (newton >= lo[idx]) & (newton <= hi[idx])
        new = np.where(inside, newton, 0.5 * (lo[idx] + hi[idx]))
        tol = REML_TOL * (new + floor[idx])
        done = (np.abs(new - cur) <= tol) | (hi[idx] - lo[idx] <= tol) | (slope == 0)
        s2[idx] = new
        active[idx[done]] = False
    s2[boundary] = 0.0
    return s2


def mixed_contrast_block(
    Y: np.ndarray, Vw: np.ndarray, X: np.ndarray, con: np.ndarray, stat_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixed-effects contrast for one voxel block.

    Parameters
    ----------
    Y, Vw : ndarray (n, V)
        Effects and their first-level variances.
    X : ndarray (n, p)
    con : ndarray (p,) or (q, p)
    stat_type : {'t', 'F'}

    Returns
    -------
    effect : ndarray (V,) for t; for F, (q, V) whitened ``Lᵀ C β`` with
        ``L Lᵀ = (C A⁻¹ Cᵀ)⁻¹``, so that ``F = ‖effect‖² / (q · variance)``
    variance : ndarray (V,)
        ``c A⁻¹ cᵀ`` for t, 1 for F.
    sigma2_between : ndarray (V,)

    Voxels where a subject's effect or variance is not finite (outside that
    subject's first-level mask) get NaN outputs, as OLS gives them.
    """
    Y = np.asarray(Y, dtype=np.float64)
    Vw = np.asarray(Vw, dtype=np.float64)
    finite = np.isfinite(Y).all(0) & np.isfinite(Vw).all(0)
    if not finite.all():
        return _nan_outside(finite, mixed_contrast_block(Y[:, finite], Vw[:, finite], X, con, stat_type))
    Vw = np.maximum(Vw, 0.0)
    s2 = reml_between_variance(Y, Vw, X)
    ols_var = np.nan_to_num(ols_block(Y, OLSDesign(X))[1])
    w = 1.0 / (s2[None] + Vw + 1e-12 * np.maximum(ols_var, 1e-12)[None])
    A_inv, beta = _gls(Y, X, w)
    C = np.atleast_2d(con)
    cbeta = C @ beta
    ccov = np.einsum("ip,vpq,jq->vij", C, A_inv, C)
    if stat_type == "t":
        return cbeta[0], ccov[:, 0, 0], s2
    L = np.linalg.cholesky(np.linalg.inv(ccov))  # (V, q, q)
    effect = np.einsum("vji,jv->iv", L, cbeta)
    return effect, np.ones(Y.shape[1]), s2


def _nan_outside(finite: np.ndarray, outputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Outputs computed on the ``finite`` voxels, scattered back with NaN elsewhere."""
    full = []
    for values in outputs:
        filled = np.full(values.shape[:-1] + finite.shape, np.nan)
        filled[..., finite] = values
        full.append(filled)
    return tuple(full)


# ------------------------------------------------- the dask tasks (numpy only)
def ols_contrast_outputs(Y: np.ndarray, design: OLSDesign, con: np.ndarray, stat_type: str, dim: int) -> np.ndarray:
    """Packed ``[effect (q), variance, stat, p, z]`` of an OLS group contrast on a block."""
    from daskglm.kernels.contrast import contrast_block, contrast_outputs

    beta, dispersion = ols_block(Y, design)
    index = np.zeros(Y.shape[1], dtype=np.intp)
    effect, variance = contrast_block(beta, dispersion, index, design.cov, con, stat_type)
    return contrast_outputs(effect, variance, design.df, stat_type, dim)


def mixed_contrast_outputs(Y: np.ndarray, Vw: np.ndarray, X: np.ndarray, con: np.ndarray, stat_type: str,
                           dim: int, df: int) -> np.ndarray:
    """Packed ``[effect (q), variance, stat, p, z, σ²_between]`` of a mixed-effects contrast on a block."""
    from daskglm.kernels.contrast import contrast_outputs

    effect, variance, s2 = mixed_contrast_block(Y, Vw, X, con, stat_type)
    return contrast_outputs(effect, variance, df, stat_type, dim, s2)
