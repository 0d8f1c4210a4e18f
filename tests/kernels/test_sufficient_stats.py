"""Streaming sufficient statistics (``kernels.sufficient_stats``) and their affine rescaling.

Statistics accumulated over arbitrary time chunks equal sums over the whole
series; rescaling the data per voxel (``kernels.scaling``) maps the statistics
exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daskglm.kernels.scaling import affine_transform_stats
from tests._reference import _problem, _stats_in_chunks, chunkings


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n_lags=st.integers(1, 4), cuts=chunkings)
def test_chunked_statistics_equal_whole_series_sums(seed, n_lags, cuts):
    X, Y = _problem(seed, 40, 4, 7)
    s = _stats_in_chunks(Y, X, n_lags, cuts)
    n = len(Y)
    np.testing.assert_allclose(s.sy, Y.sum(0))
    np.testing.assert_allclose(s.yy, (Y**2).sum(0))
    np.testing.assert_allclose(s.xy, X.T @ Y)
    for k in range(1, n_lags + 1):
        np.testing.assert_allclose(s.yy_lag[k - 1], (Y[k:] * Y[: n - k]).sum(0))
        np.testing.assert_allclose(s.xy_sym[k - 1], X[: n - k].T @ Y[k:] + X[k:].T @ Y[: n - k])
    np.testing.assert_array_equal(s.head, Y[:n_lags])
    np.testing.assert_array_equal(s.tail, Y[n - n_lags :])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n_lags=st.integers(1, 3))
def test_affine_rescaling_of_statistics(seed, n_lags):
    X, Y = _problem(seed, 30, 3, 5)
    rng = np.random.default_rng(seed + 1)
    a, b = rng.uniform(0.5, 2, 5), rng.uniform(-100, 100, 5)
    direct = _stats_in_chunks(a * Y + b, X, n_lags, [])
    derived = affine_transform_stats(_stats_in_chunks(Y, X, n_lags, [11]), X, a, b)
    for name, value in direct.arrays().items():
        np.testing.assert_allclose(getattr(derived, name), value, rtol=1e-9, atol=1e-7, err_msg=name)
