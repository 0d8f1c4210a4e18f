"""Contrasts, statistics and fixed effects on arrays (pure numpy/scipy).

Everything follows ``nilearn.glm.contrasts`` 0.14.1:

- t contrast: ``effect = c beta``, ``variance = (c G c^T) sigma^2`` with
  ``G = pinv(WX) pinv(WX)^T`` of the voxel's whitening.
- F contrast: nilearn reports the whitened effect
  ``w = sqrtm(inv(C G C^T)) C beta`` and ``variance = sigma^2``; then
  ``F = ||w||^2 / (q max(sigma^2, 1e-50))``.
- multi-run fixed effects: the per-run contrasts are summed (effects,
  variances, dofs) and scaled by ``1 / R`` (effects) and ``1 / R^2``
  (variances); dof stays the sum.
- z scores come from the p value computed both ways (sf and cdf), each
  clipped to ``[1e-300, 1 - 1e-16]``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as spl
import scipy.special as sps

from .errors import ContrastError

__all__ = [
    "OUTPUT_TYPES",
    "ContrastError",
    "ContrastStatistics",
    "expression_to_contrast_vector",
    "as_contrast_matrix",
    "pad_contrast",
    "contrast_kind",
    "contrast_block",
    "fixed_effect_sum",
    "z_score",
    "fixed_effects_params",
]

OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")
DEF_TINY = 1e-50
DEF_DOFMAX = 1e10



def expression_to_contrast_vector(expression: str, columns: list[str]) -> np.ndarray:
    """Turn an expression over design column names into a contrast vector.

    Same semantics as nilearn: a bare column name selects it, otherwise the
    expression is evaluated with :meth:`pandas.DataFrame.eval` over an identity
    matrix whose columns are the design's.
    """
    columns = list(columns)
    if expression in columns:
        vec = np.zeros(len(columns))
        vec[columns.index(expression)] = 1.0
        return vec
    eye = pd.DataFrame(np.eye(len(columns)), columns=columns)
    try:
        vec = eye.eval(expression, engine="python")
    except Exception as err:  # pandas raises many types here
        names = _unknown_names(expression, columns)
        hint = f" Unknown names: {names}." if names else f" ({type(err).__name__}: {err})"
        raise ContrastError(
            f"The contrast expression {expression!r} is not valid.{hint} "
            f"Available design columns are: {[str(c) for c in columns]}"
        ) from err
    try:
        vec = np.asarray(vec, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ContrastError(
            f"The contrast expression {expression!r} does not evaluate to numeric weights."
        ) from err
    if vec.shape != (len(columns),):
        raise ContrastError(
            f"The contrast expression {expression!r} does not give one weight per design "
            f"column (got shape {vec.shape}). Available design columns are: "
            f"{[str(c) for c in columns]}"
        )
    if not np.all(np.isfinite(vec)):
        raise ContrastError(f"The contrast expression {expression!r} gives non-finite weights {vec}.")
    return vec


def _unknown_names(expression: str, columns: list) -> list[str]:
    """Identifiers of ``expression`` that are not design columns (columns may hold '-', ' ')."""
    rest = expression
    for col in sorted((str(c) for c in columns), key=len, reverse=True):
        if col:
            rest = re.sub(rf"(?<!\w){re.escape(col)}(?!\w)", " ", rest)
    return sorted(set(re.findall(r"[A-Za-z_]\w*", rest)))


def as_contrast_matrix(con, columns: list[str]) -> np.ndarray:
    """A contrast definition (vector, matrix or expression) as a float array.

    Parameters
    ----------
    con : str, sequence or ndarray
        An expression over ``columns``, or 1-D (t) / 2-D (F) weights.
    columns : list
        The design's column names.

    Returns
    -------
    ndarray of float64, shape (k,) or (q, k)
        Length checks against the design happen in :func:`pad_contrast`.

    Raises
    ------
    ContrastError
        Non-numeric, empty, not 1-D/2-D, or non-finite weights; invalid expressions.
    """
    if isinstance(con, str):
        return expression_to_contrast_vector(con, columns)
    arr = _checked_array(con)
    if not np.all(np.isfinite(arr)):
        raise ContrastError(f"Contrast {_short_repr(con)} contains NaN or infinite values.")
    return arr


def _checked_array(con) -> np.ndarray:
    """``con`` as a non-empty 1-D or 2-D numeric array, or a ContrastError."""
    try:
        arr = np.asarray(con, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ContrastError(f"Contrast {_short_repr(con)} is not numeric: {err}") from err
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ContrastError(f"A contrast must be a non-empty 1-D or 2-D array, got shape {arr.shape}.")
    return arr


def _short_repr(obj, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 5] + " ...)"


def contrast_kind(con: np.ndarray, stat_type: str | None) -> tuple[str, int]:
    """nilearn's rule: 1-D (or one row) is t unless told otherwise, 2-D is F.

    Parameters
    ----------
    con : ndarray (p,) or (q, p)
    stat_type : {None, 't', 'F'}

    Returns
    -------
    (str, int)
        ``('t' or 'F', number of contrast rows)``; a multi-row t becomes F.
    """
    con = _checked_array(con)
    dim = con.shape[0] if con.ndim == 2 else 1
    if stat_type is None:
        stat_type = "t" if dim == 1 else "F"
    if stat_type not in ("t", "F"):
        raise ContrastError(f"stat_type must be 't', 'F' or None, got {stat_type!r}.")
    if stat_type == "t" and dim > 1:
        stat_type = "F"  # nilearn converts multi-row t contrasts to F
    return stat_type, dim


def pad_contrast(con: np.ndarray, n_regressors: int, stat_type: str) -> np.ndarray:
    """Zero-pad a short contrast with nilearn's warning; reject a long one.

    Parameters
    ----------
    con : ndarray (p,) or (q, p)
    n_regressors : int
        Number of design columns P.
    stat_type : {'t', 'F'}

    Returns
    -------
    ndarray of shape (P,) or (q, P)

    Raises
    ------
    ContrastError
        If the contrast is not a non-empty 1-D/2-D array, or is longer than P.
    """
    con = _checked_array(con)
    if isinstance(n_regressors, bool) or not isinstance(n_regressors, (int, np.integer)) \
            or n_regressors < 1:
        raise ValueError(f"n_regressors must be a positive integer, got {n_regressors!r}.")
    if stat_type not in ("t", "F"):
        raise ContrastError(f"stat_type must be 't' or 'F', got {stat_type!r}.")
    n_cols = con.shape[-1]
    if n_cols > n_regressors:
        what = "t contrasts should be of length" if stat_type == "t" else "F contrasts should have"
        raise ContrastError(
            f"{what} P={n_regressors} (the number of design columns), "
            f"but it has length {n_cols}."
        )
    if n_cols < n_regressors:
        if stat_type == "t":
            msg = (
                f"t contrasts should be of length P={n_regressors}, but it has length "
                f"{n_cols}. The rest of the contrast was padded with zeros."
            )
        else:
            msg = (
                f"F contrasts should have {n_regressors} columns, but it has only "
                f"{n_cols}. The rest of the contrast was padded with zeros."
            )
        warnings.warn(msg, UserWarning, stacklevel=4)
        pad = [(0, 0)] * (con.ndim - 1) + [(0, n_regressors - n_cols)]
        con = np.pad(con, pad)
    return con


def contrast_block(
    beta: np.ndarray,
    sigma2: np.ndarray,
    cov_index: np.ndarray,
    cov_table: np.ndarray,
    con: np.ndarray,
    stat_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Effect and variance of one run's contrast for a block of voxels.

    Parameters
    ----------
    beta : ndarray (p, V)
    sigma2 : ndarray (V,)
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
        var_table = ccov[:, 0, 0]
        return cbeta[0], var_table[cov_index] * sigma2
    # nilearn's whitened F effect, one matrix square root per table entry
    used = np.unique(cov_index)
    root = np.zeros_like(ccov)
    for k in used:
        root[k] = np.real(spl.sqrtm(np.linalg.inv(ccov[k])))
    effect = np.einsum("vij,jv->iv", root[cov_index], cbeta)
    return effect, np.asarray(sigma2, dtype=np.float64)


def fixed_effect_sum(
    effects: list[np.ndarray], variances: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """nilearn's multi-run combination: ``(sum c) / R`` and ``(sum v) / R^2``."""
    n = len(effects)
    return sum(effects) * (1.0 / n), sum(variances) * (1.0 / n) ** 2


@dataclass
class ContrastStatistics:
    """Maps derived from an effect and its variance (nilearn's ``Contrast``)."""

    effect: np.ndarray
    variance: np.ndarray
    dof: float
    stat_type: str
    dim: int

    def effect_size(self) -> np.ndarray:
        return self.effect

    def effect_variance(self) -> np.ndarray:
        return self.variance

    def stat(self) -> np.ndarray:
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
        """
        if self.stat_type == "t":
            return sps.stdtr(self._dof(), -stat), sps.stdtr(self._dof(), stat)
        return sps.fdtrc(self.dim, self._dof(), stat), sps.fdtr(self.dim, self._dof(), stat)

    def p_value(self) -> np.ndarray:
        return self.sf_cdf(self.stat())[0]

    def z_score(self) -> np.ndarray:
        return z_score(*self.sf_cdf(self.stat()))

    def output(self, output_type: str) -> np.ndarray:
        return getattr(self, output_type)()


def z_score(p_value: np.ndarray, one_minus_p: np.ndarray | None = None) -> np.ndarray:
    """nilearn's ``z_score``: isf of the p value, or ppf of 1 - p where z < 0."""
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

    Returns ``(contrast, variance, stat, z_score)``.
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
    return effect, variance, stats.stat(), stats.z_score()


def contrast_outputs(
    effect: np.ndarray, variance: np.ndarray, dof: float, stat_type: str, dim: int
) -> np.ndarray:
    """All five maps of a contrast packed as rows ``[effect (q), variance, stat, p, z]``."""
    stats = ContrastStatistics(effect, variance, dof, stat_type, dim)
    stat = stats.stat()
    p_value, one_minus_p = stats.sf_cdf(stat)
    z = z_score(p_value, one_minus_p)
    return np.concatenate([np.atleast_2d(effect), variance[None], stat[None], p_value[None], z[None]])
