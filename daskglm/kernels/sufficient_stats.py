"""Streaming sufficient statistics of a GLM, accumulated over time chunks.

A first-level GLM with AR(p) noise needs the data ``Y`` (time x voxels) only
through a handful of low-order lagged cross-products with the design ``X``
(time x regressors).  They are sums over time, so a run can be read one chunk
of volumes at a time, the partial sums added up, and no (time x voxels) array
ever needs to exist whole.

For a maximum lag ``L`` the statistics of one run are

``sy``      sum_t Y_t                                   (V,)
``yy``      sum_t Y_t**2                                (V,)
``yy_lag``  sum_{t>=k} Y_t Y_{t-k}, k = 1..L             (L, V)
``xy``      sum_t X_t Y_t                               (p, V)
``xy_sym``  sum_{t>=k} (X_{t-k} Y_t + X_t Y_{t-k}), k=1..L  (L, p, V)
``head``    Y_0 .. Y_{L-1}                               (L, V)
``tail``    Y_{n-L} .. Y_{n-1}                           (L, V)

All of them are float64.  ``head``/``tail`` carry the edge terms that the
lagged sums leave out (e.g. the un-rescaled first sample of nilearn's AR(1)
whitening, or sum_{t<=n-2} Y_t).

The two lagged design products enter every quantity of the GLM only through
their sum: whitening weighs ``sum_t X_{t-i} Y_{t-j}`` and ``sum_t X_{t-j} Y_{t-i}``
by the same ``c_i c_j``, and the residual autocovariance by the same
``beta``.  Keeping the sum (``xy_sym``) rather than both halves saves a third
of the accumulator, the largest array of the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.linalg import blas

__all__ = [
    "RunStats",
    "stacked_design",
    "empty_stats",
    "accumulate_chunk",
    "chunk_stats",
    "combine_stats",
]


@dataclass
class RunStats:
    """Sufficient statistics of one run (or one time chunk of it).

    Parameters
    ----------
    n_scans : int
        Scans of the whole run.
    sy : ndarray (V,)
        ``sum_t Y_t``.
    yy : ndarray (V,)
        ``sum_t Y_t^2``.
    yy_lag : ndarray (L, V)
        ``sum_{t>=k} Y_t Y_{t-k}``, k = 1..L.
    xy : ndarray (p, V)
        ``sum_t X_t Y_t``.
    xy_sym : ndarray (L, p, V)
        ``sum_{t>=k} (X_{t-k} Y_t + X_t Y_{t-k})``, k = 1..L.
    head, tail : ndarray (L, V)
        The run's first and last ``L`` scans.
    """

    n_scans: int
    sy: np.ndarray
    yy: np.ndarray
    yy_lag: np.ndarray
    xy: np.ndarray
    xy_sym: np.ndarray
    head: np.ndarray
    tail: np.ndarray

    @property
    def n_lags(self) -> int:
        """Lags ``L`` of the lagged sums."""
        return self.yy_lag.shape[0]

    @property
    def n_voxels(self) -> int:
        """Voxels ``V``."""
        return self.sy.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The array fields by name (everything but ``n_scans``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n_scans"}


def stacked_design(X: np.ndarray, n_lags: int) -> np.ndarray:
    """Design with its shifted copies stacked as columns, for one GEMM per chunk.

    Row ``s`` holds ``[X_s, X_{s-1} + X_{s+1}, .., X_{s-L} + X_{s+L}]`` with
    zeros where a shift leaves the run.  Then ``stacked[t0:t1].T @ Y_chunk``
    yields the chunk's share of ``xy`` and ``xy_sym`` at once, because
    sum_{s>=k} X_{s-k} Y_s and sum_{s<=n-1-k} X_{s+k} Y_s are plain sums over
    the chunk's own rows.

    Parameters
    ----------
    X : ndarray (n, p)
    n_lags : int

    Returns
    -------
    ndarray (n, (L + 1) p), C-contiguous
    """
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    blocks = [X]
    for k in range(1, n_lags + 1):
        both = np.zeros_like(X)
        both[k:] += X[: n - k]
        both[: n - k] += X[k:]
        blocks.append(both)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1))


def empty_stats(n_scans: int, n_lags: int, n_regressors: int, n_voxels: int) -> RunStats:
    """Zeroed statistics whose design products share one contiguous buffer.

    ``xy`` and ``xy_sym`` are views into one C-ordered ``((L + 1) p, V)``
    array, which :func:`accumulate_chunk` updates in place with a single BLAS
    call per chunk.

    Parameters
    ----------
    n_scans, n_lags, n_regressors, n_voxels : int

    Returns
    -------
    RunStats
    """
    p, L, V = n_regressors, n_lags, n_voxels
    products = np.zeros(((L + 1) * p, V))
    return RunStats(
        n_scans=n_scans,
        sy=np.zeros(V),
        yy=np.zeros(V),
        yy_lag=np.zeros((L, V)),
        xy=products[:p],
        xy_sym=products[p:].reshape(L, p, V),
        head=np.zeros((L, V)),
        tail=np.zeros((L, V)),
    )


def _products_buffer(stats: RunStats) -> np.ndarray | None:
    """The contiguous ``((L + 1) p, V)`` buffer behind the design products, if any."""
    base = stats.xy.base
    if base is not None and base.ndim == 2 and base.flags.c_contiguous and stats.xy_sym.base is base:
        return base
    return None


def accumulate_chunk(
    total: RunStats,
    Y: np.ndarray,
    t0: int,
    design_stack: np.ndarray,
    previous: np.ndarray | None = None,
) -> RunStats:
    """Add the statistics of volumes ``t0 .. t0 + len(Y) - 1`` into ``total`` in place.

    Parameters
    ----------
    total : RunStats
        Accumulator from :func:`empty_stats`.
    Y : ndarray, shape (n_chunk, n_voxels)
        Masked (smoothed) data of consecutive volumes, any float dtype.
    t0 : int
        Index of the chunk's first volume in the run.
    design_stack : ndarray, shape (n_scans, (n_lags + 1) * p)
        Output of :func:`stacked_design`.
    previous : ndarray, shape (min(t0, L), n_voxels), optional
        The volumes just before the chunk, needed for the lagged ``yy`` terms.
    """
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    n_chunk, n_vox = Y.shape
    n_scans, n_lags = total.n_scans, total.n_lags
    t1 = t0 + n_chunk

    buffer = _products_buffer(total)
    rows = design_stack[t0:t1]
    if buffer is not None:
        # buffer^T (V x (L+1)p, Fortran order) += Y^T (V x k) @ rows (k x (L+1)p), in place
        blas.dgemm(1.0, Y.T, rows.T, beta=1.0, c=buffer.T, trans_b=1, overwrite_c=1)
    else:
        p = total.xy.shape[0]
        products = rows.T @ Y
        total.xy += products[:p]
        total.xy_sym += products[p:].reshape(n_lags, p, n_vox)

    total.sy += Y.sum(axis=0)
    total.yy += np.einsum("tv,tv->v", Y, Y)
    n_prev = 0 if previous is None else len(previous)
    for k in range(1, n_lags + 1):
        # pairs (t, t-k) with t in the chunk and t-k >= 0: inside the chunk ...
        if n_chunk > k:
            total.yy_lag[k - 1] += np.einsum("tv,tv->v", Y[k:], Y[: n_chunk - k])
        # ... or reaching back into the previous volumes
        for j in range(min(k, n_chunk)):
            back = n_prev - k + j
            if back >= 0:
                total.yy_lag[k - 1] += Y[j] * previous[back]

    for k in range(n_lags):
        if t0 <= k < t1:
            total.head[k] += Y[k - t0]
        t_tail = n_scans - n_lags + k
        if t0 <= t_tail < t1 and t_tail >= 0:
            total.tail[k] += Y[t_tail - t0]
    return total


def chunk_stats(
    Y: np.ndarray,
    t0: int,
    n_scans: int,
    design_stack: np.ndarray,
    n_lags: int,
    previous: np.ndarray | None = None,
) -> RunStats:
    """Statistics of the volumes ``t0 .. t0 + len(Y) - 1`` of a run (a new object).

    Parameters
    ----------
    Y, t0, n_scans, design_stack, n_lags, previous
        As :func:`accumulate_chunk` (``n_scans`` and ``n_lags`` describe the run).

    Returns
    -------
    RunStats
    """
    p = design_stack.shape[1] // (n_lags + 1)
    total = empty_stats(n_scans, n_lags, p, np.shape(Y)[1])
    return accumulate_chunk(total, Y, t0, design_stack, previous)


def combine_stats(a: RunStats, b: RunStats) -> RunStats:
    """Sum the partial statistics of two disjoint time chunks of one run.

    ``head``/``tail`` rows are only ever set by the chunk that holds them and
    are zero elsewhere, so they add like the rest.

    Parameters
    ----------
    a, b : RunStats

    Returns
    -------
    RunStats
    """
    arrays_a, arrays_b = a.arrays(), b.arrays()
    summed = {name: arrays_a[name] + arrays_b[name] for name in arrays_a}
    return RunStats(n_scans=a.n_scans, **summed)
