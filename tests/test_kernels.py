"""Pure-numpy kernels against brute-force references built from whole time series."""

from __future__ import annotations

import numpy as np
import scipy.linalg as spl
from hypothesis import given, settings
from hypothesis import strategies as st
from nilearn.glm.first_level.first_level import _yule_walker

from daskglm.kernels.ar import BIN_VALUES, ar1_bin_index
from daskglm.kernels.glm import (
    DesignTables,
    ols_fit,
    residual_autocovariance,
    whiten_design,
    whitened_cross,
    yule_walker,
)
from daskglm.kernels.scaling import affine_transform_stats
from daskglm.kernels.stats import chunk_stats, combine_stats, stacked_design


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


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.integers(1, 4), cuts=chunkings)
def test_whitened_cross_products_match_explicit_whitening(seed, order, cuts):
    X, Y = _problem(seed, 40, 4, 6)
    s = _stats_in_chunks(Y, X, order, cuts)
    rng = np.random.default_rng(seed)
    rho = rng.uniform(-0.4, 0.4, (order, Y.shape[1]))
    xty, yty = whitened_cross(s, X, rho)
    for v in range(Y.shape[1]):
        wx = whiten_design(X, rho[:, v])
        wy = whiten_design(Y[:, [v]], rho[:, v])[:, 0]
        np.testing.assert_allclose(xty[:, v], wx.T @ wy, rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(yty[v], wy @ wy, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), order=st.integers(1, 3))
def test_yule_walker_matches_nilearn_on_residuals(seed, order):
    X, Y = _problem(seed, 50, 4, 8)
    s = _stats_in_chunks(Y, X, order, [17])
    tables = DesignTables(X, order)
    beta, sse = ols_fit(s, tables)
    resid = Y - X @ spl.pinv(X) @ Y
    np.testing.assert_allclose(beta, spl.pinv(X) @ Y, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(sse, (resid**2).sum(0), rtol=1e-7)
    mu = resid.mean()
    rho = yule_walker(residual_autocovariance(s, tables, beta, mu), len(Y))
    expected = _yule_walker(resid.T, order)
    np.testing.assert_allclose(rho.T, expected, rtol=1e-6, atol=1e-9)


def test_ar1_bins_truncate_toward_zero_like_nilearn():
    rho = np.array([0.299999, 0.3, -0.0199, -0.02, 0.0, 0.999, -1.2])
    expected = (rho * 100).astype(int) * 1.0 / 100
    expected = np.clip(expected, -0.99, 0.99)
    np.testing.assert_array_equal(BIN_VALUES[ar1_bin_index(rho)], expected)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), rho=st.floats(-0.95, 0.95), duplicate=st.booleans())
def test_gram_inverse_matches_nilearns_pinv(seed, rho, duplicate):
    from daskglm.kernels.glm import whitened_gram_inverse

    X, _ = _problem(seed, 60, 5, 1)
    if duplicate:  # rank deficient: the SVD route with pinv's cut-off must be taken
        X = np.column_stack([X, X[:, 0]])
    wx = whiten_design(X, np.array([rho]))
    pinv = spl.pinv(wx)
    np.testing.assert_allclose(whitened_gram_inverse(X, np.array([rho])), pinv @ pinv.T,
                               rtol=1e-8, atol=1e-10)
