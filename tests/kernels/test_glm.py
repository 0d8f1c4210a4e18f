"""GLM kernels (``kernels.glm``) against brute force on whole series and nilearn.

OLS from the streamed statistics, Yule-Walker on the residual autocovariance
(nilearn's ``_yule_walker``), whitened cross-products and the whitened Gram
inverse (nilearn's ``pinv``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as spl
from hypothesis import given, settings
from hypothesis import strategies as st
from nilearn.glm.first_level.first_level import _yule_walker

from daskglm.kernels.glm import (
    DesignTables,
    ols_fit,
    residual_autocovariance,
    whiten_design,
    whitened_cross,
    yule_walker,
)
from tests._reference import _problem, _stats_in_chunks, chunkings


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
