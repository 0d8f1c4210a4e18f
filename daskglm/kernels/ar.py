"""nilearn's binned AR(1) model: coefficient grid and per-bin design tables."""

from __future__ import annotations

import numpy as np

from .glm import whitened_gram_inverse

__all__ = ["N_BINS", "BIN_VALUES", "OLS_BIN", "ar1_bin_index", "binned_gram_inverses"]

#: nilearn's default ``bins=100``: rho is truncated toward zero on a 0.01 grid.
BINS_PER_UNIT = 100
#: Integer bin k in [-99, 99] stands for rho = k / 100; index = k + 99.
N_BINS = 2 * (BINS_PER_UNIT - 1) + 1
BIN_VALUES = np.arange(-(BINS_PER_UNIT - 1), BINS_PER_UNIT) * 1.0 / BINS_PER_UNIT
#: Index of rho = 0, i.e. the unwhitened OLS fit.
OLS_BIN = BINS_PER_UNIT - 1


def ar1_bin_index(rho: np.ndarray) -> np.ndarray:
    """Bin index of each AR(1) coefficient, as nilearn's ``(rho * 100).astype(int)``.

    The cast truncates toward zero; |rho| >= 1 (impossible for Yule-Walker
    estimates but for rounding) is clipped to the outermost bin.
    """
    k = (np.asarray(rho) * BINS_PER_UNIT).astype(int)
    k = np.clip(k, -(BINS_PER_UNIT - 1), BINS_PER_UNIT - 1)
    return (k + BINS_PER_UNIT - 1).astype(np.int16)


def binned_gram_inverses(X: np.ndarray) -> np.ndarray:
    """``pinv(WX) pinv(WX).T`` for every AR(1) bin, shape (N_BINS, p, p)."""
    return np.stack([whitened_gram_inverse(X, np.array([rho])) for rho in BIN_VALUES])
