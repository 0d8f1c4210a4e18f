"""AR algebra (``kernels.ar``): nilearn's AR(1) bins, Levinson recursion, AR autocovariance."""

from __future__ import annotations

import numpy as np
import scipy.linalg as spl
from hypothesis import given, settings
from hypothesis import strategies as st

from daskglm.kernels.ar import BIN_VALUES, ar1_bin_index, ar_autocovariance, levinson, pacf_to_ar
from tests._reference import _exact_whitener


def test_ar1_bins_truncate_toward_zero_like_nilearn():
    rho = np.array([0.299999, 0.3, -0.0199, -0.02, 0.0, 0.999, -1.2])
    expected = (rho * 100).astype(int) * 1.0 / 100
    expected = np.clip(expected, -0.99, 0.99)
    np.testing.assert_array_equal(BIN_VALUES[ar1_bin_index(rho)], expected)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.integers(1, 5))
def test_levinson_roundtrip(seed, order):
    rng = np.random.default_rng(seed)
    pacf = rng.uniform(-0.95, 0.95, size=(order, 4))
    phi = pacf_to_ar(pacf)
    gamma = ar_autocovariance(phi, order + 3)
    phi2, pacf2 = levinson(gamma[: order + 1])
    np.testing.assert_allclose(phi2, phi, atol=1e-9)
    np.testing.assert_allclose(pacf2, pacf, atol=1e-9)
    # the recursion continues the Yule-Walker equations
    for k in range(order + 1, order + 4):
        np.testing.assert_allclose(gamma[k], np.einsum("iv,iv->v", phi, gamma[k - order : k][::-1]))


def test_exact_whitener_is_white():
    phi = np.array([0.5, -0.3, 0.1])
    n = 30
    W = _exact_whitener(phi, n)
    gamma = ar_autocovariance(phi[:, None], n - 1)[:, 0]
    np.testing.assert_allclose(W @ spl.toeplitz(gamma) @ W.T, np.eye(n), atol=1e-10)
    # AR(1): the first sample is scaled by sqrt(1 - rho^2)
    W1 = _exact_whitener(np.array([0.6]), 5)
    assert np.isclose(W1[0, 0] * np.sqrt(ar_autocovariance(np.array([[0.6]]), 0)[0, 0]), 1.0)
    assert np.isclose(W1[0, 0], np.sqrt(1 - 0.36))
