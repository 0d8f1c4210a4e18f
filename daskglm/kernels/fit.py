"""The per-voxel-block GLM pipeline: scaled statistics -> OLS -> AR fit -> packed rows.

:func:`fit_block` is what the orchestration layer maps over voxel blocks.  Its
output is packed in one float64 array so a single blockwise call carries it;
:class:`ResultLayout` is the one place that knows the rows:
``[beta (q), dispersion, ar_coef (max(order, 1)), cov_index, signal_mean,
acf_before (k), acf_after (k)]``, where ``signal_mean`` is each voxel's time
mean of the signal as it enters the GLM (smoothed, before nilearn's mean
scaling) and ``k = diagnostic_lags`` (no diagnostic rows when ``k = 0``).
:class:`FitOptions` is the recipe every layer reads: noise model, AR order,
whitening, signal scaling, lags of the statistics and the kind of covariance
table.

Three whitening paths:

- binned ``ols``/``ar1``: nilearn's (0.01 bins, precomputed ``cov_table`` of
  :func:`~daskglm.kernels.gram.binned_gram_inverses`);
- binned ``arN`` (N >= 2): per-voxel Yule-Walker, each coefficient truncated
  on the 0.01 grid (:func:`~daskglm.kernels.ar.quantize_ar`), nilearn's
  whitening, per-voxel Gram from :class:`~daskglm.kernels.gram.GramTables`;
- ``whitening="exact"``: bias-corrected per-voxel AR(p), exact whitening
  (:mod:`daskglm.kernels.gram`).

A voxel whose series is constant to machine precision gets exact outputs
(:func:`constant_voxels`): ``beta = level pinv(X) 1``, dispersion 0, rho 0.

n <= p, as nilearn 0.14.1: ``beta = pinv(WX) WY`` and
``dispersion = SSE / (n - p)``, so ``inf`` for n = p and < 0 for n < p (a t
contrast's variance ``c G c^T sigma^2`` is then NaN, an F contrast keeps the
negative dispersion and floors it at 1e-50 in its statistic).  When
``rank X = n`` the fit is exact: the residuals are zero (nilearn's are
rounding noise, which sets its AR bin), so rho = 0 and SSE = 0 (not the
cancellation noise of ``y'y - b'X'y``); ``pinv(WX) WY = pinv(X) Y`` for any
rho, so t effects are the OLS min-norm ones either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskglm.kernels.ar import BIN_VALUES, N_BINS, OLS_BIN, ar1_bin_index, quantize_ar
from daskglm.kernels.glm import (
    DesignTables,
    fit_whitened_table,
    ols_fit,
    residual_autocovariance,
    residual_sum,
    whitened_cross,
    yule_walker,
)
from daskglm.kernels.gram import bias_corrected_ar, residual_acf, whitened_fit, whitened_residual_acf
from daskglm.kernels.scaling import affine_transform_stats, scales_statistics, scaling_coefficients
from daskglm.kernels.sufficient_stats import RunStats

__all__ = [
    "MAX_AR_ORDER",
    "NOISE_MODELS",
    "FitOptions",
    "ResultLayout",
    "scaled_stats",
    "residual_total_block",
    "fit_block",
    "constant_voxels",
]

#: Highest AR order of a noise model (``"ar1"`` .. ``"ar8"``): what the model accepts, the
#: command line offers and a store may declare.
MAX_AR_ORDER = 8
#: The noise models, in order: ``"ols"``, then ``"ar1"`` .. ``"ar{MAX_AR_ORDER}"``.
NOISE_MODELS = ("ols",) + tuple(f"ar{k}" for k in range(1, MAX_AR_ORDER + 1))


@dataclass(frozen=True)
class ResultLayout:
    """Rows of a packed fit result (the output of :func:`fit_block`).

    Parameters
    ----------
    n_regressors : int
        Design columns ``q``.
    ar_order : int
        AR order ``p`` (0 for OLS); ``max(p, 1)`` coefficient rows are stored.
    diagnostic_lags : int, default=0
        ``k``: rows of ``acf_before`` and of ``acf_after``.
    """

    n_regressors: int
    ar_order: int
    diagnostic_lags: int = 0

    def _fields(self) -> list[tuple[str, int | None]]:
        """``(name, rows)`` in order; ``None`` is one row, unpacked without its axis."""
        fields = [
            ("beta", self.n_regressors),
            ("dispersion", None),
            ("ar_coef", max(self.ar_order, 1)),
            ("cov_index", None),
            ("signal_mean", None),
        ]
        if self.diagnostic_lags:
            fields += [("acf_before", self.diagnostic_lags), ("acf_after", self.diagnostic_lags)]
        return fields

    @property
    def n_rows(self) -> int:
        """Length of the packed array's first axis."""
        return sum(1 if rows is None else rows for _, rows in self._fields())

    def pack(
        self,
        beta: np.ndarray,
        dispersion: np.ndarray,
        ar_coef: np.ndarray,
        cov_index: np.ndarray,
        signal_mean: np.ndarray,
        acf_before: np.ndarray | None = None,
        acf_after: np.ndarray | None = None,
    ) -> np.ndarray:
        """Stack one block's results into the packed float64 array.

        Parameters
        ----------
        beta : ndarray (q, V)
        dispersion : ndarray (V,)
        ar_coef : ndarray (max(p, 1), V)
        cov_index : ndarray (V,)
            Row of the covariance table (stored as float64).
        signal_mean : ndarray (V,)
        acf_before, acf_after : ndarray (k, V), optional
            Needed when ``diagnostic_lags > 0``.

        Returns
        -------
        ndarray, shape (n_rows, V)
        """
        parts = [beta, dispersion[None], ar_coef, cov_index[None].astype(np.float64), signal_mean[None]]
        if self.diagnostic_lags:
            parts += [acf_before, acf_after]
        packed = np.concatenate(parts)
        if packed.shape[0] != self.n_rows:
            raise ValueError(f"packed {packed.shape[0]} rows, the layout has {self.n_rows}")
        return packed

    def unpack(self, packed) -> dict:
        """Split a packed result into named arrays, by slicing only (numpy or dask).

        Returns
        -------
        dict
            ``beta`` (q, V), ``dispersion`` (V,), ``ar_coef`` (max(p, 1), V),
            ``cov_index`` (V,), ``signal_mean`` (V,) and, when
            ``diagnostic_lags = k > 0``, ``acf_before`` and ``acf_after`` (k, V).
        """
        out, start = {}, 0
        for name, rows in self._fields():
            if rows is None:
                out[name] = packed[start]
                start += 1
            else:
                out[name] = packed[start : start + rows]
                start += rows
        return out


@dataclass(frozen=True)
class FitOptions:
    """The fit recipe: what every layer needs to know about the model.

    Parameters
    ----------
    noise_model : {'ols', 'ar1', 'ar2', ...}
    signal_scaling : {0, 1, (0, 1), False}
        See :mod:`daskglm.kernels.scaling`.
    whitening : {'binned', 'exact'}
    diagnostic_lags : int
        Residual autocorrelation lags (1..k) to report before and after
        whitening; the statistics then need ``n_lags = max(order, 1) + k``.
    """

    noise_model: str
    signal_scaling: object
    whitening: str = "binned"
    diagnostic_lags: int = 0

    def __post_init__(self):
        object.__setattr__(self, "diagnostic_lags", int(self.diagnostic_lags))
        self.ar_order  # noqa: B018 - reject a malformed noise model now

    @property
    def ar_order(self) -> int:
        """AR order ``p`` of the noise model (0 for ``'ols'``)."""
        return 0 if self.noise_model == "ols" else int(self.noise_model[2:])

    @property
    def uses_stack(self) -> bool:
        """Per-voxel Gram matrices (:class:`~daskglm.kernels.gram.GramTables`) instead of AR(1) bins."""
        return self.ar_order >= 2 or (self.whitening == "exact" and self.ar_order >= 1)

    @property
    def exact(self) -> bool:
        """Exact whitening (bias-corrected AR, scaled first samples)."""
        return self.whitening == "exact" and self.ar_order >= 1

    @property
    def n_lags(self) -> int:
        """Lags of the sufficient statistics: ``max(p, 1) + diagnostic_lags``."""
        return max(self.ar_order, 1) + self.diagnostic_lags

    @property
    def cov_kind(self) -> str:
        """How contrasts get each voxel's covariance: ``'exact'``, ``'stack'`` or ``'table'``."""
        return "exact" if self.exact else ("stack" if self.uses_stack else "table")

    @property
    def n_cov_tables(self) -> int:
        """Length of the covariance table's first axis.

        ``(p + 1)^2 + p^2`` Gram matrices for the stack kinds
        (:attr:`~daskglm.kernels.gram.GramTables.gram_stack`), else one per AR(1) bin (``N_BINS``).
        """
        if self.uses_stack:
            p = self.ar_order
            return (p + 1) ** 2 + p**2
        return N_BINS

    def layout(self, n_regressors: int) -> ResultLayout:
        """The rows of :func:`fit_block`'s packed output.

        Parameters
        ----------
        n_regressors : int
            Design columns.

        Returns
        -------
        ResultLayout
        """
        return ResultLayout(n_regressors, self.ar_order, self.diagnostic_lags)

    def __dask_tokenize__(self):
        return (
            "FitOptions", self.noise_model, repr(self.signal_scaling), self.whitening,
            self.diagnostic_lags,
        )


def scaled_stats(
    stats: RunStats, tables: DesignTables, signal_scaling, global_mean: float | None = None
) -> RunStats:
    """Apply nilearn's mean scaling to the statistics, if it is asked for.

    Parameters
    ----------
    stats : RunStats
        Statistics of the unscaled signal.
    tables : DesignTables
    signal_scaling : {0, 1, (0, 1), False}
        ``0`` and ``(0, 1)`` are applied here; ``1`` was applied per volume
        while streaming.
    global_mean : float, optional
        Mean over voxels and scans, for ``(0, 1)``.

    Returns
    -------
    RunStats
    """
    if not scales_statistics(signal_scaling):
        return stats
    a, b = scaling_coefficients(stats.sy / stats.n_scans, signal_scaling, global_mean)
    return affine_transform_stats(stats, tables.X, a, b)


def residual_total_block(
    stats: RunStats, tables: DesignTables, signal_scaling, global_mean=None
) -> np.ndarray:
    """Per-voxel sum over time of the OLS residuals (for nilearn's YW centring).

    Parameters
    ----------
    stats : RunStats
        Unscaled statistics of a voxel block.
    tables : DesignTables
    signal_scaling : {0, 1, (0, 1), False}
    global_mean : float, optional
        For ``signal_scaling=(0, 1)``.

    Returns
    -------
    ndarray (V,)
    """
    stats = scaled_stats(stats, tables, signal_scaling, global_mean)
    beta, _ = ols_fit(stats, tables)
    return residual_sum(stats, tables.X, beta)


def fit_block(
    stats: RunStats,
    tables: DesignTables,
    cov_table,
    options: FitOptions,
    residual_mean: float = 0.0,
    global_mean: float | None = None,
) -> np.ndarray:
    """Fit one voxel block; returns the packed result (:meth:`FitOptions.layout`).

    Parameters
    ----------
    stats : RunStats
        Unscaled statistics of the block, ``n_lags = options.n_lags``.
    tables : DesignTables
    cov_table : ndarray (N_BINS, q, q) or GramTables
        The AR(1) bin table for binned ``ols``/``ar1``; a
        :class:`~daskglm.kernels.gram.GramTables` when ``options.uses_stack``.
    options : FitOptions
    residual_mean : float
        nilearn's Yule-Walker centring (grand mean of the OLS residuals).
    global_mean : float, optional
        For ``signal_scaling=(0, 1)``.

    Returns
    -------
    ndarray, shape (n_rows, V)
    """
    layout = options.layout(tables.n_regressors)
    constant = constant_voxels(stats)
    signal_mean = stats.sy / stats.n_scans
    stats = scaled_stats(stats, tables, options.signal_scaling, global_mean)
    p, n = tables.n_regressors, tables.n_scans
    beta_ols, _ = ols_fit(stats, tables)
    exact_fit = tables.rank >= n  # rank X = n: the residuals are zero, any AR estimate is rounding noise
    if options.uses_stack:
        order = options.ar_order
        if exact_fit:
            rho = np.zeros((order, stats.n_voxels))
        elif options.exact:
            autocov = residual_autocovariance(stats, tables, beta_ols, 0.0)[: order + 1]
            rho = bias_corrected_ar(autocov, cov_table.bias)
        else:
            autocov = residual_autocovariance(stats, tables, beta_ols, residual_mean)
            rho = quantize_ar(yule_walker(autocov[: order + 1], n))
        beta, dispersion = whitened_fit(stats, cov_table, rho, options.exact)
        index = np.zeros(stats.n_voxels)
    else:
        if options.ar_order == 0 or exact_fit:
            rho = np.zeros((1, stats.n_voxels))
            index = np.full(stats.n_voxels, OLS_BIN)
        else:
            autocov = residual_autocovariance(stats, tables, beta_ols, residual_mean)
            raw = yule_walker(autocov[:2], n)[0]
            index = ar1_bin_index(raw)
            rho = BIN_VALUES[index][None, :]
        if constant.any():
            index = np.where(constant, OLS_BIN, index)
            rho = np.where(constant, 0.0, rho)
        xty, yty = whitened_cross(stats, tables.X, rho)
        beta, dispersion = fit_whitened_table(xty, yty, cov_table, index, p, n)
    if exact_fit:
        dispersion[:] = 0.0  # SSE = 0, not yᵀy − βᵀXᵀy's cancellation noise
    _quiet_constant_voxels(constant, stats, tables, beta, dispersion, rho)
    diagnostics = _diagnostics(stats, tables, beta_ols, beta, rho, options)
    return layout.pack(beta, dispersion, rho, index, signal_mean, *diagnostics)


def constant_voxels(stats: RunStats) -> np.ndarray:
    """Voxels whose (unscaled) series is constant to machine precision.

    Their least-squares quantities are pure rounding noise (SSE = y'y - b'X'y
    cancels to +-1e-12), which would turn into huge spurious statistics.

    Parameters
    ----------
    stats : RunStats

    Returns
    -------
    ndarray of bool, shape (V,)
        ``sum (y - mean)^2 <= 1e3 eps sum y^2``.
    """
    centred = stats.yy - stats.sy**2 / stats.n_scans
    return centred <= 1e3 * np.finfo(np.float64).eps * np.maximum(stats.yy, np.finfo(np.float64).tiny)


def _quiet_constant_voxels(constant, stats, tables, beta, dispersion, rho) -> None:
    """Give constant voxels exact, documented outputs, in place.

    The (scaled) series is c * 1, so beta = c pinv(X) 1 with its rounding
    noise removed, the residuals and the dispersion are 0 and rho is 0.  Any
    contrast not involving the constant then has effect 0, variance 0, stat 0
    and z 0, as nilearn gives for a constant voxel.
    """
    df = tables.n_scans - tables.n_regressors  # nilearn's OLSModel: SSE / (n - p), SSE >= 0
    if df > 0:
        np.maximum(dispersion, 0.0, out=dispersion)
    elif df == 0:
        dispersion[:] = np.inf  # no residual degrees of freedom: stat 0, z and p NaN, as nilearn
    else:  # n < p: nilearn's SSE / (n - p) < 0 (t variance and stat NaN, F variance < 0)
        rounding = np.finfo(np.float64).eps ** 2 * np.abs(stats.yy) / -df  # SSE is a sum of squares, > 0
        np.minimum(dispersion, -rounding, out=dispersion)
    if not constant.any():
        return
    ones_fit = np.linalg.pinv(tables.X) @ np.ones(tables.n_scans)
    ones_fit[np.abs(ones_fit) < 1e-9 * np.abs(ones_fit).max()] = 0.0
    level = stats.sy[constant] / stats.n_scans
    beta[:, constant] = np.outer(ones_fit, level)
    dispersion[constant] = 0.0
    rho[:, constant] = 0.0


def _diagnostics(stats, tables, beta_ols, beta, rho, options) -> tuple:
    """Residual autocorrelations before (OLS) and after whitening, or ``()`` if none asked."""
    k = options.diagnostic_lags
    if not k:
        return ()
    before = residual_acf(residual_autocovariance(stats, tables, beta_ols, 0.0), k)
    after = whitened_residual_acf(stats, tables.X, beta, rho, options.exact, k)
    return before, after
