"""Reference computations that daskglm's results are compared with.

- ``assert_maps_close``: daskglm's maps against nilearn's (the parity bar);
- brute force from whole time series: random problems, statistics accumulated
  chunk by chunk, the exact AR(p) whitener, AR noise on a block design.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg as spl
from hypothesis import strategies as st
from scipy.signal import lfilter

from daskglm.kernels.ar import ar_autocovariance
from daskglm.kernels.sufficient_stats import chunk_stats, combine_stats, stacked_design

#: The parity bar: z and stat within 1e-3 on >= 99.9% of in-mask voxels.
ABS_TOL = 1e-3
MIN_FRACTION = 0.999
#: nilearn computes on float32-scaled data, so its AR(1) coefficient differs from
#: ours by ~1e-6 and lands in the neighbouring 0.01 bin for ~1 voxel in 5000.
#: On the few-hundred-voxel masks of the tests, 2 such voxels are tolerated.
FLIP_ALLOWANCE = 2


def in_mask(img, mask: np.ndarray) -> np.ndarray:
    data = np.asarray(img.get_fdata())
    return data[mask]


def assert_maps_close(ours, theirs, mask, name="", rtol=0.0, atol=ABS_TOL, fraction=MIN_FRACTION):
    """Assert two images agree on in-mask voxels (a fraction may differ: AR bin flips)."""
    a, b = in_mask(ours, mask), in_mask(theirs, mask)
    assert a.shape == b.shape, f"{name}: shapes {a.shape} vs {b.shape}"
    assert np.all(np.isfinite(a)), f"{name}: daskglm map has non-finite values"
    close = np.abs(a - b) <= atol + rtol * np.abs(b)
    if a.ndim > 1:
        close = close.all(axis=tuple(range(1, a.ndim)))
    n_bad = int((~close).sum())
    allowed = max(int(np.floor((1 - fraction) * close.size)), FLIP_ALLOWANCE)
    assert n_bad <= allowed, (
        f"{name}: {n_bad} of {close.size} voxels differ (allowed {allowed}; "
        f"max abs diff {np.abs(a - b).max():.3g})"
    )


# ---------------------------------------------------- brute-force statistics
def _problem(seed, n, p, v):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.standard_normal((n, p - 1)), np.ones(n)])
    Y = 50 + rng.standard_normal((n, v)).cumsum(axis=0) * 0.3 + rng.standard_normal((n, v))
    return X, Y


def _stats_in_chunks(Y, X, n_lags, cuts):
    stack = stacked_design(X, n_lags)
    bounds = [0, *sorted(set(cuts)), len(Y)]
    total = None
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        if t1 <= t0:
            continue
        prev = Y[max(0, t0 - n_lags) : t0]
        part = chunk_stats(Y[t0:t1], t0, len(Y), stack, n_lags, prev)
        total = part if total is None else combine_stats(total, part)
    return total


chunkings = st.lists(st.integers(1, 39), max_size=6)


def _exact_whitener(phi: np.ndarray, n: int) -> np.ndarray:
    """Brute force: inverse Cholesky factor of the AR(p) covariance (n x n)."""
    gamma = ar_autocovariance(phi[:, None], n - 1)[:, 0]
    return np.linalg.inv(np.linalg.cholesky(spl.toeplitz(gamma)))


def _block_design(n: int) -> np.ndarray:
    from nilearn.glm.first_level import make_first_level_design_matrix

    events = pd.DataFrame({"onset": np.arange(10.0, 2 * n - 20, 40.0), "duration": 20.0,
                           "trial_type": "task"})
    return make_first_level_design_matrix(np.arange(n) * 2.0, events, drift_model="cosine",
                                          high_pass=0.01)


def _ar_noise(n, n_vox, coefs, rng):
    u = rng.standard_normal((n + 200, n_vox))
    return lfilter([1.0], np.r_[1.0, -np.asarray(coefs)], u, axis=0)[200:]
