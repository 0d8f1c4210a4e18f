"""Single-trial betas (LSA, LSS) of every trial from one run's LSA statistics (pure numpy).

Every single-trial design of a run is a linear map of its LSA design
``X`` (one column per trial and HRF basis function, then drifts and
confounds): ``X_m = X T_m``.  So each model's statistics are the LSA
statistics mapped by ``T_m``: ``X_m'y = T_m'(X'y)``, the symmetric lag sums
``xy_sym`` likewise, and ``y'y``, the ``y`` lag sums, ``head`` and ``tail``
are shared.  Every quantity of nilearn's fit of model ``m`` (OLS, the lag-1
correlation of its own OLS residuals, its 0.01 bin, the whitened refit and
the covariance of its betas) then follows from the formulas of
:mod:`daskglm.kernels.glm` / :mod:`daskglm.kernels.gram` applied to the mapped
statistics: the data are read once whatever the number of trials.

``T_m`` is never formed whole.  The LSA rows are extended once per block by
the *group regressors* (the columns of a condition, or of all trials,
summed), so every model uses a few extended rows ``R`` mixed by a small
matrix: its design is ``R[:, rows_m] W_m`` (:class:`TrialModels`):

- ``lsa``: one model, the LSA design itself;
- ``lss`` (nilearn's recipe, "LSS-N"): for trial ``i`` of condition ``c``,
  ``[x_i, sum_c - x_i, sum_c' (c' != c), nuisance]``; the ``sum_c - x_i``
  column is left out when trial ``i`` is its condition's only trial;
- ``lss1`` (Mumford et al. 2012): ``[x_i, sum_all - x_i, nuisance]``.

Per trial and voxel the cost is that of one small GLM with ``q`` columns
(``q`` = basis functions x (1 + groups) + nuisance): ``O(q^2)`` for the solve
and the residual autocorrelation, plus, per voxel block, one ``q x q``
eigendecomposition per AR(1) bin present.  Memory: the block's statistics
(``O(P V)``, ``P`` the LSA columns) and the ``(2 n_trials, V)`` output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskglm.kernels.ar import BIN_VALUES, OLS_BIN, ar1_bin_index, quantize_ar
from daskglm.kernels.contrast import contrast_outputs, unpack_contrast_outputs
from daskglm.kernels.fit import FitOptions, constant_voxels, scaled_stats
from daskglm.kernels.glm import (
    GRAM_COND_LIMIT,
    DesignTables,
    fit_whitened_table,
    ols_fit,
    residual_autocovariance,
    whitened_cross,
    whitened_gram_inverse,
    yule_walker,
)
from daskglm.kernels.gram import GramTables, bias_corrected_ar, stack_gram, whitened_fit
from daskglm.kernels.sufficient_stats import RunStats

__all__ = [
    "METHODS",
    "TrialModels",
    "group_sums",
    "trial_models",
    "fitted_trial_models",
    "TrialPlan",
    "trial_betas_block",
    "trial_statistic",
]

#: Single-trial recipes: one LSA model, or one LSS model per trial.
METHODS = ("lsa", "lss", "lss1")


@dataclass(frozen=True)
class TrialModels:
    """The single-trial models of one run, as maps of the extended LSA rows.

    The extended rows are the ``P`` LSA columns, then the group regressors
    (``k`` per group; :attr:`group_matrix` holds them as combinations of LSA
    columns).

    Attributes
    ----------
    group_matrix : ndarray (G k, P)
        Group regressors as combinations of the LSA columns (sums of the
        group's trial columns, or nilearn's orthogonalized sums for HRF
        derivatives).
    rows : list of ndarray (r_m,) of int
        The extended rows model ``m`` uses.
    weights : list of ndarray (r_m, q_m)
        Model ``m``'s design is ``R[:, rows[m]] @ weights[m]`` (``T_m`` restricted
        to its rows).
    targets : list of ndarray of int
        Per model, the trials it estimates (all trials for LSA, one for LSS).
    target_columns : list of ndarray of int
        Per model, the column of each target's (first basis) beta.
    """

    group_matrix: np.ndarray
    rows: list
    weights: list
    targets: list
    target_columns: list

    @property
    def n_trials(self) -> int:
        return int(sum(len(t) for t in self.targets))

    def extend(self, rows: np.ndarray) -> np.ndarray:
        """LSA rows ``(..., P, V)`` -> extended rows ``(..., P + G k, V)``."""
        return np.concatenate([rows, np.matmul(self.group_matrix, rows)], axis=-2)

    def columns(self, extended: np.ndarray, m: int) -> np.ndarray:
        """Model ``m``'s rows ``(..., q_m, V)`` from extended rows ``(..., R, V)``: ``T_m' R``."""
        return np.matmul(self.weights[m].T, np.take(extended, self.rows[m], axis=-2))

    def design(self, X: np.ndarray, m: int) -> np.ndarray:
        """Model ``m``'s design ``(n, q_m)`` from the LSA design ``X (n, P)``."""
        return self.columns(self.extend(X.T), m).T


def _selection(plus: np.ndarray, minus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows, weights`` of the columns ``R[plus] - R[minus]`` (minus ``-1``: none)."""
    rows = np.unique(np.concatenate([plus, minus[minus >= 0]]))
    weights = np.zeros((len(rows), len(plus)))
    weights[np.searchsorted(rows, plus), np.arange(len(plus))] = 1.0
    has = minus >= 0
    weights[np.searchsorted(rows, minus[has]), np.flatnonzero(has)] = -1.0
    return rows, weights


def group_sums(trial_columns: np.ndarray, groups: np.ndarray, n_columns: int) -> np.ndarray:
    """Group regressors that are plain sums of the group's trial columns, ``(G k, P)``."""
    n_trials, k = trial_columns.shape
    n_groups = int(groups.max()) + 1 if n_trials else 0
    matrix = np.zeros((n_groups * k, n_columns))
    for trial, g in enumerate(groups):
        matrix[g * k + np.arange(k), trial_columns[trial]] = 1.0
    return matrix


def trial_models(
    trial_columns: np.ndarray, groups: np.ndarray, nuisance: np.ndarray, n_columns: int, method: str
) -> TrialModels:
    """The models of ``method`` for a run's LSA design when conditions add up (one HRF, or FIR).

    Parameters
    ----------
    trial_columns : ndarray (n_trials, k) of int
        LSA columns of each trial (one per HRF basis function, the main one first).
    groups : ndarray (n_trials,) of int
        Condition of each trial (``0 .. G-1``); ignored by ``lsa`` and ``lss1``.
    nuisance : ndarray of int
        The other LSA columns (drifts, confounds, constant).
    n_columns : int
        ``P``, columns of the LSA design.
    method : {'lsa', 'lss', 'lss1'}

    Returns
    -------
    TrialModels
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    trial_columns = np.asarray(trial_columns, dtype=int)
    n_trials, k = trial_columns.shape
    groups = np.zeros(n_trials, dtype=int) if method == "lss1" else np.asarray(groups, dtype=int)
    group_matrix = group_sums(trial_columns, groups, n_columns)
    n_groups = group_matrix.shape[0] // max(k, 1)
    nuisance = np.asarray(nuisance, dtype=int)
    none = np.full(len(nuisance), -1)
    if method == "lsa":
        plus = np.concatenate([trial_columns.ravel(), nuisance])
        rows, weights = _selection(plus, np.full(len(plus), -1))
        return TrialModels(group_matrix, [rows], [weights], [np.arange(n_trials)], [np.arange(n_trials) * k])
    sizes = np.bincount(groups, minlength=n_groups)
    all_rows, all_weights = [], []
    for trial, g in enumerate(groups):
        own = trial_columns[trial]
        p_cols, m_cols = [own], [np.full(k, -1)]
        for other in range(n_groups):
            if other == g and sizes[g] == 1:
                continue  # the target was its condition's only trial: no column left
            p_cols.append(n_columns + other * k + np.arange(k))
            m_cols.append(own if other == g else np.full(k, -1))
        rows, weights = _selection(np.concatenate(p_cols + [nuisance]), np.concatenate(m_cols + [none]))
        all_rows.append(rows)
        all_weights.append(weights)
    return TrialModels(group_matrix, all_rows, all_weights, [np.array([t]) for t in range(n_trials)],
                       [np.array([0])] * n_trials)


def fitted_trial_models(
    X: np.ndarray, trial_columns: np.ndarray, nuisance: np.ndarray, group_designs: list,
    group_members: list, designs: list, target_columns: list,
) -> TrialModels:
    """Models whose designs are given (e.g. nilearn's orthogonalized HRF derivatives), mapped exactly.

    Each given design must lie in the span of its rows of the extended LSA
    design; ``T_m`` is then the least-squares solution (exact, checked).

    Parameters
    ----------
    X : ndarray (n, P)
        The LSA design on all scans (before censoring).
    trial_columns : ndarray (n_trials, k) of int
    nuisance : ndarray of int
    group_designs : list of ndarray (n, k)
        Each group's regressors (e.g. the condition's columns of nilearn's design).
    group_members : list of ndarray of int
        The trials of each group.
    designs : list of ndarray (n, q_m)
        Each LSS model's design (all scans); empty for LSA.
    target_columns : list of int
        The target's main column in each design.

    Returns
    -------
    TrialModels
    """
    n_columns = X.shape[1]
    k = trial_columns.shape[1]
    group_matrix = np.zeros((len(group_designs) * k, n_columns))
    for g, (design, members) in enumerate(zip(group_designs, group_members)):
        cols = trial_columns[members].ravel()
        group_matrix[g * k : (g + 1) * k, cols] = _exact_lstsq(X[:, cols], design).T
    extended = np.concatenate([X, X @ group_matrix.T], axis=1)
    group_rows = n_columns + np.arange(group_matrix.shape[0])
    all_rows, all_weights = [], []
    for trial, design in enumerate(designs):
        rows = np.concatenate([trial_columns[trial], group_rows, nuisance])
        all_rows.append(rows)
        all_weights.append(_exact_lstsq(extended[:, rows], design))
    n_trials = len(trial_columns)
    return TrialModels(group_matrix, all_rows, all_weights, [np.array([t]) for t in range(n_trials)],
                       [np.array([c]) for c in target_columns])


def _exact_lstsq(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``W`` with ``A W = B``, checked to be exact (B in the span of A)."""
    W = np.linalg.lstsq(A, B, rcond=None)[0]
    error = np.abs(A @ W - B).max(initial=0.0)
    if error > 1e-8 * max(np.abs(B).max(initial=0.0), 1.0):
        raise ValueError(f"A single-trial design is not a map of the LSA design (error {error:.2g}).")
    return W


class TrialPlan:
    """Design-only tables of every model of a run (computed once, shared by all voxel blocks).

    Parameters
    ----------
    X : ndarray (n, P)
        The run's LSA design.
    models : TrialModels
    options : FitOptions

    Attributes
    ----------
    lsa_tables : DesignTables
        Of the LSA design (for the mean scaling of the statistics).
    tables : list of DesignTables
        One per model.
    gram_tables : list of GramTables or None
        One per model for AR(1) and per-voxel AR(p) fits (the bins' Gram matrices).
    dof : ndarray (n_trials,)
        Residual degrees of freedom of each trial's model (``n - rank``).
    """

    def __init__(self, X: np.ndarray, models: TrialModels, options: FitOptions):
        X = np.asarray(X, dtype=np.float64)
        self.models = models
        self.options = options
        self.n_scans = X.shape[0]
        n_lags = options.n_lags
        self.lsa_tables = DesignTables(X, n_lags)
        designs = [models.design(X, m) for m in range(len(models.rows))]
        self.tables = [DesignTables(Xm, n_lags) for Xm in designs]
        self.gram_tables = None
        if options.ar_order >= 1:
            order = options.ar_order
            self.gram_tables = [GramTables(Xm, order, bias=options.exact) for Xm in designs]
        self.dof = np.empty(models.n_trials)
        for m, trials in enumerate(models.targets):
            self.dof[trials] = self.n_scans - self.tables[m].rank


def _bin_inverses(X: np.ndarray, rho: np.ndarray, grams: np.ndarray) -> np.ndarray:
    """``pinv(WX) pinv(WX)^T`` of a model for the AR(1) bins ``rho``, as FirstLevelModel's table.

    A plain inverse where the Gram is surely well conditioned (1-norm condition
    below ``GRAM_COND_LIMIT / q``, so the 2-norm one is below the limit); else
    FirstLevelModel's route: the Gram's eigendecomposition below
    ``GRAM_COND_LIMIT``, nilearn's SVD of ``WX`` above it
    (:func:`~daskglm.kernels.glm.whitened_gram_inverse`).  An inverse or pinv of
    an ill-conditioned Gram loses ``cond(WX)^2``: betas were off by ~50 % with
    motion confounds.
    """
    q = grams.shape[-1]
    try:
        inverse = np.linalg.inv(grams)
        norm = np.abs(grams).sum(axis=1).max(axis=1) * np.abs(inverse).sum(axis=1).max(axis=1)
        doubtful = ~(np.isfinite(norm) & (norm < GRAM_COND_LIMIT / q))
    except np.linalg.LinAlgError:
        inverse, doubtful = np.empty_like(grams), np.ones(len(grams), dtype=bool)
    for k in np.flatnonzero(doubtful):
        eigval, eigvec = np.linalg.eigh(grams[k])
        if eigval[0] > 0 and eigval[-1] / eigval[0] < GRAM_COND_LIMIT:
            inverse[k] = (eigvec / eigval) @ eigvec.T
        else:
            inverse[k] = whitened_gram_inverse(X, rho[k : k + 1])
    return inverse


def _fit_binned(stats: RunStats, tables: DesignTables, gram_tables, options: FitOptions, constant):
    """One model's nilearn fit (OLS or binned AR(1)): beta, dispersion, per-voxel covariance rows.

    Returns ``beta (q, V)``, ``dispersion (V,)``, ``table (n_used, q, q)`` and
    ``position (V,)``, the table entry of each voxel.
    """
    n, q = tables.n_scans, tables.n_regressors
    if options.ar_order == 0:
        index = np.full(stats.n_voxels, OLS_BIN)
    else:
        beta_ols, _ = ols_fit(stats, tables)
        autocov = residual_autocovariance(stats, tables, beta_ols, 0.0)
        index = np.where(constant, OLS_BIN, ar1_bin_index(yule_walker(autocov[:2], n)[0]))
    used, position = np.unique(index, return_inverse=True)
    rho = BIN_VALUES[used]
    table = np.empty((len(used), q, q))
    ols = used == OLS_BIN
    table[ols] = tables.pinv_cov  # nilearn's pinv(X) pinv(X)^T
    if (~ols).any():
        table[~ols] = _bin_inverses(tables.X, rho[~ols], stack_gram(rho[~ols][None], gram_tables.gram_stack, False))
    xty, yty = whitened_cross(stats, tables.X, BIN_VALUES[index][None])
    beta, dispersion = fit_whitened_table(xty, yty, table, position, q, n)
    return beta, dispersion, table, position


def _fit_per_voxel(stats: RunStats, tables: DesignTables, gram_tables: GramTables, options: FitOptions,
                   constant):
    """One model's per-voxel AR(p) fit (binned ``arN`` or exact whitening), as ``fit_block``'s stack path.

    Returns ``beta (q, V)``, ``dispersion (V,)`` and ``gram (V, q, q)``, the whitened Gram.
    """
    order, n = options.ar_order, tables.n_scans
    beta_ols, _ = ols_fit(stats, tables)
    if options.exact:
        autocov = residual_autocovariance(stats, tables, beta_ols, 0.0)[: order + 1]
        rho = bias_corrected_ar(autocov, gram_tables.bias)
    else:
        rho = quantize_ar(yule_walker(residual_autocovariance(stats, tables, beta_ols, 0.0)[: order + 1], n))
    rho = np.where(constant, 0.0, rho)
    beta, dispersion = whitened_fit(stats, gram_tables, rho, options.exact)
    return beta, dispersion, stack_gram(rho, gram_tables.gram_stack, options.exact)


def _per_voxel_cov_diag(gram: np.ndarray, cols: np.ndarray, full_rank: bool) -> np.ndarray:
    """``(gram^{-1})[c, c]`` of each voxel's whitened Gram for the columns ``cols``, shape ``(len(cols), V)``.

    As FirstLevelModel's contrasts (:func:`daskglm.kernels.contrast._contrast_cov`): a solve when the
    model's design has full rank, else the Gram's (hermitian) pseudo-inverse.
    """
    if not full_rank:
        return np.linalg.pinv(gram, hermitian=True)[:, cols, cols].T
    unit = np.zeros((gram.shape[-1], len(cols)))
    unit[cols, np.arange(len(cols))] = 1.0
    diag = np.linalg.solve(gram, np.broadcast_to(unit, gram.shape[:1] + unit.shape))
    return diag[:, cols, np.arange(len(cols))].T


def trial_betas_block(stats: RunStats, plan: TrialPlan, global_mean: float | None = None) -> np.ndarray:
    """Every trial's beta and its variance for one voxel block.

    Parameters
    ----------
    stats : RunStats
        Unscaled LSA statistics of the block (``n_lags = plan.options.n_lags``).
    plan : TrialPlan
    global_mean : float, optional
        For ``signal_scaling=(0, 1)``.

    Returns
    -------
    ndarray (2 n_trials, V)
        Rows ``0 .. n_trials - 1``: betas (the first basis function's);
        then their variances (``c (X~'X~)^+ c' sigma^2``, nilearn's
        ``effect_variance`` of the trial's contrast).
    """
    options, models = plan.options, plan.models
    constant = constant_voxels(stats)
    stats = scaled_stats(stats, plan.lsa_tables, options.signal_scaling, global_mean)
    xy, xy_sym = models.extend(stats.xy), models.extend(stats.xy_sym)
    out = np.zeros((2 * models.n_trials, stats.n_voxels))
    for m, (trials, cols) in enumerate(zip(models.targets, models.target_columns)):
        model_stats = RunStats(stats.n_scans, stats.sy, stats.yy, stats.yy_lag, models.columns(xy, m),
                               models.columns(xy_sym, m), stats.head, stats.tail)
        tables = plan.tables[m]
        grams = plan.gram_tables[m] if plan.gram_tables is not None else None
        if options.uses_stack:
            beta, dispersion, gram = _fit_per_voxel(model_stats, tables, grams, options, constant)
            cov_diag = _per_voxel_cov_diag(gram, cols, grams.rank == tables.n_regressors)
        else:
            beta, dispersion, table, position = _fit_binned(model_stats, tables, grams, options, constant)
            cov_diag = table[:, cols, cols].T[:, position]
        dispersion = np.maximum(dispersion, 0.0) if tables.n_scans > tables.n_regressors else dispersion
        out[trials] = np.where(constant, 0.0, beta[cols])
        out[models.n_trials + trials] = np.where(constant, 0.0, cov_diag * dispersion)
    return out


def trial_statistic(beta: np.ndarray, variance: np.ndarray, dof: float, output_type: str) -> np.ndarray:
    """A trial's map of ``output_type`` from its beta and variance, as nilearn's t contrast.

    Parameters
    ----------
    beta, variance : ndarray (V,)
    dof : float
        Residual degrees of freedom of the trial's model.
    output_type : {'effect_size', 'effect_variance', 'stat', 'p_value', 'z_score'}

    Returns
    -------
    ndarray (V,)
    """
    if output_type == "effect_size":
        return beta
    if output_type == "effect_variance":
        return variance
    maps = unpack_contrast_outputs(contrast_outputs(beta, variance, dof, "t", 1), 1)
    return maps[output_type]
