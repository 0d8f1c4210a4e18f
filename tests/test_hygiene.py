"""Data hygiene: non-finite BOLD values, degenerate voxels, untouched inputs.

Behaviour (nilearn 0.14.1 for reference):

- NaN/inf in the BOLD data become 0 before anything else, as nilearn's
  ``smooth_array(ensure_finite=True)`` does (nilearn silently; daskglm warns).
  Maps then equal nilearn's, including for voxels with a few non-finite scans;
  an all-NaN voxel is an all-zero voxel.
- Constant and all-zero voxels inside the mask have (numerically) zero
  residuals.  nilearn returns finite values there that are driven by rounding
  noise (e.g. z of -1.6 for an all-zero voxel under mean scaling, 0 for a
  constant one).  daskglm detects series that are constant to machine
  precision (``daskglm.kernels.fit.constant_voxels``) and gives them exact
  outputs: beta = level x pinv(X) 1, dispersion 0, rho 0, hence effect 0,
  variance 0, stat 0 and z 0 for any contrast not involving the constant
  (``test_degenerate_voxels_are_quiet``).
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

from daskglm import FirstLevelModel, open_model
from daskglm.datasets import make_fiac_like
from tests.conftest import load_named_design

SHAPE = (12, 14, 12)
N_SCANS = 60
OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


@pytest.fixture(scope="module")
def hdata(tmp_path_factory) -> dict:
    """A .nii run with special voxels: zero, constant, partly NaN/inf, all NaN."""
    root = tmp_path_factory.mktemp("hygiene")
    data = make_fiac_like(root, shape=SHAPE, n_scans=N_SCANS, seed=3, compress=False, n_runs=1)
    img = nib.load(data["func1"])
    bold = np.asarray(img.dataobj).astype(np.float32)
    mask = np.asarray(nib.load(data["mask"]).dataobj).astype(bool)
    voxels = [tuple(v) for v in np.argwhere(mask)[:: mask.sum() // 8][:6]]
    special = dict(zip(["zero", "constant", "one_nan", "one_inf", "all_nan", "few_nan"], voxels))
    bold[special["zero"]] = 0.0
    bold[special["constant"]] = 500.0
    bold[special["one_nan"]][5] = np.nan
    bold[special["one_inf"]][7] = np.inf
    bold[special["all_nan"]] = np.nan
    bold[special["few_nan"]][[0, 20, 59]] = [np.nan, -np.inf, np.nan]
    path = root / "bold_special.nii"
    nib.save(nib.Nifti1Image(bold, img.affine), path)
    design = load_named_design(data["design_matrix1"])
    contrast = np.zeros(design.shape[1])
    contrast[:2] = [1.0, -1.0]
    return dict(data, bold=str(path), bold_array=bold, affine=img.affine, mask_array=mask,
                special=special, design=design, contrast=contrast, root=root)


def _daskglm_maps(hdata, **params):
    model = FirstLevelModel(mask_img=hdata["mask"], **params)
    model.fit(hdata["bold"], design_matrices=hdata["design"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = model.compute_contrast(hdata["contrast"], output_type="all")
    return {k: np.asarray(v.dataobj) for k, v in maps.items()}, caught


def _nilearn_maps(hdata, **params):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = NilearnModel(mask_img=hdata["mask"], **params)
        model.fit(hdata["bold"], design_matrices=hdata["design"])
        maps = model.compute_contrast(hdata["contrast"], output_type="all")
    return {k: np.asarray(v.dataobj) for k, v in maps.items()}


CONFIGS = {
    "ar1-scaled": dict(noise_model="ar1", signal_scaling=0),
    "ols-unscaled": dict(noise_model="ols", signal_scaling=False),
    "ar1-smoothed": dict(noise_model="ar1", signal_scaling=0, smoothing_fwhm=6.0),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def both(request, hdata):
    params = CONFIGS[request.param]
    ours, caught = _daskglm_maps(hdata, **params)
    return request.param, ours, caught, _nilearn_maps(hdata, **params)


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


def test_all_maps_finite_including_degenerate_voxels(both, hdata):
    name, ours, _, theirs = both
    mask = hdata["mask_array"]
    for output in OUTPUTS:
        assert np.isfinite(ours[output][mask]).all(), f"{name}: non-finite {output}"
        # nilearn is finite here too (documented in the module docstring)
        assert np.isfinite(theirs[output][mask]).all()
    p = ours["p_value"][mask]
    assert ((p >= 0) & (p <= 1)).all()


def test_all_nan_voxel_equals_all_zero_voxel(both, hdata):
    name, ours, _, _ = both
    if name == "ar1-smoothed":
        pytest.skip("smoothing mixes in different neighbours")
    special = hdata["special"]
    for output in OUTPUTS:
        assert ours[output][special["all_nan"]] == ours[output][special["zero"]], output


def test_degenerate_voxels_are_quiet(both, hdata):
    """Constant/zero voxels: variance >= 0 and no spurious huge statistics."""
    name, ours, _, _ = both
    if name == "ar1-smoothed":
        pytest.skip("smoothing mixes neighbours into the degenerate voxels")
    for voxel in ("zero", "constant", "all_nan"):
        v = hdata["special"][voxel]
        assert ours["effect_variance"][v] >= 0, voxel
        assert abs(ours["z_score"][v]) < 10, voxel


# ------------------------------------------------------------- in-memory input
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


# ------------------------------------------------------------------ checksums
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
