"""The per-voxel-block GLM pipeline: scaled statistics -> OLS -> AR fit.

:func:`fit_block` is what the orchestration layer maps over voxel blocks.  Its
output is packed in one float64 array so a single blockwise call carries it:
rows ``[beta (p), dispersion, ar_coef (order), cov_index, signal_mean, acf_before (k),
acf_after (k)]``; ``signal_mean`` is each voxel's time mean of the signal as it
enters the GLM (smoothed, before nilearn's mean scaling)
where ``k = options.diagnostic_lags`` (no diagnostic rows when ``k = 0``).

Three whitening paths:

- binned ``ols``/``ar1``: nilearn's (0.01 bins, precomputed ``cov_table``);
- binned ``arN`` (N >= 2): per-voxel Yule-Walker, each coefficient truncated
  on the 0.01 grid (:func:`~daskglm.kernels.exact.quantize_ar`), nilearn's
  whitening, per-voxel Gram from :class:`~daskglm.kernels.exact.ExactTables`;
- ``whitening="exact"``: bias-corrected per-voxel AR(p), exact whitening
  (:mod:`daskglm.kernels.exact`).
"""

from __future__ import annotations

import numpy as np

from .ar import BIN_VALUES, OLS_BIN, ar1_bin_index
from .exact import (
    ExactTables,
    bias_corrected_ar,
    quantize_ar,
    residual_acf,
    whitened_fit,
    whitened_residual_acf,
)
from .glm import (
    DesignTables,
    fit_whitened_table,
    ols_fit,
    residual_autocovariance,
    residual_sum,
    whitened_cross,
    yule_walker,
)
from .scaling import affine_transform_stats, mean_scaling_coefficients
from .stats import RunStats

__all__ = ["FitOptions", "scaled_stats", "residual_total_block", "fit_block", "packed_rows", "unpack", "ExactTables"]


class FitOptions:
    """What the block kernels need to know about the model.

    Parameters
    ----------
    noise_model : {'ols', 'ar1', 'ar2', ...}
    signal_scaling : {0, 1, (0, 1), False}
    global_scale : bool
        Unused, kept for compatibility.
    whitening : {'binned', 'exact'}
    diagnostic_lags : int
        Residual autocorrelation lags (1..k) to report before and after
        whitening; the statistics then need ``n_lags >= max(order, 1) + k``.
    """

    def __init__(
        self,
        noise_model: str,
        signal_scaling,
        global_scale: bool = False,
        whitening: str = "binned",
        diagnostic_lags: int = 0,
    ):
        self.noise_model = noise_model
        self.ar_order = 0 if noise_model == "ols" else int(noise_model[2:])
        self.signal_scaling = signal_scaling
        self.whitening = whitening
        self.diagnostic_lags = int(diagnostic_lags)

    @property
    def uses_stack(self) -> bool:
        """Per-voxel Gram matrices from :class:`ExactTables` instead of AR(1) bins."""
        return self.ar_order >= 2 or (self.whitening == "exact" and self.ar_order >= 1)

    @property
    def exact(self) -> bool:
        return self.whitening == "exact" and self.ar_order >= 1

    def __dask_tokenize__(self):
        return (
            "FitOptions", self.noise_model, repr(self.signal_scaling), self.whitening,
            self.diagnostic_lags,
        )


def scaled_stats(
    stats: RunStats, tables: DesignTables, signal_scaling, global_mean: float | None = None
) -> RunStats:
    """Apply nilearn's mean scaling to the statistics, if it is asked for."""
    if signal_scaling is False or signal_scaling is None:
        return stats
    if signal_scaling == 0:
        a, b, _ = mean_scaling_coefficients(stats)
    elif signal_scaling == (0, 1):
        scale = max(float(global_mean), 1.0)
        a = np.full(stats.n_voxels, 100.0 / scale)
        b = np.full(stats.n_voxels, -100.0)
    else:  # 1: already applied volume by volume while streaming
        return stats
    return affine_transform_stats(stats, tables.X, a, b)


def residual_total_block(
    stats: RunStats, tables: DesignTables, signal_scaling, global_mean=None
) -> np.ndarray:
    """Per-voxel sum over time of the OLS residuals (for nilearn's YW centring)."""
    stats = scaled_stats(stats, tables, signal_scaling, global_mean)
    beta, _ = ols_fit(stats, tables)
    return residual_sum(stats, tables.X, beta)


def packed_rows(n_regressors: int, ar_order: int, diagnostic_lags: int = 0) -> int:
    return n_regressors + 3 + max(ar_order, 1) + 2 * diagnostic_lags


def fit_block(
    stats: RunStats,
    tables: DesignTables,
    cov_table: np.ndarray,
    options: FitOptions,
    residual_mean: float = 0.0,
    global_mean: float | None = None,
) -> np.ndarray:
    """Fit one voxel block; returns the packed result (see module docstring).

    ``cov_table`` is the AR(1) bin table for binned ``ols``/``ar1`` and an
    :class:`ExactTables` when ``options.uses_stack``.
    """
    constant = constant_voxels(stats)
    signal_mean = stats.sy / stats.n_scans
    stats = scaled_stats(stats, tables, options.signal_scaling, global_mean)
    p, n = tables.n_regressors, tables.n_scans
    beta_ols, _ = ols_fit(stats, tables)
    if options.uses_stack:
        order = options.ar_order
        if options.exact:
            autocov = residual_autocovariance(stats, tables, beta_ols, 0.0)[: order + 1]
            rho = bias_corrected_ar(autocov, cov_table.bias)
        else:
            autocov = residual_autocovariance(stats, tables, beta_ols, residual_mean)
            rho = quantize_ar(yule_walker(autocov[: order + 1], n))
        beta, dispersion = whitened_fit(stats, cov_table, rho, options.exact)
        index = np.zeros(stats.n_voxels)
        _quiet_constant_voxels(constant, stats, tables, beta, dispersion, rho)
        packed = np.concatenate([beta, dispersion[None], rho, index[None], signal_mean[None]])
        return _with_diagnostics(packed, stats, tables, beta_ols, beta, rho, options)
    if options.ar_order == 0:
        rho = np.zeros((1, stats.n_voxels))
        index = np.full(stats.n_voxels, OLS_BIN)
    elif options.ar_order == 1:
        autocov = residual_autocovariance(stats, tables, beta_ols, residual_mean)
        raw = yule_walker(autocov[:2], n)[0]
        index = ar1_bin_index(raw)
        rho = BIN_VALUES[index][None, :]
    if constant.any():
        index = np.where(constant, OLS_BIN, index)
        rho = np.where(constant, 0.0, rho)
    xty, yty = whitened_cross(stats, tables.X, rho)
    beta, dispersion = fit_whitened_table(xty, yty, cov_table, index, p, n)
    _quiet_constant_voxels(constant, stats, tables, beta, dispersion, rho)
    packed = np.concatenate(
        [beta, dispersion[None], rho, index[None].astype(np.float64), signal_mean[None]]
    )
    if options.diagnostic_lags:
        packed = _with_diagnostics(packed, stats, tables, beta_ols, beta, rho, options)
    return packed


def constant_voxels(stats: RunStats) -> np.ndarray:
    """Voxels whose (unscaled) series is constant to machine precision.

    Their least-squares quantities are pure rounding noise (SSE = y'y - b'X'y
    cancels to +-1e-12), which would turn into huge spurious statistics.
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
    np.maximum(dispersion, 0.0, out=dispersion)
    if not constant.any():
        return
    ones_fit = np.linalg.pinv(tables.X) @ np.ones(tables.n_scans)
    ones_fit[np.abs(ones_fit) < 1e-9 * np.abs(ones_fit).max()] = 0.0
    level = stats.sy[constant] / stats.n_scans
    beta[:, constant] = np.outer(ones_fit, level)
    dispersion[constant] = 0.0
    rho[:, constant] = 0.0


def _with_diagnostics(packed, stats, tables, beta_ols, beta, rho, options) -> np.ndarray:
    """Append residual autocorrelations before (OLS) and after whitening."""
    k = options.diagnostic_lags
    if not k:
        return packed
    before = residual_acf(residual_autocovariance(stats, tables, beta_ols, 0.0), k)
    after = whitened_residual_acf(stats, tables.X, beta, rho, options.exact, k)
    return np.concatenate([packed, before, after])


def unpack(
    packed: np.ndarray, n_regressors: int, ar_order: int, diagnostic_lags: int = 0
) -> dict[str, np.ndarray]:
    """Split a packed fit result into named arrays.

    With ``diagnostic_lags = k > 0`` it also holds ``acf_before`` and
    ``acf_after``, each (k, V).
    """
    p, r, k = n_regressors, max(ar_order, 1), diagnostic_lags
    out = {
        "beta": packed[:p],
        "dispersion": packed[p],
        "ar_coef": packed[p + 1 : p + 1 + r],
        "cov_index": packed[p + 1 + r],
        "signal_mean": packed[p + 2 + r],
    }
    if k:
        start = p + 3 + r
        out["acf_before"] = packed[start : start + k]
        out["acf_after"] = packed[start + k : start + 2 * k]
    return out
