"""minimize_memory=False: residuals_, predicted_, r_square_ against nilearn 0.14.1."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM

from daskglm import FirstLevelModel, open_model
from tests.conftest import load_designs


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
        for name, atol in (("residuals_", 2e-4), ("predicted_", 2e-4), ("r_square_", 1e-5)):
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
