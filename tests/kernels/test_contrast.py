"""Numeric contrast kernels against nilearn 0.14.1's own contrast code and brute force.

The per-voxel inputs (beta, dispersion, ``pinv(WX) pinv(WX)^T``) are taken from
``nilearn.glm.first_level.run_glm`` itself, so the comparisons isolate the
contrast arithmetic: t and F effects/variances, the statistic, p and z, the
multi-run combination and ``compute_fixed_effects``.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import scipy.linalg as spl
import scipy.stats as sps
from nilearn.glm.contrasts import compute_contrast, compute_fixed_effects
from nilearn.glm.first_level import run_glm

from daskglm.kernels.ar import N_BINS, OLS_BIN
from daskglm.kernels.contrast import (
    CONTRAST_MAPS,
    ContrastLayout,
    calibrated_variance,
    contrast_block,
    contrast_outputs,
    fixed_effect_sum,
    fixed_effects_params,
    satterthwaite_df,
    stack_contrast_block,
    unpack_contrast_outputs,
    z_score,
)
from daskglm.kernels.gram import GramTables

N_SCANS, N_VOX = 80, 60
T_CON = np.array([0.0, 1.0, -1.0, 0.0, 0.5])
F_CON = np.eye(5)[1:4]


def _data(seed: int):
    rng = np.random.default_rng(seed)
    t = np.arange(N_SCANS)
    X = np.c_[np.ones(N_SCANS), rng.normal(size=(N_SCANS, 2)), np.sin(t / 7.0), t / N_SCANS - 0.5]
    rho = rng.uniform(-0.2, 0.6, N_VOX)
    e = np.zeros((N_SCANS + 50, N_VOX))
    u = rng.normal(size=e.shape)
    for i in range(1, len(e)):
        e[i] = rho * e[i - 1] + u[i]
    Y = 100.0 + X[:, 1:3] @ rng.normal(size=(2, N_VOX)) + e[50:]
    return X, Y


def _nilearn_fit(seed: int, noise_model: str):
    """nilearn's labels and results, and the same fit as daskglm's per-voxel arrays.

    ``cov_table`` rows are nilearn's own ``normalized_cov_beta`` of each AR(1)
    bin, placed at daskglm's bin index (``rho = k / 100`` at ``k + 99``).
    """
    X, Y = _data(seed)
    labels, results = run_glm(Y, X, noise_model)
    q = X.shape[1]
    beta = np.empty((q, N_VOX))
    sigma2 = np.empty(N_VOX)
    rho = np.empty(N_VOX)
    index = np.empty(N_VOX, dtype=np.intp)
    table = np.zeros((N_BINS, q, q))
    for label, res in results.items():
        sel = labels == label
        value = 0.0 if noise_model == "ols" else float(np.atleast_1d(res.model.rho)[0])
        k = OLS_BIN + int(np.rint(value * 100))
        beta[:, sel] = res.theta
        sigma2[sel] = res.dispersion
        rho[sel] = value
        index[sel] = k
        table[k] = res.cov
    dof = float(next(iter(results.values())).df_residuals)
    return X, labels, results, beta, sigma2, rho, index, table, dof


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("kind", ["t", "F"])
def test_contrast_block_and_outputs_match_nilearn(noise_model, kind):
    X, labels, results, beta, sigma2, _, index, table, dof = _nilearn_fit(3, noise_model)
    con = T_CON if kind == "t" else F_CON
    ref = compute_contrast(labels, results, con, kind)
    effect, variance = contrast_block(beta, sigma2, index, table, con, kind)
    np.testing.assert_allclose(np.atleast_2d(effect), np.atleast_2d(ref.effect), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(variance, ref.variance, rtol=1e-10)
    dim = 1 if kind == "t" else F_CON.shape[0]
    packed = contrast_outputs(effect, variance, ref.dof, kind, dim)
    assert packed.shape == (dim + 4, N_VOX)
    maps = unpack_contrast_outputs(packed, dim)
    np.testing.assert_array_equal(maps["effect_size"], effect)
    np.testing.assert_array_equal(maps["effect_variance"], variance)
    np.testing.assert_allclose(maps["stat"], ref.stat(), rtol=1e-9)
    np.testing.assert_allclose(maps["p_value"], ref.p_value(), rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(maps["z_score"], ref.z_score(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["t", "F"])
def test_multi_run_combination_matches_nilearn_contrast_arithmetic(kind):
    """nilearn's FirstLevelModel combines runs as ``(c_1 + ... + c_R) * (1 / R)``."""
    con = T_CON if kind == "t" else F_CON
    dim = 1 if kind == "t" else F_CON.shape[0]
    refs, effects, variances, dofs = [], [], [], []
    for seed in (4, 5, 6):
        _, labels, results, beta, sigma2, _, index, table, dof = _nilearn_fit(seed, "ar1")
        refs.append(compute_contrast(labels, results, con, kind))
        e, v = contrast_block(beta, sigma2, index, table, con, kind)
        effects.append(e)
        variances.append(v)
        dofs.append(dof)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn: "approximate fixed effects on F"
        combined = refs[0]
        for r in refs[1:]:
            combined = combined + r
        combined = combined * (1.0 / len(refs))
    effect, variance = fixed_effect_sum(effects, variances)
    np.testing.assert_allclose(np.atleast_2d(effect), np.atleast_2d(combined.effect), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(variance, combined.variance, rtol=1e-9)
    maps = unpack_contrast_outputs(contrast_outputs(effect, variance, sum(dofs), kind, dim), dim)
    assert sum(dofs) == combined.dof
    np.testing.assert_allclose(maps["stat"], combined.stat(), rtol=1e-9)
    np.testing.assert_allclose(maps["p_value"], combined.p_value(), rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(maps["z_score"], combined.z_score(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("precision_weighted", [False, True])
def test_fixed_effects_params_match_nilearn_compute_fixed_effects(precision_weighted):
    rng = np.random.default_rng(7)
    n_runs = 3
    contrasts = rng.normal(size=(n_runs, N_VOX))
    variances = rng.uniform(0.05, 2.0, size=(n_runs, N_VOX))
    variances[0, :3] = 0.0  # floored at 1e-16 by both
    dofs = np.array([50.0, 70.0, 64.0])
    affine = np.diag([2.0, 2.0, 2.0, 1.0])

    def img(values):
        return nib.Nifti1Image(values.reshape(N_VOX, 1, 1), affine)

    mask = nib.Nifti1Image(np.ones((N_VOX, 1, 1), dtype=np.uint8), affine)
    ref = compute_fixed_effects(
        [img(c) for c in contrasts], [img(v) for v in variances], mask=mask,
        precision_weighted=precision_weighted, dofs=list(dofs),
    )
    ours = fixed_effects_params(contrasts, variances, precision_weighted, dofs)
    for got, want in zip(ours, ref):
        np.testing.assert_allclose(got, want.get_fdata().ravel(), rtol=1e-9, atol=1e-12)


def test_z_score_both_tails():
    p = np.array([1e-320, 1e-300, 1e-20, 1e-5, 0.025, 0.5, 0.975, 1 - 1e-12, 1.0])
    # from p alone: isf, clipped to [1e-300, 1 - 1e-16]
    clipped = np.clip(p, 1e-300, 1 - 1e-16)
    np.testing.assert_allclose(z_score(p), sps.norm.isf(clipped), rtol=1e-12)
    # with the CDF: the lower tail keeps its precision where 1 - p rounds
    t = np.array([-40.0, -9.0, -2.0, 0.0, 2.0, 9.0, 40.0])
    sf, cdf = sps.norm.sf(t), sps.norm.cdf(t)
    z = z_score(sf, cdf)
    finite = np.abs(t) < 37  # beyond, p clips at 1e-300 / 1 - 1e-16
    np.testing.assert_allclose(z[finite], t[finite], rtol=1e-9, atol=1e-9)
    assert z[0] < -8 and z[-1] > 37


@pytest.mark.parametrize(("stat_type", "dim"), [("t", 1), ("F", 1), ("F", 3)])
def test_sf_cdf_z_equal_scipy_stats_everywhere(stat_type, dim):
    """p is scipy.stats' sf and z is the two-tail formula with the full CDF, for any input shape."""
    from daskglm.kernels.contrast import ContrastStatistics

    dof = 57.0
    values = np.array([-np.inf, -40.0, -3.0, -1e-300, 0.0, 1e-300, 0.3, 2.0, 9.0, 45.0, np.inf, np.nan])
    dist = sps.t(dof) if stat_type == "t" else sps.f(dim, dof)
    stats = ContrastStatistics(np.zeros(dim), np.ones(1), dof, stat_type, dim)
    if stat_type == "F":  # F statistics are >= 0 (below its support scipy.stats says 1, fdtrc NaN)
        values = values[~(values < 0)]
    for stat in (values, np.array(-0.5 if stat_type == "t" else 0.5), np.array(2.5)):  # 1-d and 0-d
        sf, cdf = stats.sf_cdf(stat)
        np.testing.assert_array_equal(sf, dist.sf(stat))
        expected_z = z_score(dist.sf(stat), dist.cdf(stat))
        np.testing.assert_array_equal(z_score(sf, cdf), expected_z)


def test_stack_contrast_block_nilearn_whitening_equals_binned_tables():
    """Per-voxel Gram rebuilt from the lagged stack = nilearn's per-bin pinv table, same rho."""
    X, labels, results, beta, sigma2, rho, index, table, _ = _nilearn_fit(8, "ar1")
    stack = GramTables(X, 1, bias=False).gram_stack
    for con, kind in ((T_CON, "t"), (F_CON, "F")):
        want = contrast_block(beta, sigma2, index, table, con, kind)
        got = stack_contrast_block(beta, sigma2, rho[None], stack, con, kind, exact=False, df=60.0)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-7)


def _prais_winsten(X: np.ndarray, phi: float) -> np.ndarray:
    """Exact AR(1) whitening: first row times sqrt(1 - phi^2), then x_t - phi x_{t-1}."""
    out = np.empty_like(X)
    out[0] = np.sqrt(1 - phi**2) * X[0]
    out[1:] = X[1:] - phi * X[:-1]
    return out


def test_stack_contrast_block_exact_matches_brute_force_whitening():
    X, _ = _data(9)
    rng = np.random.default_rng(9)
    phi = rng.uniform(-0.7, 0.8, 5)
    beta = rng.normal(size=(X.shape[1], phi.size))
    sigma2 = rng.uniform(0.5, 2.0, phi.size)
    stack = GramTables(X, 1, bias=False).gram_stack
    effect, variance = stack_contrast_block(beta, sigma2, phi[None], stack, T_CON, "t", exact=True)
    np.testing.assert_allclose(effect, T_CON @ beta, rtol=1e-12)
    for v, f in enumerate(phi):
        wx = _prais_winsten(X, f)
        ref = T_CON @ np.linalg.solve(wx.T @ wx, T_CON) * sigma2[v]
        np.testing.assert_allclose(variance[v], ref, rtol=1e-9)


def test_satterthwaite_df_matches_delta_method_by_brute_force():
    """AR(1): ``1/nu = 1/df + g^2 (1 - phi^2) / (2 df)``, ``g = d log var / d phi``."""
    X, _ = _data(10)
    df = float(N_SCANS - X.shape[1])
    phi = np.array([-0.5, 0.0, 0.3, 0.7])
    stack = GramTables(X, 1, bias=False).gram_stack
    nu = satterthwaite_df(phi[None], stack, T_CON, df)

    def logvar(f):
        wx = _prais_winsten(X, f)
        return np.log(T_CON @ np.linalg.solve(wx.T @ wx, T_CON))

    h = 1e-5
    for v, f in enumerate(phi):
        g = (logvar(f + h) - logvar(f - h)) / (2 * h)
        ref = 1.0 / (1.0 / df + 0.5 * g**2 * (1 - f**2) / df)
        np.testing.assert_allclose(nu[v], ref, rtol=1e-6)
    assert np.all(nu <= df) and np.all(nu > 0)


def test_calibrated_variance_carries_the_effective_df_p_value():
    rng = np.random.default_rng(11)
    df = 60.0
    nu = rng.uniform(20.0, 60.0, 50)
    effect = rng.normal(scale=3.0, size=50)
    variance = rng.uniform(0.5, 2.0, 50)
    new = calibrated_variance(effect, variance, "t", 1, nu, df)
    np.testing.assert_allclose(
        sps.t.sf(np.abs(effect) / np.sqrt(new), df),
        sps.t.sf(np.abs(effect) / np.sqrt(variance), nu), rtol=1e-8,
    )
    effect_f = rng.normal(scale=2.0, size=(3, 50))
    new_f = calibrated_variance(effect_f, variance, "F", 3, nu, df)
    stat = (effect_f**2).sum(0) / 3
    np.testing.assert_allclose(
        sps.f.sf(stat / new_f, 3, df), sps.f.sf(stat / variance, 3, nu), rtol=1e-7
    )
    # nu = df: nothing to calibrate
    np.testing.assert_allclose(calibrated_variance(effect, variance, "t", 1, np.full(50, df), df),
                               variance, rtol=1e-9)


def test_contrast_block_f_effect_is_nilearn_whitened_effect():
    """F effect ``sqrtm(inv(C G C^T)) C beta`` on one table entry, by scipy directly."""
    rng = np.random.default_rng(12)
    q = 5
    A = rng.normal(size=(q, q))
    G = A @ A.T + q * np.eye(q)
    table = np.zeros((N_BINS, q, q))
    table[OLS_BIN] = G
    beta = rng.normal(size=(q, 7))
    effect, variance = contrast_block(beta, np.ones(7), np.full(7, OLS_BIN), table, F_CON, "F")
    ref = np.real(spl.sqrtm(np.linalg.inv(F_CON @ G @ F_CON.T))) @ (F_CON @ beta)
    np.testing.assert_allclose(effect, ref, rtol=1e-10)
    np.testing.assert_array_equal(variance, np.ones(7))


# ------------------------------------------------------------ the packed rows
@pytest.mark.parametrize(("stat_type", "dim"), [("t", 1), ("F", 1), ("F", 3)])
def test_contrast_layout_is_what_contrast_outputs_packs(stat_type, dim):
    rng = np.random.default_rng(3)
    layout = ContrastLayout.for_contrast(stat_type, dim)
    effect = rng.normal(size=(dim, N_VOX)) if stat_type == "F" else rng.normal(size=N_VOX)
    variance = rng.uniform(0.5, 2.0, N_VOX)
    packed = contrast_outputs(effect, variance, 40.0, stat_type, dim)
    assert packed.shape == (layout.n_rows, N_VOX) == (dim + 4, N_VOX)
    maps = layout.unpack(packed, squeeze=stat_type != "F")
    assert tuple(maps) == CONTRAST_MAPS
    np.testing.assert_array_equal(maps["effect_size"], effect)
    np.testing.assert_array_equal(maps["effect_variance"], variance)
    assert all(maps[name].shape == (N_VOX,) for name in CONTRAST_MAPS[1:])
    for name in CONTRAST_MAPS[1:]:  # the function the first-level model calls: the same rows
        np.testing.assert_array_equal(unpack_contrast_outputs(packed, dim)[name], maps[name])
    both = ContrastLayout.pack_effect_variance(effect, variance)
    assert both.shape[0] == layout.n_effect_variance_rows
    split_effect, split_variance = layout.split_effect_variance(both, squeeze=stat_type != "F")
    np.testing.assert_array_equal(split_effect, effect)
    np.testing.assert_array_equal(split_variance, variance)


def test_contrast_layout_extra_rows_and_squeeze():
    rng = np.random.default_rng(4)
    effect, variance, extra = rng.normal(size=(1, N_VOX)), rng.uniform(1, 2, N_VOX), rng.uniform(0, 1, N_VOX)
    packed = contrast_outputs(effect, variance, 20.0, "F", 1, extra)
    layout = ContrastLayout.for_contrast("F", 1, ("between_variance",))
    assert packed.shape[0] == layout.n_rows == 6 and layout.row("between_variance") == 5
    np.testing.assert_array_equal(layout.unpack(packed)["between_variance"], extra)
    assert layout.unpack(packed)["effect_size"].shape == (N_VOX,)  # q == 1: squeezed by default
    assert layout.unpack(packed, squeeze=False)["effect_size"].shape == (1, N_VOX)  # F kept 2-D on request
    with pytest.raises(KeyError, match="effect_size"):
        layout.row("effect_size")
    with pytest.raises(ValueError, match="layout has 6"):
        layout.pack(effect, variance, extra)


def test_output_types_are_nilearns_and_name_the_packed_rows():
    """One definition of the five maps: nilearn's names and ``"all"`` order; the packed rows, reordered."""
    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    from daskglm.glm.contrasts import OUTPUT_SUFFIX
    from daskglm.glm.contrasts import OUTPUT_TYPES as API_OUTPUT_TYPES
    from daskglm.kernels.contrast import OUTPUT_TYPES

    rng = np.random.default_rng(0)
    img = nib.Nifti1Image((100 + rng.normal(size=(2, 2, 2, 20))).astype(np.float32), np.eye(4))
    design = pd.DataFrame({"a": rng.normal(size=20), "constant": np.ones(20)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = NilearnModel(mask_img=False).fit(img, design_matrices=design).compute_contrast(
            "a", output_type="all")
    assert tuple(maps) == OUTPUT_TYPES
    assert API_OUTPUT_TYPES is OUTPUT_TYPES and tuple(OUTPUT_SUFFIX) == OUTPUT_TYPES
    assert sorted(CONTRAST_MAPS) == sorted(OUTPUT_TYPES)
    assert CONTRAST_MAPS == ("effect_size", "effect_variance", "stat", "p_value", "z_score")
