"""daskglm against nilearn 0.14.1 on generated data (the parity bar of ``tests._reference``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm import compute_fixed_effects as nl_fixed_effects
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

from daskglm import FirstLevelModel, compute_fixed_effects, open_model, open_run
from tests._reference import assert_maps_close
from tests.conftest import load_designs

T_CON = [[-1, -1, 1, 1]]
OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")
CHUNKINGS = [None, {"time": 7, "voxel": 333}, {"time": 1000, "voxel": 10**6}]


def _mask(data):
    return nib.load(data["mask"]).get_fdata() > 0


def _f_con(n_cols):
    return np.eye(n_cols)[:5]


def _compare_all(ours: dict, theirs: dict, mask, label: str, f_stat: bool = False):
    """z and stat: the parity bar (1e-3 on >= 99.9% of voxels).

    F statistics reach the thousands and nilearn computes on float32-scaled data
    (~1e-6 relative noise), so they are compared relatively.  Effects and
    variances move by ~1% where an AR(1) coefficient falls on the other side of
    a 0.01 bin edge than nilearn's (about 1 voxel in 5000); see
    ``tests._reference.FLIP_ALLOWANCE``.
    """
    for out in OUTPUTS:
        if out in ("z_score", "stat"):
            rtol = 1e-4 if (f_stat and out == "stat") else 0.0
            assert_maps_close(ours[out], theirs[out], mask, f"{label}/{out}", rtol=rtol, atol=1e-3)
        else:
            assert_maps_close(ours[out], theirs[out], mask, f"{label}/{out}", rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
@pytest.mark.parametrize("smoothing_fwhm", [None, 5.0])
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=["auto", "uneven", "single"])
def test_single_run_matches_nilearn(fiac_small, noise_model, smoothing_fwhm, chunks):
    designs = load_designs(fiac_small)
    kw = dict(mask_img=fiac_small["mask"], noise_model=noise_model, smoothing_fwhm=smoothing_fwhm)
    ref = NilearnFLM(**kw).fit(fiac_small["func1"], design_matrices=designs[0])
    ours = FirstLevelModel(chunks=chunks or "auto", **kw).fit(
        fiac_small["func1"], design_matrices=designs[0]
    )
    mask = _mask(fiac_small)
    for con, is_f in ((T_CON, False), (_f_con(designs[0].shape[1]), True)):
        _compare_all(
            ours.compute_contrast(con, output_type="all"),
            ref.compute_contrast(con, output_type="all"),
            mask, f"{noise_model}/{smoothing_fwhm}/{chunks}", f_stat=is_f,
        )


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_multi_run_fixed_effects_match_nilearn(fiac_small_nii, noise_model):
    data = fiac_small_nii
    designs = load_designs(data)
    runs = [data["func1"], data["func2"]]
    kw = dict(mask_img=data["mask"], noise_model=noise_model, smoothing_fwhm=5)
    ref = NilearnFLM(**kw).fit(runs, design_matrices=designs)
    ours = FirstLevelModel(chunks={"time": 9, "voxel": 100}, **kw).fit(runs, design_matrices=designs)
    mask = _mask(data)
    per_run = [np.array([[-1, -1, 1, 1]]), np.array([[-1, -1, 1, 1]])]
    _compare_all(ours.compute_contrast(per_run, output_type="all"),
                 ref.compute_contrast(per_run, output_type="all"), mask, "t")
    f_con = _f_con(designs[0].shape[1])
    _compare_all(ours.compute_contrast(f_con, output_type="all"),
                 ref.compute_contrast(f_con, output_type="all"), mask, "F", f_stat=True)


@pytest.mark.parametrize("precision_weighted", [False, True])
def test_compute_fixed_effects_matches_nilearn(fiac_small, precision_weighted):
    designs = load_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"], smoothing_fwhm=5)
    effects, variances = [], []
    for i in (1, 2):
        model.fit(fiac_small[f"func{i}"], design_matrices=designs[i - 1])
        maps = model.compute_contrast(T_CON, output_type="all")
        effects.append(maps["effect_size"])
        variances.append(maps["effect_variance"])
    ours = compute_fixed_effects(effects, variances, fiac_small["mask"],
                                 precision_weighted=precision_weighted, dofs=[60, 70])
    theirs = nl_fixed_effects(effects, variances, fiac_small["mask"],
                              precision_weighted=precision_weighted, dofs=[60, 70])
    mask = _mask(fiac_small)
    assert len(ours) == len(theirs) == 4
    for name, a, b in zip(("contrast", "variance", "stat", "z"), ours, theirs):
        assert_maps_close(a, b, mask, name, atol=1e-10, rtol=1e-10, fraction=1.0)


def test_reopened_fit_in_fresh_process_gives_identical_maps(fiac_small, tmp_path):
    designs = load_designs(fiac_small)
    runs = [fiac_small["func1"], fiac_small["func2"]]
    model = FirstLevelModel(mask_img=fiac_small["mask"], smoothing_fwhm=5).fit(
        runs, design_matrices=designs
    )
    store = tmp_path / "fit.zarr"
    model.to_zarr(store)
    before = {
        "t": model.compute_contrast(T_CON, output_type="all"),
        "F": model.compute_contrast(_f_con(designs[0].shape[1]), output_type="all"),
    }
    script = textwrap.dedent(
        f"""
        import warnings, numpy as np
        warnings.simplefilter("ignore")
        from daskglm import open_model
        m = open_model({str(store)!r})
        for name, con in (("t", [[-1, -1, 1, 1]]), ("F", np.eye({designs[0].shape[1]})[:5])):
            for out, img in m.compute_contrast(con, output_type="all").items():
                img.to_filename({str(tmp_path)!r} + f"/{{name}}_{{out}}.nii.gz")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path))
    for name, maps in before.items():
        for out, img in maps.items():
            reopened = nib.load(tmp_path / f"{name}_{out}.nii.gz")
            np.testing.assert_array_equal(reopened.get_fdata(), img.get_fdata())
    # and in this process, with the same nilearn parity
    ref = NilearnFLM(mask_img=fiac_small["mask"], smoothing_fwhm=5).fit(runs, design_matrices=designs)
    _compare_all(open_model(store).compute_contrast(T_CON, output_type="all"),
                 ref.compute_contrast(T_CON, output_type="all"), _mask(fiac_small), "reopened")


def _int16_oblique_copy(src: str, dst) -> str:
    """Rewrite a run as int16 with scl_slope/scl_inter and an oblique affine."""
    img = nib.load(src)
    data = img.get_fdata(dtype=np.float32)
    theta = np.deg2rad(17.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = img.affine.copy()
    affine[:3, :3] = rot @ affine[:3, :3] @ np.diag([1.0, 1.1, 0.9])
    out = nib.Nifti1Image(data, affine)
    out.set_data_dtype(np.int16)
    out.header.set_slope_inter(0.05, 3.0)
    nib.save(out, dst)
    saved = nib.load(dst)
    assert saved.get_data_dtype() == np.int16 and saved.dataobj.slope == np.float32(0.05)
    return str(dst)


def test_int16_scaled_oblique_matches_nilearn(fiac_small, tmp_path):
    run = _int16_oblique_copy(fiac_small["func1"], tmp_path / "run_int16.nii.gz")
    mask_img = nib.load(fiac_small["mask"])
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(mask_img.dataobj), nib.load(run).affine), mask_path)
    design = load_designs(fiac_small)[0]
    kw = dict(mask_img=str(mask_path), smoothing_fwhm=6)
    ref = NilearnFLM(**kw).fit(run, design_matrices=design)
    ours = FirstLevelModel(chunks={"time": 11}, **kw).fit(run, design_matrices=design)
    _compare_all(ours.compute_contrast(T_CON, output_type="all"),
                 ref.compute_contrast(T_CON, output_type="all"), _mask(fiac_small), "int16")


def test_computed_epi_mask_matches_nilearn(fiac_small_nii):
    designs = load_designs(fiac_small_nii)
    runs = [fiac_small_nii["func1"], fiac_small_nii["func2"]]
    ref = NilearnFLM(mask_img=None).fit(runs, design_matrices=designs)
    ours = FirstLevelModel(mask_img=None).fit(runs, design_matrices=designs)
    ref_mask = ref.masker_.mask_img_.get_fdata() > 0
    np.testing.assert_array_equal(ours.mask_img_.get_fdata() > 0, ref_mask)
    _compare_all(ours.compute_contrast(T_CON, output_type="all"),
                 ref.compute_contrast(T_CON, output_type="all"), ref_mask, "epi-mask")


def test_design_from_events_and_expressions_match_nilearn(fiac_small):
    events = [pd.read_csv(fiac_small[f"events{i}"], sep="\t") for i in (1, 2)]
    rng = np.random.default_rng(0)
    confounds = [pd.DataFrame(rng.standard_normal((80, 2)), columns=["motion_x", "motion_y"])
                 for _ in range(2)]
    runs = [fiac_small["func1"], fiac_small["func2"]]
    kw = dict(t_r=fiac_small["t_r"], mask_img=fiac_small["mask"], hrf_model="spm")
    ref = NilearnFLM(**kw).fit(runs, events=events, confounds=confounds)
    ours = FirstLevelModel(**kw).fit(runs, events=events, confounds=confounds)
    for a, b in zip(ours.design_matrices_, ref.design_matrices_):
        pd.testing.assert_frame_equal(a, b.astype(float), check_dtype=False)
    mask = _mask(fiac_small)
    expr = "`DSt-DSp` + `DSt-SSp` - `SSt-DSp` - `SSt-SSp`"
    _compare_all(ours.compute_contrast(expr, output_type="all"),
                 ref.compute_contrast(expr, output_type="all"), mask, "expression")
    _compare_all(ours.compute_contrast("motion_x", output_type="all"),
                 ref.compute_contrast("motion_x", output_type="all"), mask, "confound")


def test_dataarray_and_image_inputs_match_path_input(fiac_small):
    design = load_designs(fiac_small)[0]
    kw = dict(mask_img=fiac_small["mask"], smoothing_fwhm=5)
    from_path = FirstLevelModel(**kw).fit(fiac_small["func1"], design_matrices=design)
    expected = from_path.compute_contrast(T_CON).get_fdata()
    lazy = open_run(fiac_small["func1"], chunks=13)
    from_xr = FirstLevelModel(**kw).fit(lazy, design_matrices=design)
    np.testing.assert_allclose(from_xr.compute_contrast(T_CON).get_fdata(), expected, atol=1e-10)
    in_memory = nib.Nifti1Image(nib.load(fiac_small["func1"]).get_fdata(dtype=np.float32),
                                nib.load(fiac_small["func1"]).affine)
    from_img = FirstLevelModel(**kw).fit(in_memory, design_matrices=design)
    np.testing.assert_allclose(from_img.compute_contrast(T_CON).get_fdata(), expected, atol=1e-10)


def test_float64_data_match_nilearn_to_rounding(fiac_small):
    """With float64 inputs nilearn computes in float64 too: the maps then agree to ~1e-8.

    This separates our algebra (sufficient statistics) from nilearn's float32
    rounding, which is what the looser tolerances above absorb.
    """
    designs = load_designs(fiac_small)
    imgs = [nib.Nifti1Image(nib.load(fiac_small[f"func{i}"]).get_fdata(), nib.load(fiac_small[f"func{i}"]).affine)
            for i in (1, 2)]
    kw = dict(mask_img=fiac_small["mask"], smoothing_fwhm=5)
    ref = NilearnFLM(**kw).fit(imgs, design_matrices=designs)
    ours = FirstLevelModel(**kw).fit(imgs, design_matrices=designs)
    mask = _mask(fiac_small)
    same_bin = np.all([np.isclose(np.asarray(a, float), b) for a, b in zip(ref.labels_, ours.labels_)], axis=0)
    assert same_bin.mean() > 0.99
    for con in (T_CON, _f_con(designs[0].shape[1])):
        for out in OUTPUTS:
            a = np.asarray(ours.compute_contrast(con, output_type=out).get_fdata())[mask]
            b = np.asarray(ref.compute_contrast(con, output_type=out).get_fdata())[mask]
            if a.ndim > 1:
                a, b = a[same_bin].ravel(), b[same_bin].ravel()
            else:
                a, b = a[same_bin], b[same_bin]
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-8, err_msg=f"{np.ndim(con)}-D {out}")


def test_masker_and_n_elements_like_nilearn(fiac_small):
    design = load_designs(fiac_small)[0]
    kw = dict(mask_img=fiac_small["mask"], smoothing_fwhm=5)
    ref = NilearnFLM(**kw).fit(fiac_small["func1"], design_matrices=design)
    ours = FirstLevelModel(**kw).fit(fiac_small["func1"], design_matrices=design)
    assert ours.n_elements_ == ref.n_elements_
    z = ours.compute_contrast(T_CON)
    np.testing.assert_array_equal(ours.masker_.transform(z), ref.masker_.transform(z))
    np.testing.assert_array_equal(ours.masker_.mask_img_.get_fdata(), ref.masker_.mask_img_.get_fdata())


@pytest.mark.parametrize("signal_scaling", [False, (0, 1)])
def test_other_signal_scalings_match_nilearn(fiac_small, signal_scaling):
    designs = load_designs(fiac_small)
    runs = [fiac_small["func1"], fiac_small["func2"]]
    kw = dict(mask_img=fiac_small["mask"], signal_scaling=signal_scaling)
    ref = NilearnFLM(**kw).fit(runs, design_matrices=designs)
    ours = FirstLevelModel(**kw).fit(runs, design_matrices=designs)
    mask = _mask(fiac_small)
    for con, is_f in ((T_CON, False), (_f_con(designs[0].shape[1]), True)):
        for out in ("z_score", "stat"):
            rtol = 1e-4 if (is_f and out == "stat") else 0.0
            assert_maps_close(ours.compute_contrast(con, output_type=out),
                              ref.compute_contrast(con, output_type=out), mask,
                              f"{signal_scaling}/{out}", rtol=rtol)
