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
``xy_fwd``  sum_{t>=k} X_{t-k} Y_t, k = 1..L             (L, p, V)
``xy_bwd``  sum_{t>=k} X_t Y_{t-k}, k = 1..L             (L, p, V)
``head``    Y_0 .. Y_{L-1}                               (L, V)
``tail``    Y_{n-L} .. Y_{n-1}                           (L, V)

All of them are float64.  ``head``/``tail`` carry the edge terms that the
lagged sums leave out (e.g. the un-rescaled first sample of nilearn's AR(1)
whitening, or sum_{t<=n-2} Y_t).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["RunStats", "stacked_design", "chunk_stats", "combine_stats"]


@dataclass
class RunStats:
    """Sufficient statistics of one run (or one time chunk of it)."""

    n_scans: int
    sy: np.ndarray
    yy: np.ndarray
    yy_lag: np.ndarray
    xy: np.ndarray
    xy_fwd: np.ndarray
    xy_bwd: np.ndarray
    head: np.ndarray
    tail: np.ndarray

    @property
    def n_lags(self) -> int:
        return self.yy_lag.shape[0]

    @property
    def n_voxels(self) -> int:
        return self.sy.shape[0]

    def voxel_slice(self, sl: slice) -> RunStats:
        """Statistics of a contiguous range of voxels."""
        return RunStats(
            self.n_scans,
            self.sy[sl],
            self.yy[sl],
            self.yy_lag[:, sl],
            self.xy[:, sl],
            self.xy_fwd[:, :, sl],
            self.xy_bwd[:, :, sl],
            self.head[:, sl],
            self.tail[:, sl],
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n_scans"}


def stacked_design(X: np.ndarray, n_lags: int) -> np.ndarray:
    """Design with its shifted copies stacked as columns, for one GEMM per chunk.

    Row ``s`` holds ``[X_s, X_{s-1}, .., X_{s-L}, X_{s+1}, .., X_{s+L}]`` with
    zeros where the shift leaves the run.  Then ``stacked[t0:t1].T @ Y_chunk``
    yields the chunk's share of ``xy``, ``xy_fwd`` and ``xy_bwd`` at once,
    because sum_{s>=k} X_{s-k} Y_s and sum_{s<=n-1-k} X_{s+k} Y_s are plain
    sums over the chunk's own rows.
    """
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    blocks = [X]
    for k in range(1, n_lags + 1):
        fwd = np.zeros_like(X)
        fwd[k:] = X[: n - k]
        blocks.append(fwd)
    for k in range(1, n_lags + 1):
        bwd = np.zeros_like(X)
        bwd[: n - k] = X[k:]
        blocks.append(bwd)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1))


def chunk_stats(
    Y: np.ndarray,
    t0: int,
    n_scans: int,
    design_stack: np.ndarray,
    n_lags: int,
    previous: np.ndarray | None = None,
) -> RunStats:
    """Partial statistics of the volumes ``t0 .. t0 + len(Y) - 1`` of a run.

    Parameters
    ----------
    Y : ndarray, shape (n_chunk, n_voxels)
        Masked (smoothed) data of consecutive volumes, any float dtype.
    t0 : int
        Index of the chunk's first volume in the run.
    n_scans : int
        Number of volumes in the whole run.
    design_stack : ndarray, shape (n_scans, (2 * n_lags + 1) * p)
        Output of :func:`stacked_design`.
    n_lags : int
        Maximum lag ``L``.
    previous : ndarray, shape (min(t0, L), n_voxels), optional
        The volumes just before the chunk, needed for the lagged ``yy`` terms.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n_chunk, n_vox = Y.shape
    p = design_stack.shape[1] // (2 * n_lags + 1)
    t1 = t0 + n_chunk

    xy_all = design_stack[t0:t1].T @ Y
    xy = xy_all[:p]
    xy_fwd = xy_all[p : (n_lags + 1) * p].reshape(n_lags, p, n_vox)
    xy_bwd = xy_all[(n_lags + 1) * p :].reshape(n_lags, p, n_vox)

    if previous is None or len(previous) == 0:
        context = Y
        n_prev = 0
    else:
        previous = np.asarray(previous, dtype=np.float64)
        context = np.concatenate([previous, Y])
        n_prev = len(previous)
    yy_lag = np.zeros((n_lags, n_vox))
    for k in range(1, n_lags + 1):
        # pairs (t, t-k) with t in the chunk and t-k >= 0
        start = max(k, n_prev)  # index in context of the first valid t
        if start < len(context):
            a = context[start:]
            b = context[start - k : len(context) - k]
            yy_lag[k - 1] = np.einsum("tv,tv->v", a, b)

    head = np.zeros((n_lags, n_vox))
    tail = np.zeros((n_lags, n_vox))
    for k in range(n_lags):
        if t0 <= k < t1:
            head[k] = Y[k - t0]
        t_tail = n_scans - n_lags + k
        if t0 <= t_tail < t1 and t_tail >= 0:
            tail[k] = Y[t_tail - t0]

    return RunStats(
        n_scans=n_scans,
        sy=Y.sum(axis=0),
        yy=np.einsum("tv,tv->v", Y, Y),
        yy_lag=yy_lag,
        xy=np.ascontiguousarray(xy),
        xy_fwd=xy_fwd,
        xy_bwd=xy_bwd,
        head=head,
        tail=tail,
    )


def combine_stats(a: RunStats, b: RunStats) -> RunStats:
    """Sum the partial statistics of two disjoint time chunks of one run.

    ``head``/``tail`` rows are only ever set by the chunk that holds them and
    are zero elsewhere, so they add like the rest.
    """
    arrays_a, arrays_b = a.arrays(), b.arrays()
    summed = {name: arrays_a[name] + arrays_b[name] for name in arrays_a}
    return RunStats(n_scans=a.n_scans, **summed)
