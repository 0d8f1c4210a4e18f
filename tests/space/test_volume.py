"""Mask preparation, grid checks, smoothing parameters and non-finite BOLD values.

A given mask on another grid makes the runs be resampled onto it (nilearn's
behaviour, see test_resampling); it must not be empty, and all runs share one grid; bad smoothing widths are refused before any data
are read.  Non-finite BOLD values (nilearn 0.14.1 for reference): NaN/inf
become 0 before anything else, as nilearn's ``smooth_array(ensure_finite=True)``
does (nilearn silently; daskglm warns).  Maps then equal nilearn's, including
for voxels with a few non-finite scans; an all-NaN voxel is an all-zero voxel.
Degenerate voxels (zero, constant, all NaN) are left out of the comparison:
nilearn's values there are driven by rounding noise (see test_model).  The
special-voxel run and both tools' maps come from ``hdata`` and ``both``
(``tests/conftest.py``).
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel
from daskglm.errors import NiftiInputError
from tests.conftest import N_SCANS, OUTPUTS, SHAPE, _model, raises_fast


# ------------------------------------------------------------- mask and grid
def test_mask_on_another_grid_resamples_the_runs(vdata):
    """nilearn resamples the runs onto a mask's grid (with its warning); the maps follow the mask."""
    affine = vdata["affine"].copy()
    affine[0, 3] += 7.0
    mask = nib.Nifti1Image(np.ones((10, 14, 12), np.uint8), affine)
    with pytest.warns(UserWarning, match="imgs are being resampled to the mask_img resolution"):
        model = FirstLevelModel(mask_img=mask).fit(vdata["func1"], design_matrices=vdata["design1"])
    assert model.mask_img_.shape == (10, 14, 12)
    assert np.allclose(model.mask_img_.affine, affine)


def test_mask_that_is_not_3d(vdata, no_heavy_work):
    mask = nib.Nifti1Image(np.ones((*SHAPE, 2), np.uint8), vdata["affine"])
    with raises_fast(NiftiInputError, "3D image"):
        FirstLevelModel(mask_img=mask).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_empty_mask(vdata, no_heavy_work):
    mask = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), vdata["affine"])
    with raises_fast(NiftiInputError, "mask is empty"):
        FirstLevelModel(mask_img=mask).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_missing_mask_file(vdata, no_heavy_work):
    path = str(vdata["root"] / "no_mask.nii.gz")
    with raises_fast(FileNotFoundError, path):
        FirstLevelModel(mask_img=path).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_runs_with_different_affines(vdata, no_heavy_work):
    affine = vdata["affine"].copy()
    affine[1, 3] -= 4.5
    img = nib.load(vdata["func2"])
    moved = nib.Nifti1Image(np.zeros(img.shape, np.float32), affine)
    with raises_fast(NiftiInputError, "Run 1", "different affine", f"{affine[1, 3]:g}"):
        _model(vdata).fit([vdata["func1"], moved], design_matrices=[vdata["design1"], vdata["design2"]])


def test_runs_with_different_shapes(vdata, no_heavy_work):
    other = nib.Nifti1Image(np.zeros((12, 14, 10, N_SCANS), np.float32), vdata["affine"])
    with raises_fast(NiftiInputError, "Run 1", "(12, 14, 10)"):
        _model(vdata).fit([vdata["func1"], other], design_matrices=[vdata["design1"], vdata["design2"]])


# ----------------------------------------------------------------- smoothing
@pytest.mark.parametrize("fwhm", [-3.0, [4.0, -1.0, 4.0], float("nan"), [4.0, 4.0]])
def test_negative_or_malformed_smoothing(vdata, no_heavy_work, fwhm):
    with raises_fast(ValueError, "smoothing_fwhm", repr(fwhm)):
        _model(vdata, smoothing_fwhm=fwhm).fit(vdata["func1"], design_matrices=vdata["design1"])


@pytest.mark.parametrize("fwhm", [1e6, float("inf")])
def test_absurd_smoothing(vdata, no_heavy_work, fwhm):
    with raises_fast(ValueError, "smoothing_fwhm"):
        _model(vdata, smoothing_fwhm=fwhm).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_non_numeric_smoothing(vdata, no_heavy_work):
    with raises_fast(TypeError, "smoothing_fwhm", "'wide'"):
        _model(vdata, smoothing_fwhm="wide").fit(vdata["func1"], design_matrices=vdata["design1"])


# ----------------------------------------------------------- non-finite BOLD
def _regular_voxels(hdata, include_partial_nan: bool) -> np.ndarray:
    """In-mask voxels minus the degenerate ones (and, for smoothing, their neighbours)."""
    keep = hdata["mask_array"].copy()
    degenerate = ["zero", "constant", "all_nan"] + ([] if include_partial_nan else ["one_nan", "one_inf", "few_nan"])
    for name in degenerate:
        keep[hdata["special"][name]] = False
    return keep


def test_non_finite_bold_warns(both):
    _, _, caught, _ = both
    messages = [str(w.message) for w in caught]
    assert any("Non-finite values" in m and "replaced by 0" in m for m in messages), messages


def test_non_finite_bold_matches_nilearn(both, hdata):
    name, ours, _, theirs = both
    # with smoothing the NaN -> 0 spreads into the neighbours the same way in both tools;
    # degenerate voxels are excluded (rounding-driven values, see module docstring)
    keep = _regular_voxels(hdata, include_partial_nan=True)
    for output in OUTPUTS:
        a, b = ours[output][keep], theirs[output][keep]
        scale = max(1.0, float(np.abs(b).max()))
        close = np.isclose(a, b, rtol=1e-3, atol=1e-4 * scale)
        # AR(1) bins may flip at a 0.01 boundary on a few voxels (design notes)
        assert close.mean() > 0.99, f"{name}/{output}: {np.mean(~close):.2%} of voxels differ"
    for voxel in ("one_nan", "one_inf", "few_nan"):
        v = hdata["special"][voxel]
        assert np.isclose(ours["z_score"][v], theirs["z_score"][v], rtol=1e-3, atol=1e-3), voxel


def test_all_nan_voxel_equals_all_zero_voxel(both, hdata):
    name, ours, _, _ = both
    if name == "ar1-smoothed":
        pytest.skip("smoothing mixes in different neighbours")
    special = hdata["special"]
    for output in OUTPUTS:
        assert ours[output][special["all_nan"]] == ours[output][special["zero"]], output


# ------------------------------------------- nilearn maskers given as mask_img
def _fake(shape=(7, 8, 9, 30), rk=3):
    from nilearn._utils.data_gen import generate_fake_fmri_data_and_design

    return generate_fake_fmri_data_and_design(shapes=[shape], rk=rk)


def test_unfitted_masker_is_nilearns_error():
    from nilearn.maskers import NiftiMasker

    mask, fmri, designs = _fake()
    with pytest.raises(ValueError, match="NiftiMasker instance is not fitted yet"):
        FirstLevelModel(mask_img=NiftiMasker(mask)).fit(fmri[0], design_matrices=designs[0])


@pytest.mark.parametrize("masker_fwhm", [None, 6.0])
def test_fitted_masker_takes_over_mask_and_smoothing(masker_fwhm):
    """nilearn uses the given masker as masker_: its mask and its smoothing, not the model's."""
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel
    from nilearn.maskers import NiftiMasker

    mask, fmri, designs = _fake()
    masker = NiftiMasker(mask, smoothing_fwhm=masker_fwhm).fit()
    # OLS: nilearn's fake data (means near 0, no constant) bins AR(1) differently on a few voxels
    ours = FirstLevelModel(mask_img=masker, smoothing_fwhm=3.0, noise_model="ols").fit(
        fmri[0], design_matrices=designs[0])
    theirs = NilearnModel(mask_img=masker, smoothing_fwhm=3.0, noise_model="ols").fit(
        fmri[0], design_matrices=designs[0])
    assert ours.masker_ is masker
    a = ours.compute_contrast(np.eye(3)[0]).get_fdata()
    b = theirs.compute_contrast(np.eye(3)[0]).get_fdata()
    inside = np.asarray(mask.dataobj) > 0
    np.testing.assert_allclose(a[inside], b[inside], atol=1e-6)


def test_masker_with_target_grid():
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel
    from nilearn.maskers import NiftiMasker

    mask, fmri, designs = _fake()
    masker = NiftiMasker(mask, target_affine=np.diag([1.5, 1.5, 1.5, 1.0]), target_shape=(5, 6, 6)).fit()
    ours = FirstLevelModel(mask_img=masker, noise_model="ols").fit(fmri[0], design_matrices=designs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = NilearnModel(mask_img=masker, noise_model="ols").fit(fmri[0], design_matrices=designs[0])
    a = ours.compute_contrast(np.eye(3)[0])
    b = theirs.compute_contrast(np.eye(3)[0])
    assert a.shape == b.shape == (5, 6, 6)
    inside = np.asarray(masker.mask_img_.dataobj) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        varying = masker.transform(fmri[0]).std(axis=0) > 1e-6  # outside the data: constant (test_model)
    np.testing.assert_allclose(a.get_fdata()[inside][varying], b.get_fdata()[inside][varying], atol=1e-6)
    assert varying.mean() > 0.5


def test_masker_with_temporal_filtering_is_refused():
    from nilearn.maskers import NiftiMasker

    mask, fmri, designs = _fake()
    masker = NiftiMasker(mask, detrend=True).fit()
    with pytest.raises(ValueError, match="detrend"):
        FirstLevelModel(mask_img=masker).fit(fmri[0], design_matrices=designs[0])


def test_epi_mask_of_a_tiny_image_is_a_clear_error():
    """nilearn's masking fails inside numpy on such images; ours names the way out."""
    img = nib.Nifti1Image(np.zeros((1, 1, 1, 4)) + 6, np.eye(4))
    design = pd.DataFrame(np.ones((4, 1)), columns=["a"])
    with pytest.raises(NiftiInputError, match="give mask_img"):
        FirstLevelModel(mask_img=None).fit(img, design_matrices=design)
    model = FirstLevelModel(mask_img=False, noise_model="ols").fit(img, design_matrices=design)
    assert model.n_elements_ == 1


def test_resume_keys_follow_the_maskers_smoothing():
    from nilearn.maskers import NiftiMasker

    from daskglm.store.keys import run_keys

    mask, fmri, designs = _fake()
    keys = []
    for fwhm in (None, 4.0):
        model = FirstLevelModel(mask_img=NiftiMasker(mask, smoothing_fwhm=fwhm).fit())
        model.fit(fmri[0], design_matrices=designs[0])
        # the resume keys are the store's engine internals: they are computed from the fitted state
        keys.append(run_keys(model._state, model._stored_params(), "auto")[0])
    assert keys[0] != keys[1]
