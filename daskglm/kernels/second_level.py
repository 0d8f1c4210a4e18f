"""Second-level statistics for one voxel block: OLS as nilearn, and mixed effects.

OLS (nilearn's ``run_glm(noise_model="ols")`` on ``Y = (subjects, voxels)``)::

    β = pinv(X) Y,   σ² = ‖Y − Xβ‖² / (n − rank X),   cov(β) = pinv(X) pinv(X)ᵀ σ²

and the contrast maps follow :func:`daskglm.kernels.contrast.contrast_block`
with the single covariance table ``pinv(X) pinv(X)ᵀ``.

Mixed effects (FSL FLAME1-like).  Each subject's effect is
``y_i = x_iᵀβ + e_i`` with ``e_i ~ N(0, σ²_g + v_i)``: ``v_i`` is the known
first-level variance of that subject's effect and ``σ²_g`` the unknown
between-subject variance of the voxel.  ``σ²_g ≥ 0`` maximises the restricted
(REML) likelihood::

    ℓ_R(σ²_g) = −½ [Σ log w_i⁻¹ + log|Xᵀ W X| + rᵀ W r],  W = diag(1 / (σ²_g + v_i))

found per voxel by Fisher scoring (score ``−½ [tr P − ‖P y‖²]``, information
``½ tr(P P)``, ``P = W − W X A⁻¹ Xᵀ W``, ``A = XᵀWX``; all traces are sums
over p × p matrices, never n × n) with steps kept non-negative.  Then
``β = A⁻¹ XᵀW y`` and ``var(cβ) = c A⁻¹ cᵀ``; t (and F) statistics use
``n − rank X`` degrees of freedom, as FLAME1 does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["OLSDesign", "ols_design", "ols_block", "reml_between_variance", "mixed_contrast_block",
           "ols_contrast_outputs", "mixed_contrast_outputs", "MIXED_EXTRA_ROWS"]

#: The row a mixed-effects contrast packs after ``z`` (:class:`daskglm.kernels.contrast.ContrastLayout`).
MIXED_EXTRA_ROWS = ("between_variance",)

#: Fisher-scoring iterations and relative tolerance of the REML search.
REML_MAX_ITER = 50
REML_TOL = 1e-8


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
    return np.einsum("np,nv,nq->vpq", X, w ** power, X)


def _gls(Y: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A⁻¹ (V, p, p) and β (p, V) of the weighted fit."""
    A = _weighted_terms(X, w, 1)
    A_inv = np.linalg.pinv(A)
    xwy = np.einsum("np,nv->vp", X, w * Y)
    beta = np.einsum("vpq,vq->pv", A_inv, xwy)
    return A_inv, beta


def _reml_step(Y, X, Vw, s2):
    """Fisher-scoring step of σ²_g for every voxel (and the current A⁻¹, β)."""
    w = 1.0 / (s2[None] + Vw)
    A_inv, beta = _gls(Y, X, w)
    r = Y - X @ beta
    B2 = np.einsum("vpq,vqr->vpr", A_inv, _weighted_terms(X, w, 2))
    tr_p = w.sum(0) - np.einsum("vpp->v", B2)
    py2 = np.einsum("nv,nv->v", w * r, w * r)
    B3 = np.einsum("vpq,vqp->v", A_inv, _weighted_terms(X, w, 3))
    tr_pp = (w ** 2).sum(0) - 2 * B3 + np.einsum("vpq,vqp->v", B2, B2)
    score = -0.5 * (tr_p - py2)
    info = 0.5 * np.maximum(tr_pp, 1e-300)
    return score / info, A_inv, beta


def reml_between_variance(Y: np.ndarray, Vw: np.ndarray, X: np.ndarray) -> np.ndarray:
    """REML estimate of the between-subject variance per voxel.

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
    design = OLSDesign(X)
    _, ols_var = ols_block(Y, design)
    s2 = np.maximum(np.nan_to_num(ols_var) - Vw.mean(0), 0.0)  # moment start
    scale = np.maximum(np.nan_to_num(ols_var), 1e-12)
    active = np.ones(Y.shape[1], dtype=bool)
    for _ in range(REML_MAX_ITER):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        step, _, _ = _reml_step(Y[:, idx], X, Vw[:, idx] + 1e-12 * scale[idx], s2[idx])
        new = np.maximum(s2[idx] + step, 0.0)
        done = np.abs(new - s2[idx]) <= REML_TOL * (scale[idx] + new)
        s2[idx] = new
        active[idx[done]] = False
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
    """
    Y = np.asarray(Y, dtype=np.float64)
    Vw = np.maximum(np.asarray(Vw, dtype=np.float64), 0.0)
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
