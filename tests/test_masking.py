"""Mask preparation, grid checks, smoothing parameters and non-finite BOLD values.

A given mask must match the runs' grid (shape and affine) and not be empty,
and all runs share one grid; bad smoothing widths are refused before any data
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

import nibabel as nib
import numpy as np
import pytest

from daskglm import FirstLevelModel
from daskglm.errors import NiftiInputError
from tests.conftest import N_SCANS, OUTPUTS, SHAPE, _model, raises_fast


# ------------------------------------------------------------- mask and grid
def test_mask_shape_differs(vdata, no_heavy_work):
    path = vdata["root"] / "mask_small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 14, 12), np.uint8), vdata["affine"]), path)
    with raises_fast(NiftiInputError, "(10, 14, 12)", str(SHAPE)):
        FirstLevelModel(mask_img=str(path)).fit(vdata["func1"], design_matrices=vdata["design1"])


def test_mask_affine_differs(vdata, no_heavy_work):
    affine = vdata["affine"].copy()
    affine[0, 3] += 7.0
    mask = nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine)
    with raises_fast(NiftiInputError, "affine", f"{affine[0, 3]:g}"):
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
