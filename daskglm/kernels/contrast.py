"""Numeric contrasts on arrays of one voxel block (pure numpy/scipy).

Contrast *definitions* (expressions, padding, t/F kind) are parsed in
:mod:`daskglm.glm.contrasts`; this module turns a parsed contrast and a fit into
numbers.  Formulas, following ``nilearn.glm.contrasts`` 0.14.1 where nilearn
has them:

- **t contrast** (:func:`contrast_block`): ``effect = c beta`` and
  ``variance = (c G c^T) sigma^2`` with ``G = pinv(WX) pinv(WX)^T`` of the
  voxel's whitening (one table entry per AR(1) bin); ``t = effect /
  sqrt(max(variance, 1e-50))``.
- **F contrast**: nilearn reports the whitened effect
  ``w = sqrtm(inv(C G C^T)) C beta`` and ``variance = sigma^2``; then
  ``F = ||w||^2 / (q max(sigma^2, 1e-50))``.
- **per-voxel Gram** (:func:`stack_contrast_block`, binned ``arN`` and exact
  whitening): ``G_v = ((W_v X)^T (W_v X))^{-1}`` rebuilt from the stored AR
  coefficients and the design-only Gram stack
  (:func:`~daskglm.kernels.gram.stack_gram`); the F effect uses the symmetric
  inverse root from an eigendecomposition.
- **Satterthwaite df** (:func:`satterthwaite_df`), exact whitening: the
  variance estimate is a scaled chi-square with
  ``1 / nu = 1 / df + g^T Cov(rho_hat) g / 2``,
  ``g = d log(c G(rho)^{-1} c^T) / d rho`` (``log det / r`` for F),
  ``Cov(rho_hat) = Gamma_p(rho)^{-1} / df``; so ``nu = df`` when ``g = 0``.
  :func:`calibrated_variance` rescales the variance so that the statistic
  referred to ``df`` has the ``nu`` p value, ``t' = F_df^{-1}(F_nu(t))``.
- **multi-run fixed effects** (:func:`fixed_effect_sum`, as the model's
  ``compute_contrast``): effects and variances summed over the R runs and
  scaled by ``1 / R`` and ``1 / R^2``; dof is the sum.
- **compute_fixed_effects** (:func:`fixed_effects_params`): plain,
  ``effect = mean(c)``, ``variance = mean(v) / R``; precision weighted,
  ``variance = 1 / sum(1 / v)``, ``effect = variance sum(c / v)``; variances
  floored at 1e-16, dof the sum of the runs'.
- **p and z** (:class:`ContrastStatistics`, :func:`z_score`): ``p = sf(stat)``
  under t(dof) or F(q, dof) (dof capped at 1e10); ``z = isf(p)`` from the p
  value, or ``ppf(1 - p)`` from the CDF where that z is negative (both
  clipped to ``[1e-300, 1 - 1e-16]``), so neither tail underflows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as spl
import scipy.special as sps

from daskglm.kernels.ar import ar_autocovariance, toeplitz_stack
from daskglm.kernels.gram import stack_gram

__all__ = [
    "DEF_TINY",
    "DEF_DOFMAX",
    "contrast_block",
    "stack_contrast_block",
    "satterthwaite_df",
    "calibrated_variance",
    "fixed_effect_sum",
    "ContrastStatistics",
    "z_score",
    "fixed_effects_params",
    "CONTRAST_MAPS",
    "OUTPUT_TYPES",
    "ContrastLayout",
    "contrast_outputs",
    "unpack_contrast_outputs",
]

#: Floor of the variance in the statistic (nilearn's ``DEF_TINY``).
DEF_TINY = 1e-50
#: Cap of the degrees of freedom (nilearn's ``DEF_DOFMAX``).
DEF_DOFMAX = 1e10


# ------------------------------------------------------------ effect, variance
def contrast_block(
    beta: np.ndarray,
    dispersion: np.ndarray,
    cov_index: np.ndarray,
    cov_table: np.ndarray,
    con: np.ndarray,
    stat_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Effect and variance of one run's contrast for a block of voxels.

    Parameters
    ----------
    beta : ndarray (p, V)
    dispersion : ndarray (V,)
        Residual variance (nilearn's ``dispersion``).
    cov_index : ndarray (V,) of int
        Row of ``cov_table`` that holds each voxel's ``pinv(WX) pinv(WX)^T``.
    cov_table : ndarray (n_tables, p, p)
    con : ndarray (p,) or (q, p), already padded
    stat_type : {'t', 'F'}

    Returns
    -------
    effect : ndarray (V,) for t, (q, V) for F
    variance : ndarray (V,)
    """
    C = np.atleast_2d(con)
    cbeta = C @ beta
    ccov = np.einsum("ip,kpq,jq->kij", C, cov_table, C)  # (n_tables, q, q)
    if stat_type == "t":
        variance = ccov[:, 0, 0][cov_index] * dispersion
        return cbeta[0], np.where(variance < 0, np.nan, variance)  # nilearn: sd = sqrt(c G cᵀ σ²), var = sd²
    # nilearn's whitened F effect, one matrix square root per table entry
    used = np.unique(cov_index)
    root = np.zeros_like(ccov)
    for k in used:
        root[k] = np.real(spl.sqrtm(np.linalg.inv(ccov[k])))
    effect = np.einsum("vij,jv->iv", root[cov_index], cbeta)
    return effect, np.asarray(dispersion, dtype=np.float64)


def stack_contrast_block(
    beta: np.ndarray,
    dispersion: np.ndarray,
    ar_coef: np.ndarray,
    gram_stack: np.ndarray,
    con: np.ndarray,
    stat_type: str,
    exact: bool,
    df: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Effect and variance of a contrast with per-voxel whitened Gram matrices.

    The same outputs as :func:`contrast_block`, with
    ``G_v = ((W_v X)^T (W_v X))^{-1}`` rebuilt from the stored coefficients
    and the design-only :attr:`~daskglm.kernels.gram.GramTables.gram_stack`.

    Parameters
    ----------
    beta : ndarray (q, V)
    dispersion : ndarray (V,)
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
    dispersion = np.asarray(dispersion, dtype=np.float64)
    if stat_type == "t":
        effect, variance = cbeta[0], ccov[:, 0, 0] * dispersion
        variance = np.where(variance < 0, np.nan, variance)  # nilearn: sd = sqrt(c G cᵀ σ²), var = sd²
    else:
        evals, evecs = np.linalg.eigh(ccov)
        inv_root = np.einsum("vij,vj,vkj->vik", evecs, 1.0 / np.sqrt(evals), evecs)
        effect, variance = np.einsum("vij,jv->iv", inv_root, cbeta), dispersion
    if df is None or not exact or df <= 0:  # no residual df (n <= p): nothing to calibrate
        return effect, variance
    nu = satterthwaite_df(ar_coef, gram_stack, C, df, full_rank)
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
    full_rank: bool = True,
    step: float = 1e-4,
) -> np.ndarray:
    """Effective degrees of freedom of a contrast under estimated AR coefficients.

    The variance estimate ``v = sigma^2 c G(rho)^{-1} c^T`` is treated as a
    scaled chi-square whose relative variance adds the sampling variance of
    ``sigma^2`` (``2 / df``) and, by the delta method, that of the plug-in
    ``rho``:

        1 / nu = 1 / df + g^T Cov(rho_hat) g / 2,
        g = d log(c G(rho)^{-1} c^T) / d rho,   Cov(rho_hat) = Gamma_p(rho)^{-1} / df

    (the Yule-Walker asymptotic covariance).  For an F contrast ``g`` is the
    gradient of ``log det(C G^{-1} C^T) / r``.  ``g`` is computed by central
    differences over the design-only Gram stack.  When ``g = 0`` (e.g.
    ``rho = 0`` with a contrast whose variance is flat in ``rho``), ``nu = df``.

    Parameters
    ----------
    ar_coef : ndarray, shape (p, V)
        The voxels' AR coefficients (exact whitening).
    gram_stack : ndarray, shape ((p+1)^2 + p^2, q, q)
        :attr:`~daskglm.kernels.gram.GramTables.gram_stack`.
    con : ndarray, shape (q,) or (r, q)
    df : float
        The run's residual degrees of freedom.
    full_rank : bool, default=True
        Whether the design has full column rank (solve instead of pinv).
    step : float, default=1e-4
        Central-difference step in ``rho``.

    Returns
    -------
    ndarray, shape (V,)
        ``nu <= df``.
    """
    C = np.atleast_2d(con)
    p, n_vox = ar_coef.shape
    r = C.shape[0]

    def logvar(rho):
        cov = _contrast_cov(rho, gram_stack, C, True, full_rank)
        return np.linalg.slogdet(cov)[1] / r

    grad = np.empty((p, n_vox))
    for i in range(p):
        shift = np.zeros((p, 1))
        shift[i] = step
        grad[i] = (logvar(ar_coef + shift) - logvar(ar_coef - shift)) / (2 * step)
    Gamma = toeplitz_stack(ar_autocovariance(ar_coef, p - 1))  # (V, p, p)
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

    Parameters
    ----------
    effect : ndarray, shape (V,) for t, (r, V) for F
    variance : ndarray, shape (V,)
    stat_type : {'t', 'F'}
    dim : int
        Contrast rows ``r``.
    nu : ndarray, shape (V,)
        Effective degrees of freedom (:func:`satterthwaite_df`).
    df : float
        The degrees of freedom the statistic will be referred to.

    Returns
    -------
    ndarray, shape (V,)
        The rescaled variance.
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


# ---------------------------------------------------------------- statistics
def fixed_effect_sum(
    effects: list[np.ndarray], variances: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """nilearn's multi-run combination: ``(sum c) / R`` and ``(sum v) / R^2``.

    Parameters
    ----------
    effects, variances : list of ndarray
        The R runs' effects and variances (same shapes).

    Returns
    -------
    effect, variance : ndarray
    """
    n = len(effects)
    return sum(effects) * (1.0 / n), sum(variances) * (1.0 / n) ** 2


@dataclass
class ContrastStatistics:
    """Statistic and null distribution of an effect and its variance (nilearn's ``Contrast``).

    Parameters
    ----------
    effect : ndarray, shape (V,) for t, (q, V) for F
    variance : ndarray, shape (V,)
    dof : float
        Residual degrees of freedom (capped at :data:`DEF_DOFMAX`).
    stat_type : {'t', 'F'}
    dim : int
        Number of contrast rows ``q``.
    """

    effect: np.ndarray
    variance: np.ndarray
    dof: float
    stat_type: str
    dim: int

    def stat(self) -> np.ndarray:
        """The statistic: ``t = effect / sqrt(var)`` or ``F = ||effect||^2 / (q var)``.

        Returns
        -------
        ndarray, shape (V,)
            ``var`` is floored at :data:`DEF_TINY`.
        """
        var = np.maximum(self.variance, DEF_TINY)
        if self.stat_type == "F":
            return np.sum(self.effect**2, axis=0) / self.dim / var
        return self.effect / np.sqrt(var)

    def _dof(self) -> float:
        return min(self.dof, DEF_DOFMAX)

    def sf_cdf(self, stat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Survival function and CDF of the statistic under the null.

        ``scipy.special`` gives the same values as ``scipy.stats`` (``t.sf`` is
        ``stdtr(df, -x)``, ``f.sf`` is ``fdtrc``) without importing scipy.stats.

        Parameters
        ----------
        stat : ndarray
            :meth:`stat`.

        Returns
        -------
        sf, cdf : ndarray
            Under t(dof) or F(dim, dof), dof capped at :data:`DEF_DOFMAX`.  The CDF is
            computed where ``sf > 0.5`` (where :func:`z_score` uses it); elsewhere it is ``1 - sf``.
        """
        stat = np.asarray(stat, dtype=np.float64)
        if self.stat_type == "t":
            sf = sps.stdtr(self._dof(), -stat)
        else:
            sf = sps.fdtrc(self.dim, self._dof(), stat)
        # The CDF only matters where z < 0 (sf > 0.5, see z_score); elsewhere 1 - sf stands in.
        # Computed there with the same call as nilearn: the z map is unchanged, at ~3/4 of the cost.
        cdf = np.asarray(1.0 - sf)  # an array even for a 0-d statistic (masked assignment below)
        lower = np.clip(sf, 1.0e-300, 1.0 - 1.0e-16) > 0.5
        if np.any(lower):
            if self.stat_type == "t":
                cdf[lower] = sps.stdtr(self._dof(), stat[lower])
            else:
                cdf[lower] = sps.fdtr(self.dim, self._dof(), stat[lower])
        return sf, cdf


def z_score(p_value: np.ndarray, one_minus_p: np.ndarray | None = None) -> np.ndarray:
    """nilearn's ``z_score``: isf of the p value, or ppf of 1 - p where z < 0.

    Parameters
    ----------
    p_value : ndarray
        Survival function of the statistic.
    one_minus_p : ndarray, optional
        Its CDF, computed separately so that z stays accurate in the lower tail.

    Returns
    -------
    ndarray
        ``norm.isf(p)``, or ``norm.ppf(1 - p)`` where that is negative; both
        arguments clipped to ``[1e-300, 1 - 1e-16]``.
    """
    p_value = np.clip(p_value, 1.0e-300, 1.0 - 1.0e-16)
    z = -sps.ndtri(p_value)  # norm.isf
    if one_minus_p is None:
        return z
    one_minus_p = np.clip(one_minus_p, 1.0e-300, 1.0 - 1.0e-16)
    return np.where(z < 0, sps.ndtri(one_minus_p), z)


def fixed_effects_params(
    contrasts: np.ndarray,
    variances: np.ndarray,
    precision_weighted: bool,
    dofs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """nilearn's ``_compute_fixed_effects_params`` on (R, V) arrays.

    Parameters
    ----------
    contrasts : ndarray, shape (R, V) (or (R, q, V))
        Per-run effects.
    variances : ndarray, shape (R, V)
        Per-run variances (floored at 1e-16).
    precision_weighted : bool
        Inverse-variance weights instead of a plain mean.
    dofs : array-like, shape (R,)
        Per-run degrees of freedom; the statistic uses their sum.

    Returns
    -------
    contrast, variance, stat, z_score : ndarray
    """
    contrasts = np.asarray(contrasts, dtype=np.float64)
    variances = np.maximum(np.asarray(variances, dtype=np.float64), 1.0e-16)
    if precision_weighted:
        weights = 1.0 / variances
        variance = 1.0 / weights.sum(axis=0)
        effect = (contrasts * weights).sum(axis=0) * variance
    else:
        variance = variances.mean(axis=0) / len(variances)
        effect = contrasts.mean(axis=0)
    dim = effect.shape[0] if effect.ndim == 2 else 1
    stats = ContrastStatistics(effect, variance, float(np.sum(dofs)), "F" if dim > 1 else "t", dim)
    stat = stats.stat()
    return effect, variance, stat, z_score(*stats.sf_cdf(stat))


#: The maps a contrast gives, named and ordered as nilearn's ``output_type`` (``"all"`` returns them
#: in this order); the one definition of the names (``daskglm.glm.contrasts`` re-exports it).
OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")
#: The same maps in the order of their rows in :class:`ContrastLayout`: the effect and its variance,
#: then the statistic and its p-value, the z score last.
CONTRAST_MAPS = (*OUTPUT_TYPES[3:], *OUTPUT_TYPES[1:3], OUTPUT_TYPES[0])


@dataclass(frozen=True)
class ContrastLayout:
    """Rows of a contrast's packed maps: ``[effect (q), variance, stat, p, z, *extra]``.

    The one place that knows them: :func:`contrast_outputs` packs them, the
    dask graphs size their blocks with :attr:`n_rows` and the estimators
    split them with :meth:`unpack`.  One run's effect and variance alone are
    the first ``q + 1`` rows (:meth:`pack_effect_variance`,
    :meth:`split_effect_variance`).

    Parameters
    ----------
    q : int
        Effect rows: 1 for a t contrast, the contrast's rows for F.
    extra : tuple of str, default=()
        Names of the rows after ``z`` (mixed effects: ``("between_variance",)``).
    """

    q: int
    extra: tuple[str, ...] = ()

    @classmethod
    def for_contrast(cls, stat_type: str, dim: int, extra: tuple[str, ...] = ()) -> ContrastLayout:
        """The layout of a ``stat_type`` contrast of ``dim`` rows (``q = dim`` for F, 1 for t)."""
        return cls(dim if stat_type == "F" else 1, tuple(extra))

    @property
    def n_rows(self) -> int:
        """Length of the packed array's first axis."""
        return self.q + len(CONTRAST_MAPS) - 1 + len(self.extra)

    @property
    def n_effect_variance_rows(self) -> int:
        """Rows of one run's packed effect and variance (:meth:`pack_effect_variance`)."""
        return self.q + 1

    def row(self, name: str) -> int:
        """The row of a one-row map (``effect_variance`` .. ``z_score``) or of an extra row."""
        names = CONTRAST_MAPS[1:] + self.extra
        if name not in names:
            raise KeyError(f"{name!r} is not a one-row map of this layout ({', '.join(names)}).")
        return self.q + names.index(name)

    @staticmethod
    def pack_effect_variance(effect: np.ndarray, variance: np.ndarray) -> np.ndarray:
        """One block's effect (``(V,)`` or ``(q, V)``) and variance as rows ``[effect (q), variance]``."""
        return np.concatenate([np.atleast_2d(effect), variance[None]])

    def pack(self, effect: np.ndarray, variance: np.ndarray, *rows: np.ndarray) -> np.ndarray:
        """One block's maps as the packed rows.

        Parameters
        ----------
        effect : ndarray, shape (V,) or (q, V)
        variance : ndarray, shape (V,)
        *rows : ndarray, shape (V,)
            ``stat``, ``p_value``, ``z_score`` and the extra rows, in order.

        Returns
        -------
        ndarray, shape (n_rows, V)
        """
        packed = np.concatenate([self.pack_effect_variance(effect, variance), *(r[None] for r in rows)])
        if packed.shape[0] != self.n_rows:
            raise ValueError(f"packed {packed.shape[0]} rows, the layout has {self.n_rows}")
        return packed

    def _effect(self, packed, squeeze: bool | None):
        squeeze = self.q == 1 if squeeze is None else squeeze
        return packed[0] if squeeze else packed[: self.q]

    def split_effect_variance(self, packed, squeeze: bool | None = None) -> tuple:
        """``(effect, variance)`` of rows ``[effect (q), variance, ...]``, by slicing only (numpy or dask).

        ``squeeze``: the effect as ``(V,)`` (its first row) rather than
        ``(q, V)``; default: when ``q == 1``.
        """
        return self._effect(packed, squeeze), packed[self.q]

    def unpack(self, packed, squeeze: bool | None = None) -> dict:
        """Split packed maps by name, by slicing only (numpy or dask).

        Parameters
        ----------
        packed : array, shape (n_rows, V)
        squeeze : bool, optional
            ``effect_size`` as ``(V,)`` rather than ``(q, V)``; default: when
            ``q == 1`` (an F contrast of one row then gives ``(V,)`` too; pass
            ``stat_type != "F"`` to keep F effects 2-D as nilearn's second level).

        Returns
        -------
        dict
            :data:`CONTRAST_MAPS` (``effect_size`` ``(V,)`` or ``(q, V)``, the
            others ``(V,)``), then the extra rows by name.
        """
        out = {"effect_size": self._effect(packed, squeeze)}
        for name in CONTRAST_MAPS[1:] + self.extra:
            out[name] = packed[self.row(name)]
        return out


def contrast_outputs(
    effect: np.ndarray, variance: np.ndarray, dof: float, stat_type: str, dim: int, *extra: np.ndarray
) -> np.ndarray:
    """All five maps of a contrast packed as :class:`ContrastLayout` rows ``[effect (q), variance, stat, p, z]``.

    Parameters
    ----------
    effect : ndarray, shape (V,) for t, (q, V) for F
    variance : ndarray, shape (V,)
    dof : float
        Residual degrees of freedom (summed over runs).
    stat_type : {'t', 'F'}
    dim : int
        Contrast rows ``q``.
    *extra : ndarray, shape (V,)
        Rows packed after ``z`` (e.g. mixed effects' between-subject variance).

    Returns
    -------
    ndarray, shape (q + 4 + len(extra), V)
    """
    stats = ContrastStatistics(effect, variance, dof, stat_type, dim)
    stat = stats.stat()
    p_value, one_minus_p = stats.sf_cdf(stat)
    z = z_score(p_value, one_minus_p)
    layout = ContrastLayout(np.atleast_2d(effect).shape[0], tuple(f"extra_{i}" for i in range(len(extra))))
    return layout.pack(effect, variance, stat, p_value, z, *extra)


def unpack_contrast_outputs(packed, dim: int) -> dict:
    """Split :func:`contrast_outputs`' rows by map name: ``ContrastLayout(dim).unpack(packed)``.

    Parameters
    ----------
    packed : array, shape (dim + 4, V)
    dim : int
        Contrast rows ``q``.

    Returns
    -------
    dict
        ``effect_size`` (``(V,)`` for ``dim = 1``, else ``(q, V)``),
        ``effect_variance``, ``stat``, ``p_value``, ``z_score`` (each ``(V,)``).
    """
    return ContrastLayout(dim).unpack(packed)
