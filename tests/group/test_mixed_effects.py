"""Mixed effects with known first-level variances (FLAME1-like REML)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.second_level import SecondLevelModel as NilearnSLM
from scipy import optimize

from daskglm import SecondLevelModel
from daskglm.errors import GroupInputError
from daskglm.kernels.second_level import mixed_contrast_block, reml_between_variance


def _reml_loglik(s2, y, v, X):
    """Restricted log-likelihood, written out with n × n matrices (the reference)."""
    V = np.diag(s2 + v)
    Vi = np.linalg.inv(V)
    A = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(A, X.T @ Vi)
    return -0.5 * (np.linalg.slogdet(V)[1] + np.linalg.slogdet(A)[1] + y @ P @ y)


def test_reml_matches_direct_maximisation():
    rng = np.random.default_rng(0)
    n = 15
    X = np.c_[np.ones(n), rng.standard_normal(n)]
    v = rng.uniform(0.1, 3.0, (n, 8))
    Y = X @ [[0.5], [0.2]] + rng.standard_normal((n, 8)) * np.sqrt(0.8 + v)
    ours = reml_between_variance(Y, v, X)
    for j in range(8):
        res = optimize.minimize_scalar(lambda s, j=j: -_reml_loglik(s, Y[:, j], v[:, j], X), bounds=(0, 50),
                                       method="bounded", options={"xatol": 1e-10})
        best = max(res.x, 0.0)
        assert _reml_loglik(ours[j], Y[:, j], v[:, j], X) >= _reml_loglik(best, Y[:, j], v[:, j], X) - 1e-7
        assert abs(ours[j] - best) <= 1e-4 * (1 + best)


def test_zero_first_level_variance_is_ols():
    """With v_i = 0 the REML variance is the OLS residual variance: nilearn's t maps."""
    rng = np.random.default_rng(1)
    shape, n = (6, 7, 5), 10
    imgs = [nib.Nifti1Image(rng.standard_normal(shape) + 0.4, np.eye(4)) for _ in range(n)]
    zeros = [nib.Nifti1Image(np.zeros(shape), np.eye(4)) for _ in range(n)]
    design = pd.DataFrame({"intercept": np.ones(n), "age": rng.standard_normal(n)})
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4))
    ref = NilearnSLM(mask_img=mask).fit(imgs, design_matrix=design)
    ours = SecondLevelModel(mask_img=mask).fit(imgs, design_matrix=design, variance_input=zeros)
    for con in ("intercept", "age"):
        a = ours.compute_contrast(con, output_type="all")
        b = ref.compute_contrast(con, output_type="all")
        for name in ("stat", "z_score", "effect_size"):
            np.testing.assert_allclose(a[name].get_fdata(), b[name].get_fdata(), atol=1e-6, err_msg=name)
    assert ours.between_variance_ is not None


def _simulate(rng, n, n_vox, effect, between):
    v = rng.uniform(0.05, 4.0, (n, 1)) * rng.uniform(0.5, 1.5, (n, n_vox))  # heterogeneous subjects
    Y = effect + rng.standard_normal((n, n_vox)) * np.sqrt(between + v)
    return Y, v


def _ols_t(Y, X):
    beta, res, _, _ = np.linalg.lstsq(X, Y, rcond=None)
    s2 = ((Y - X @ beta) ** 2).sum(0) / (len(Y) - X.shape[1])
    return beta[0] / np.sqrt(s2 * np.linalg.inv(X.T @ X)[0, 0])


def test_simulation_nominal_fpr_and_power():
    """Known within/between variances: nominal false positive rate, power ≥ OLS.

    Averaged over five subject configurations (each draws which subjects are
    noisy); REML with n − p degrees of freedom is slightly liberal (≈ 0.058
    at α = 0.05 over 20 configurations, docs/statistics.md).
    """
    from scipy import stats

    n, n_vox, between = 16, 2000, 0.3
    X = np.ones((n, 1))
    crit = stats.t.isf(0.05, n - 1)
    fpr, power_mixed, power_ols, s2_median = [], [], [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        Y0, v0 = _simulate(rng, n, n_vox, 0.0, between)
        eff0, var0, s2 = mixed_contrast_block(Y0, v0, X, np.array([1.0]), "t")
        fpr.append(np.mean(eff0 / np.sqrt(var0) > crit))
        s2_median.append(np.median(s2))
        Y1, v1 = _simulate(rng, n, n_vox, 0.6, between)
        eff1, var1, _ = mixed_contrast_block(Y1, v1, X, np.array([1.0]), "t")
        power_mixed.append(np.mean(eff1 / np.sqrt(var1) > crit))
        power_ols.append(np.mean(_ols_t(Y1, X) > crit))
    assert 0.035 <= np.mean(fpr) <= 0.07, fpr
    assert abs(np.mean(s2_median) - between) < 0.15  # the between variance is recovered
    assert np.mean(power_mixed) >= np.mean(power_ols), (power_mixed, power_ols)


def test_first_level_variances_from_a_store(tmp_path):
    from daskglm.data.fiac import make_fiac_like
    from daskglm.studies.subjects import fit_subjects
    from tests.conftest import load_named_design

    subjects = {}
    for i in range(4):
        data = make_fiac_like(tmp_path / f"d{i}", shape=(8, 9, 8), n_scans=60, n_runs=1, seed=40 + i,
                              compress=False)
        subjects[f"{i}"] = {"run_imgs": [data["func1"]],
                            "design_matrices": [load_named_design(data["design_matrix1"])]}
    con = load_named_design(data["design_matrix1"]).columns[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = fit_subjects(subjects, tmp_path / "s.zarr", model_params={"mask_img": data["mask"]},
                             progress=False, raise_on_error=True).store
        model = SecondLevelModel(mask_img=data["mask"]).fit(store, variance_input="first_level")
        maps = model.compute_contrast(first_level_contrast=con, output_type="all")
        ols = SecondLevelModel(mask_img=data["mask"]).fit(store).compute_contrast(
            first_level_contrast=con, output_type="effect_size")
    inside = np.asarray(nib.load(data["mask"]).dataobj).astype(bool)
    assert np.isfinite(maps["z_score"].get_fdata()[inside]).all()
    assert (model.between_variance_.get_fdata()[inside] >= 0).all()
    assert not np.allclose(maps["effect_size"].get_fdata(), ols.get_fdata())  # weighted, not OLS
    with pytest.raises(GroupInputError, match="first_level"):
        SecondLevelModel().fit([data["mask"]] * 2, design_matrix=pd.DataFrame({"a": [1, 1]}),
                               variance_input="first_level")


def test_mixed_effects_give_nan_where_a_subject_has_no_value_and_match_elsewhere():
    """A NaN effect or variance (outside one subject's mask) gives NaN there, not a LinAlgError."""
    rng = np.random.default_rng(3)
    effects, variances = rng.normal(size=(12, 40)), rng.uniform(0.2, 2.0, size=(12, 40))
    design = np.c_[np.ones(12), rng.normal(size=12)]
    clean = mixed_contrast_block(effects, variances, design, np.eye(2), "F")
    effects[3, 5], variances[0, 7] = np.nan, np.inf
    holed = mixed_contrast_block(effects, variances, design, np.eye(2), "F")
    kept = np.setdiff1d(np.arange(40), [5, 7])
    for full, with_holes in zip(clean, holed):
        np.testing.assert_allclose(with_holes[..., kept], full[..., kept], rtol=1e-12)
        assert np.isnan(with_holes[..., [5, 7]]).all()
