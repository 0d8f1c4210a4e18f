"""Exact AR(p) whitening, binned arN and whitening diagnostics (issue 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as spl
import scipy.stats as sps
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

from daskglm import FirstLevelModel, open_model
from daskglm.kernels.ar import ar_autocovariance, levinson, pacf_to_ar, quantize_ar
from daskglm.kernels.contrast import stack_contrast_block
from daskglm.kernels.glm import DesignTables, ols_fit, residual_autocovariance, whiten_design
from daskglm.kernels.gram import (
    GramTables,
    bias_corrected_ar,
    bias_matrix,
    stack_gram,
    whitened_fit,
    whitened_residual_acf,
)
from daskglm.kernels.stats import chunk_stats, stacked_design


def _exact_whitener(phi: np.ndarray, n: int) -> np.ndarray:
    """Brute force: inverse Cholesky factor of the AR(p) covariance (n x n)."""
    gamma = ar_autocovariance(phi[:, None], n - 1)[:, 0]
    return np.linalg.inv(np.linalg.cholesky(spl.toeplitz(gamma)))


def _problem(seed: int, n: int, q: int, order: int, n_vox: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, q))
    X[:, 0] = 1.0
    Y = rng.normal(size=(n, n_vox)) + 5 * rng.normal(size=n_vox)
    phi = pacf_to_ar(rng.uniform(-0.85, 0.85, size=(order, n_vox)))
    return X, Y, phi


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(12, 40),
    q=st.integers(1, 4),
    order=st.integers(1, 4),
    lags=st.integers(1, 3),
    time_chunk=st.integers(3, 50),
)
def test_exact_kernels_match_brute_force(seed, n, q, order, lags, time_chunk):
    X, Y, phi = _problem(seed, n, q, order)
    L = order + lags
    stack = stacked_design(X, L)
    # statistics accumulated over time chunks, as the engine does
    total = None
    for t0 in range(0, n, time_chunk):
        prev = Y[max(0, t0 - L) : t0]
        part = chunk_stats(Y[t0 : t0 + time_chunk], t0, n, stack, L, prev)
        total = part if total is None else type(part)(
            n, **{k: v + part.arrays()[k] for k, v in total.arrays().items()}
        )
    tables = GramTables(X, order)
    for exact in (True, False):
        beta, disp = whitened_fit(total, tables, phi, exact)
        acf = whitened_residual_acf(total, X, beta, phi, exact, lags)
        gram = stack_gram(phi, tables.gram_stack, exact)
        for v in range(Y.shape[1]):
            if exact:
                W = _exact_whitener(phi[:, v], n)
                # rows t >= p are the plain AR filter
                c = np.r_[1.0, -phi[:, v]]
                assert np.allclose(W[order:, :][np.arange(n - order), np.arange(order, n)], 1.0)
                assert np.allclose(W[n - 1, n - 1 - order :][::-1], c)
                wx, wy = W @ X, W @ Y[:, v]
            else:
                wx, wy = whiten_design(X, phi[:, v]), whiten_design(Y[:, [v]], phi[:, v])[:, 0]
            ref = np.linalg.lstsq(wx, wy, rcond=None)[0]
            res = wy - wx @ ref
            dof = n - (np.linalg.matrix_rank(X) if exact else q)
            np.testing.assert_allclose(beta[:, v], ref, rtol=1e-7, atol=1e-7)
            np.testing.assert_allclose(disp[v], res @ res / dof, rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(gram[v], wx.T @ wx, rtol=1e-8, atol=1e-8)
            ref_acf = [res[k:] @ res[: n - k] / (res @ res) for k in range(1, lags + 1)]
            np.testing.assert_allclose(acf[:, v], ref_acf, rtol=1e-6, atol=1e-8)


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


def test_bias_matrix_brute_force():
    rng = np.random.default_rng(3)
    n = 25
    X = np.c_[np.ones(n), rng.normal(size=(n, 2))]
    T = bias_matrix(X, 2, n - 1)
    R = np.eye(n) - X @ np.linalg.pinv(X)
    for lag in range(3):
        S = np.eye(n, k=-lag)
        for j in range(n):
            K = np.eye(n) if j == 0 else np.eye(n, k=j) + np.eye(n, k=-j)
            assert np.isclose(T[lag, j], np.trace(R @ S @ R @ K))


def _block_design(n: int) -> np.ndarray:
    from nilearn.glm.first_level import make_first_level_design_matrix

    events = pd.DataFrame({"onset": np.arange(10.0, 2 * n - 20, 40.0), "duration": 20.0,
                           "trial_type": "task"})
    return make_first_level_design_matrix(np.arange(n) * 2.0, events, drift_model="cosine",
                                          high_pass=0.01)


def _ar_noise(n, n_vox, coefs, rng):
    u = rng.standard_normal((n + 200, n_vox))
    return lfilter([1.0], np.r_[1.0, -np.asarray(coefs)], u, axis=0)[200:]


def test_bias_correction_removes_projection_bias():
    rng = np.random.default_rng(5)
    X = _block_design(200).to_numpy()
    Y = _ar_noise(200, 20_000, [0.5], rng)
    stats = chunk_stats(Y, 0, 200, stacked_design(X, 1), 1)
    dtab = DesignTables(X, 1)
    beta, _ = ols_fit(stats, dtab)
    autocov = residual_autocovariance(stats, dtab, beta, 0.0)
    raw = levinson(autocov)[0].mean()
    corrected = bias_corrected_ar(autocov, GramTables(X, 1).bias).mean()
    assert raw < 0.45  # Yule-Walker on OLS residuals is biased toward 0
    assert abs(corrected - 0.5) < 0.01


def test_exact_model_matches_numpy_gls():
    """FirstLevelModel(whitening='exact') equals a direct numpy GLS with its own rho."""
    import nibabel as nib

    rng = np.random.default_rng(11)
    n, shape = 80, (3, 4, 2)
    dm = _block_design(n)
    Y = _ar_noise(n, int(np.prod(shape)), [0.4, 0.2], rng) + 50.0
    img = nib.Nifti1Image(Y.T.reshape(*shape, n), np.eye(4))
    model = FirstLevelModel(mask_img=False, noise_model="ar2", whitening="exact",
                            signal_scaling=False, chunks={"voxel": 7, "time": 13})
    model.fit(img, design_matrices=dm)
    res = model.results_.compute()
    phi = res["ar_coef"].values[0]
    con = np.zeros(dm.shape[1])
    con[0] = 1.0
    eff = model.compute_contrast(con, output_type="effect_size").get_fdata().reshape(-1, order="C")
    beta_ref = []
    for v in range(Y.shape[1]):
        W = _exact_whitener(phi[:, v], n)
        beta_ref.append(np.linalg.lstsq(W @ dm.to_numpy(), W @ Y[:, v], rcond=None)[0])
    beta_ref = np.array(beta_ref).T
    np.testing.assert_allclose(res["beta"].values[0], beta_ref, rtol=1e-7, atol=1e-8)
    # mask_img=False keeps every voxel, in C order
    np.testing.assert_allclose(eff, beta_ref[0], rtol=1e-7, atol=1e-8)


def _fpr(pvals, alpha):
    return (np.mean(pvals < alpha) + np.mean(pvals > 1 - alpha)) / 2


def test_exact_fpr_null_simulation():
    """Small null study: exact is near nominal where binned (nilearn) is not."""
    from daskglm.kernels.contrast import contrast_block
    from daskglm.kernels.fit import FitOptions, fit_block
    from daskglm.kernels.gram import binned_gram_inverses

    rng = np.random.default_rng(2024)
    n, n_vox = 240, 40_000
    X = _block_design(n).to_numpy()
    e = np.empty((n + 200, n_vox))
    rho = rng.uniform(0.2, 0.6, n_vox)
    u = rng.standard_normal((n + 200, n_vox))
    e[0] = u[0]
    for t in range(1, n + 200):
        e[t] = rho * e[t - 1] + u[t]
    Y = e[200:] + 100.0
    stats = chunk_stats(Y, 0, n, stacked_design(X, 1), 1)
    dtab = DesignTables(X, 1)
    con = np.zeros(X.shape[1])
    con[0] = 1.0
    out = {}
    for mode in ("binned", "exact"):
        opts = FitOptions("ar1", False, whitening=mode)
        table = GramTables(X, 1) if mode == "exact" else binned_gram_inverses(X)
        parts = opts.layout(X.shape[1]).unpack(fit_block(stats, dtab, table, opts))
        if mode == "exact":
            eff, var = stack_contrast_block(parts["beta"], parts["dispersion"], parts["ar_coef"],
                                            table.gram_stack, con, "t", True, n - dtab.rank)
        else:
            eff, var = contrast_block(parts["beta"], parts["dispersion"],
                                      parts["cov_index"].astype(np.intp), table, con, "t")
        out[mode] = sps.t.sf(eff / np.sqrt(var), n - dtab.rank)
    # 80k one-sided tests: binomial sd at 0.01 is 3.5e-4, at 0.001 1.1e-4
    assert 0.0088 < _fpr(out["exact"], 0.01) < 0.0115
    assert 0.0006 < _fpr(out["exact"], 0.001) < 0.0015
    assert _fpr(out["binned"], 0.01) > 0.013  # nilearn's under-whitening


def test_binned_arn_quantizes_per_voxel():
    """Binned ar2: per-voxel Yule-Walker (nilearn's), truncated on the 0.01 grid, nilearn W."""
    import nibabel as nib
    from nilearn.glm.first_level.first_level import _yule_walker
    from nilearn.glm.regression import ARModel

    rng = np.random.default_rng(8)
    n, shape = 100, (4, 3, 2)
    dm = _block_design(n)
    X = dm.to_numpy()
    Y = _ar_noise(n, int(np.prod(shape)), [0.5, -0.2], rng)
    img = nib.Nifti1Image(Y.T.reshape(*shape, n), np.eye(4))
    model = FirstLevelModel(mask_img=False, noise_model="ar2", signal_scaling=False,
                            chunks={"voxel": 5})
    model.fit(img, design_matrices=dm)
    res = model.results_.compute()
    resid = Y - X @ np.linalg.pinv(X) @ Y
    expected = np.trunc(_yule_walker(resid.T, 2) * 100) / 100
    np.testing.assert_allclose(res["ar_coef"].values[0].T, expected, atol=1e-12)
    np.testing.assert_allclose(quantize_ar(np.array([0.567, -0.123, 1.7])), [0.56, -0.12, 0.99])
    for v in range(Y.shape[1]):
        fit = ARModel(X, expected[v]).fit(Y[:, v])
        np.testing.assert_allclose(res["beta"].values[0][:, v], fit.theta, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(res["dispersion"].values[0][v], fit.dispersion, rtol=1e-7)
    z = model.compute_contrast(np.eye(2, X.shape[1]), output_type="z_score")
    assert np.all(np.isfinite(z.get_fdata()))


def test_diagnostics_roundtrip(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(4)
    n, shape = 120, (5, 4, 3)
    dm = _block_design(n)
    Y = _ar_noise(n, int(np.prod(shape)), [0.6], rng) + 100.0
    img = nib.Nifti1Image(Y.T.reshape(*shape, n), np.eye(4))
    model = FirstLevelModel(mask_img=False, noise_model="ar1", whitening="exact",
                            chunks={"voxel": 17})
    model.fit(img, design_matrices=dm)
    ds = model.whitening_diagnostics(output_type="dataset").compute()
    assert ds.sizes["acf_lag"] == 3
    before, after = ds["acf_before"].values[0], ds["acf_after"].values[0]
    assert before[0].mean() > 0.4  # strongly autocorrelated OLS residuals
    assert abs(after[0].mean()) < 0.1  # whitened
    images = model.whitening_diagnostics(lags=2)
    assert images["acf_after"][0].shape == (*shape, 2)
    np.testing.assert_allclose(images["acf_before"][0].get_fdata()[..., 1].reshape(-1), before[1])
    z = model.compute_contrast(dm.columns[0]).get_fdata()
    model.to_zarr(tmp_path / "fit.zarr")
    reopened = open_model(tmp_path / "fit.zarr")
    ds2 = reopened.whitening_diagnostics(output_type="dataset").compute()
    np.testing.assert_array_equal(ds2["acf_after"].values, ds["acf_after"].values)
    np.testing.assert_array_equal(reopened.compute_contrast(dm.columns[0]).get_fdata(), z)
    with pytest.raises(ValueError, match="lags"):
        model.whitening_diagnostics(lags=[4])


def test_binned_default_has_no_diagnostics():
    import nibabel as nib

    rng = np.random.default_rng(1)
    n = 60
    dm = _block_design(n)
    img = nib.Nifti1Image(rng.normal(size=(2, 2, 2, n)) + 10, np.eye(4))
    model = FirstLevelModel(mask_img=False).fit(img, design_matrices=dm)
    assert "acf_before" not in model.results_
    with pytest.raises(ValueError, match="diagnostic"):
        model.whitening_diagnostics()
    with pytest.raises(ValueError, match="whitening"):
        FirstLevelModel(whitening="fancy").fit(img, design_matrices=dm)
