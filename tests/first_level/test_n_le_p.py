"""As many or more design columns than scans (n ≤ p), or a rank-deficient design: nilearn's numbers.

What nilearn 0.14.1 does there (``run_glm``, ``OLSModel``, ``Contrast``):

- ``β = pinv(WX) WY``.  When ``rank X = n`` the system ``Xβ = Y`` is solved
  exactly and, W being invertible, ``pinv(WX) WY`` is its minimum-norm solution
  ``pinv(X) Y`` whatever the AR coefficient: t effects are the OLS min-norm ones.
- ``σ² = SSE_w / (n − p)``: negative for n < p (SSE ≥ 0), ``inf`` for n = p.
  A t contrast takes ``sd = sqrt(c G cᵀ σ²)``: NaN variance, stat, z and p for
  n < p; an F contrast keeps ``variance = σ²`` (< 0) and floors it at 1e-50 in
  the statistic (``F`` ~ 1e50), with p and z from ``df = n − rank X`` (NaN when 0).
- With ``rank X = n`` the OLS residuals are rounding noise (~1e-14), so
  nilearn's AR(1) bin, and with it the whitened F effect
  ``sqrtm(inv(C G_ρ Cᵀ)) Cβ``, is set by that noise; daskglm takes ρ = 0 there
  (the only AR estimate zero residuals support), so only that F effect (and the
  F statistic's ~1e50 value built on it) differ.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.linalg as spl
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

from daskglm import FirstLevelModel

SHAPE = (4, 4, 3)
OUTPUTS = ("effect_size", "effect_variance", "stat", "z_score", "p_value")


def _case(n_scans, n_cols, rank, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_scans, rank)) @ rng.standard_normal((rank, n_cols))
    X[:, 0] = 1.0 if rank == min(n_scans, n_cols) else X[:, 0]
    data = 100 + 5 * rng.standard_normal(SHAPE + (n_scans,))
    design = pd.DataFrame(X, columns=[f"c{i}" for i in range(n_cols)])
    return design, nib.Nifti1Image(data, np.eye(4)), data.reshape(-1, n_scans).T


def _fit_both(design, img, noise_model):
    mask = nib.Nifti1Image(np.ones(SHAPE, np.uint8), np.eye(4))
    kw = dict(mask_img=mask, noise_model=noise_model, signal_scaling=False, minimize_memory=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (FirstLevelModel(**kw).fit(img, design_matrices=design),
                NilearnFLM(**kw).fit(img, design_matrices=design))


def _maps(model, con):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.compute_contrast(con, output_type="all")
    return {k: np.asarray(out[k].get_fdata()).reshape(-1, *([] if out[k].ndim == 3 else [out[k].shape[-1]]))
            for k in OUTPUTS}


def _same(ours, ref, label, rtol=1e-7):
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{label}: NaN pattern")
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=1e-9, equal_nan=True, err_msg=label)


@pytest.mark.parametrize(("n_scans", "n_cols", "rank", "noise_model"), [
    (8, 10, 8, "ar1"),    # n < p, exact fit
    (10, 10, 10, "ar1"),  # n = p, exact fit
    (10, 12, 9, "ar1"),   # n < p, rank-deficient: real residuals, real AR(1)
    (14, 12, 9, "ar1"),   # n > p, rank-deficient
    (8, 10, 8, "ols"),
    (10, 12, 9, "ols"),
])
def test_matches_nilearn(n_scans, n_cols, rank, noise_model):
    design, img, Y = _case(n_scans, n_cols, rank, seed=n_scans + n_cols + rank)
    ours, ref = _fit_both(design, img, noise_model)
    exact_fit = rank == n_scans
    # t: every output, NaN pattern included; the effect is the OLS min-norm one when the fit is exact
    a, b = _maps(ours, "c1 - c2"), _maps(ref, "c1 - c2")
    for k in OUTPUTS:
        _same(a[k], b[k], f"t/{k}")
    if exact_fit:
        c = np.zeros(n_cols)
        c[1], c[2] = 1, -1
        np.testing.assert_allclose(a["effect_size"], c @ np.linalg.pinv(design.values) @ Y, rtol=1e-9, atol=1e-9)
    # F: NaN pattern of every output; numbers as nilearn's except the noise-set whitened effect of an exact fit
    C = np.eye(n_cols)[1:4]
    a, b = _maps(ours, C), _maps(ref, C)
    for k in OUTPUTS:
        np.testing.assert_array_equal(np.isnan(a[k]), np.isnan(b[k]), err_msg=f"F/{k}: NaN pattern")
    if not exact_fit or noise_model == "ols":
        for k in OUTPUTS:
            _same(a[k], b[k], f"F/{k}", rtol=1e-6)
        return
    beta = np.linalg.pinv(design.values) @ Y
    G = np.linalg.pinv(design.values) @ np.linalg.pinv(design.values).T  # ρ = 0
    whitened = np.real(spl.sqrtm(np.linalg.inv(C @ G @ C.T))) @ C @ beta
    np.testing.assert_allclose(a["effect_size"].reshape(-1, 3).T, whitened, rtol=1e-6, atol=1e-8)
    if n_scans < n_cols:  # σ² a tiny negative, F at nilearn's 1e-50 floor, df 0: z and p NaN
        assert (np.abs(a["effect_variance"]) < 1e-20).all() and (a["effect_variance"] <= 0).all()
        assert (a["stat"] > 1e40).all() and (b["stat"] > 1e40).all()
    else:  # σ² = inf: F = 0
        assert np.isinf(a["effect_variance"]).all() and (a["stat"] == 0).all()
        _same(a["effect_variance"], b["effect_variance"], "F/effect_variance")
        _same(a["stat"], b["stat"], "F/stat")
