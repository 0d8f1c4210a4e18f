"""FirstLevelModel: parameters, whitening modes, per-scan outputs and data hygiene.

- Unknown parameters are refused before any data are read; a model that is
  not fitted refuses contrasts and stores.
- Whitening: ``whitening="exact"`` equals a direct numpy GLS with the model's
  own AR coefficients; binned ``arN`` quantizes per voxel as nilearn does;
  whitening diagnostics survive a store round trip.
- ``minimize_memory=False``: ``residuals_``, ``predicted_``, ``r_square_``
  against nilearn 0.14.1.
- Constant and all-zero voxels inside the mask have (numerically) zero
  residuals.  nilearn returns finite values there that are driven by rounding
  noise (e.g. z of -1.6 for an all-zero voxel under mean scaling, 0 for a
  constant one).  daskglm detects series that are constant to machine
  precision (``daskglm.kernels.fit.constant_voxels``) and gives them exact
  outputs: beta = level x pinv(X) 1, dispersion 0, rho 0, hence effect 0,
  variance 0, stat 0 and z 0 for any contrast not involving the constant
  (``test_degenerate_voxels_are_quiet``).  The special-voxel run is ``hdata``
  (``tests/conftest.py``); its non-finite values are tested in tests/space/test_volume.py.
- Input files are never modified: byte checksums before and after a full
  fit, contrast, ``to_zarr`` and ``open_model`` are equal, and in-memory input
  arrays keep their NaNs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

from daskglm import FirstLevelModel, open_model
from daskglm.data.fiac import make_fiac_like
from daskglm.first_level.model import NotFittedError
from daskglm.kernels.ar import quantize_ar
from tests._reference import _ar_noise, _block_design, _exact_whitener
from tests.conftest import N_SCANS, OUTPUTS, SHAPE, _model, load_designs, raises_fast


# ---------------------------------------------------------------- parameters
def test_unknown_noise_model(vdata, no_heavy_work):
    with raises_fast(ValueError, "noise_model", "'garch'"):
        _model(vdata, noise_model="garch").fit(vdata["func1"], design_matrices=vdata["design1"])


def test_unknown_whitening(vdata, no_heavy_work):
    with raises_fast(ValueError, "whitening", "'bogus'"):
        _model(vdata, whitening="bogus").fit(vdata["func1"], design_matrices=vdata["design1"])


def test_unknown_signal_scaling(vdata, no_heavy_work):
    with raises_fast(ValueError, "signal_scaling", "7"):
        _model(vdata, signal_scaling=7).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_contrast_before_fit(vdata):
    model = _model(vdata)
    with raises_fast(NotFittedError, "not fitted", "fit"):
        model.compute_contrast([1.0])
    with raises_fast(NotFittedError, "not fitted"):
        model.to_zarr(vdata["root"] / "never.zarr")
    assert not (vdata["root"] / "never.zarr").exists()


# ----------------------------------------------------------------- whitening
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


# ---------------------------------------------------------- per-scan outputs
@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
@pytest.mark.parametrize("data_name", ["fiac_small", "fiac_small_nii"])
def test_timeseries_outputs_match_nilearn(request, data_name, noise_model, tmp_path):
    data = request.getfixturevalue(data_name)
    designs = load_designs(data)
    runs = [data["func1"], data["func2"]]
    kw = dict(mask_img=data["mask"], smoothing_fwhm=5, noise_model=noise_model, minimize_memory=False)
    ref = NilearnFLM(**kw).fit(runs, design_matrices=designs)
    ours = FirstLevelModel(**kw).fit(runs, design_matrices=designs)
    ours.write_timeseries(tmp_path / "timeseries.zarr")
    mask = nib.load(data["mask"]).get_fdata() > 0
    labels = [np.asarray(lab, dtype=float) for lab in ref.labels_]
    for run in range(2):
        # voxels whose AR(1) bin differs from nilearn's (about 1 in 5000) are excluded
        same_bin = np.isclose(labels[run], ours.labels_[run])
        assert same_bin.mean() > 0.99
        # r_square_: 5e-5, since float32 data are smoothed with float32 sums (a few ulp from
        # scipy's float64 sums); a voxel with a small signal change reaches 1.02e-5
        for name, atol in (("residuals_", 2e-4), ("predicted_", 2e-4), ("r_square_", 5e-5)):
            a = np.asarray(getattr(ours, name)[run].get_fdata())[mask]
            b = np.asarray(getattr(ref, name)[run].get_fdata())[mask]
            np.testing.assert_allclose(a[same_bin], b[same_bin], atol=atol, err_msg=name)
    assert (tmp_path / "timeseries.zarr" / "run1" / "residuals").is_dir()


@pytest.mark.parametrize("signal_scaling", [False, (0, 1)])
def test_timeseries_match_nilearn_for_every_signal_scaling(fiac_small, signal_scaling, tmp_path):
    """The second pass scales the data exactly as the fit did (``False == 0`` in Python)."""
    designs = load_designs(fiac_small)
    kw = dict(mask_img=fiac_small["mask"], noise_model="ols", signal_scaling=signal_scaling,
              minimize_memory=False)
    ref = NilearnFLM(**kw).fit(fiac_small["func1"], design_matrices=designs[0])
    ours = FirstLevelModel(**kw).fit(fiac_small["func1"], design_matrices=designs[0])
    ours.write_timeseries(tmp_path / "timeseries.zarr")
    mask = nib.load(fiac_small["mask"]).get_fdata() > 0
    for name in ("residuals_", "predicted_"):
        a = np.asarray(getattr(ours, name)[0].get_fdata())[mask]
        b = np.asarray(getattr(ref, name)[0].get_fdata())[mask]
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, atol=1e-5 * scale, err_msg=name)


def test_timeseries_are_lazy_and_need_minimize_memory_false(fiac_small):
    designs = load_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(fiac_small["func1"], design_matrices=designs[0])
    with pytest.raises(AttributeError, match="minimize_memory=False"):
        _ = model.residuals_
    model = FirstLevelModel(mask_img=fiac_small["mask"], minimize_memory=False).fit(
        fiac_small["func1"], design_matrices=designs[0]
    )
    residuals = model.residuals_[0]
    assert residuals.shape == (14, 16, 14, 80)
    assert type(residuals.dataobj).__module__.startswith("dask")  # not loaded in RAM
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FutureWarning):
            _ = model.residuals


def test_reopened_model_cannot_stream_residuals(fiac_small, tmp_path):
    designs = load_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"], minimize_memory=False).fit(
        fiac_small["func1"], design_matrices=designs[0]
    )
    model.to_zarr(tmp_path / "fit.zarr")
    with pytest.raises(ValueError, match="original runs"):
        _ = open_model(tmp_path / "fit.zarr").residuals_


# -------------------------------------------------------------- data hygiene
def test_all_maps_finite_including_degenerate_voxels(both, hdata):
    name, ours, _, theirs = both
    mask = hdata["mask_array"]
    for output in OUTPUTS:
        assert np.isfinite(ours[output][mask]).all(), f"{name}: non-finite {output}"
        # nilearn is finite here too (documented in the module docstring)
        assert np.isfinite(theirs[output][mask]).all()
    p = ours["p_value"][mask]
    assert ((p >= 0) & (p <= 1)).all()


def test_degenerate_voxels_are_quiet(both, hdata):
    """Constant/zero voxels: variance >= 0 and no spurious huge statistics."""
    name, ours, _, _ = both
    if name == "ar1-smoothed":
        pytest.skip("smoothing mixes neighbours into the degenerate voxels")
    for voxel in ("zero", "constant", "all_nan"):
        v = hdata["special"][voxel]
        assert ours["effect_variance"][v] >= 0, voxel
        assert abs(ours["z_score"][v]) < 10, voxel


def test_in_memory_nan_image_is_not_modified(hdata):
    bold = hdata["bold_array"].copy()
    img = nib.Nifti1Image(bold, hdata["affine"])
    n_nan = int(np.isnan(bold).sum())
    model = FirstLevelModel(mask_img=hdata["mask"], noise_model="ols")
    model.fit(img, design_matrices=hdata["design"])
    with pytest.warns(UserWarning, match="Non-finite values"):
        model.compute_contrast(hdata["contrast"])
    assert int(np.isnan(np.asarray(img.dataobj)).sum()) == n_nan
    np.testing.assert_array_equal(np.asarray(img.dataobj), hdata["bold_array"])


def _checksums(paths) -> dict[str, tuple[str, int]]:
    out = {}
    for p in paths:
        p = Path(p)
        out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def test_inputs_never_modified(tmp_path):
    data = make_fiac_like(tmp_path / "in", shape=SHAPE, n_scans=N_SCANS, seed=7, n_runs=2)
    plain = make_fiac_like(tmp_path / "in_nii", shape=SHAPE, n_scans=N_SCANS, seed=8, n_runs=1,
                           compress=False)
    inputs = [data["func1"], data["func2"], data["mask"], data["design_matrix1"],
              data["design_matrix2"], data["events1"], data["events2"], plain["func1"],
              plain["design_matrix1"], plain["mask"]]
    for p in inputs:  # read-only files must not be a problem either
        os.chmod(p, 0o444)
    before = _checksums(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(mask_img=data["mask"], smoothing_fwhm=5.0)
        model.fit([data["func1"], data["func2"]],
                  design_matrices=[data["design_matrix1"], data["design_matrix2"]])
        model.compute_contrast([1.0, -1.0], output_type="all")
        model.to_zarr(tmp_path / "fit.zarr")
        open_model(tmp_path / "fit.zarr").compute_contrast([1.0, -1.0])
        events_model = FirstLevelModel(t_r=data["t_r"], mask_img=None, noise_model="ols")
        events_model.fit(data["func1"], events=data["events1"]).compute_contrast("constant")
        plain_model = FirstLevelModel(mask_img=plain["mask"])
        plain_model.fit(plain["func1"], design_matrices=plain["design_matrix1"])
        plain_model.to_zarr(tmp_path / "plain.zarr")
    assert _checksums(inputs) == before


# ------------------------------------------------------------------ n <= p
@pytest.mark.parametrize("n_regressors", [5, 7])
@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_designs_with_as_many_columns_as_scans_fit_as_nilearn(n_regressors, noise_model):
    """nilearn fits n <= p with the pseudo-inverse: same effects, and z / p undefined (NaN)."""
    import warnings

    from nilearn._utils.data_gen import generate_fake_fmri_data_and_design
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    mask, fmri, designs = generate_fake_fmri_data_and_design(shapes=[(7, 8, 9, 5)], rk=n_regressors)
    inside = np.asarray(mask.dataobj) > 0
    con = np.eye(n_regressors)[0]
    with pytest.warns(RuntimeWarning, match="no residual degrees of freedom"):
        FirstLevelModel(mask_img=mask).fit(fmri[0], design_matrices=designs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both tools divide by n - p
        ours = FirstLevelModel(mask_img=mask, noise_model=noise_model).fit(fmri[0], design_matrices=designs[0])
        theirs = NilearnModel(mask_img=mask, noise_model=noise_model).fit(fmri[0], design_matrices=designs[0])
        a = {k: v.get_fdata()[inside] for k, v in ours.compute_contrast(con, output_type="all").items()}
        b = {k: v.get_fdata()[inside] for k, v in theirs.compute_contrast(con, output_type="all").items()}
    np.testing.assert_allclose(a["effect_size"], b["effect_size"], rtol=1e-8, atol=1e-9)
    for name in ("z_score", "p_value"):
        assert np.isnan(a[name]).all() and np.isnan(b[name]).all(), name
    if n_regressors == 5:  # n == p: infinite variance, stat 0 in both
        np.testing.assert_array_equal(a["stat"], b["stat"])
        assert np.isinf(a["effect_variance"]).all() and np.isinf(b["effect_variance"]).all()
    else:  # n < p: negative residual degrees of freedom, variance and stat undefined in both
        for name in ("stat", "effect_variance"):
            assert np.isnan(a[name]).all() and np.isnan(b[name]).all(), name


@pytest.mark.parametrize("standardize", [True, "zscore_sample", "psc"])
def test_standardize_is_refused_not_ignored(vdata, standardize):
    """nilearn's masker would z-score each voxel; daskglm does not, so it says so instead of ignoring it."""
    model = FirstLevelModel(mask_img=vdata["mask"], standardize=standardize)
    with pytest.raises(ValueError, match="standardize=.* is not supported"):
        model.fit(vdata["func1"], design_matrices=vdata["design1"])


def test_standardize_false_and_none_fit(vdata):
    for value in (False, None):
        model = FirstLevelModel(mask_img=vdata["mask"], standardize=value, noise_model="ols")
        assert model.fit(vdata["func1"], design_matrices=vdata["design1"]).n_elements_ > 0
