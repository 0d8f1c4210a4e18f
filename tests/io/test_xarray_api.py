"""The fit and its maps as first-class xarray: coordinates, volumes, open_run, round trips, names.

How a model prints is in tests/first_level/test_representation.py, the dask task names in
tests/graph/test_graph.py.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from nibabel.affines import apply_affine

from daskglm import FirstLevelModel, open_model
from daskglm.io.coords import is_axis_aligned, to_volume, volume_coords
from daskglm.io.dataarray import open_run
from tests.conftest import load_named_designs


@pytest.fixture(scope="module")
def fitted(fiac_small):
    designs = load_named_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(
        [fiac_small["func1"], fiac_small["func2"]], design_matrices=designs)
    return model.persist(), designs


@pytest.fixture(scope="module")
def reopened(fitted, tmp_path_factory):
    model, _ = fitted
    path = tmp_path_factory.mktemp("xr") / "fit.zarr"
    model.to_zarr(path)
    return open_model(path)


def test_results_coordinates_select_by_label(fitted, fiac_small):
    model, designs = fitted
    ds = model.results_
    assert list(ds.run.values) == ["run-1", "run-2"]
    assert list(ds.regressor.values) == list(designs[0].columns)
    column = designs[0].columns[2]
    np.testing.assert_array_equal(ds.beta.sel(run="run-2", regressor=column).values,
                                  ds.beta.isel(run=1, regressor=2).values)
    # voxel indices and world coordinates agree with the mask and nibabel's affine
    mask_img = nib.load(fiac_small["mask"])
    ijk = np.argwhere(np.asarray(mask_img.dataobj) != 0)
    np.testing.assert_array_equal(np.stack([ds.i, ds.j, ds.k], axis=1), ijk)
    np.testing.assert_allclose(np.stack([ds.x, ds.y, ds.z], axis=1), apply_affine(mask_img.affine, ijk))
    assert ds.x.attrs["units"] == "mm"
    # the beta of voxel v is the one of its (i, j, k)
    v = 17
    one = ds.beta.sel(run="run-1").where((ds.i == ijk[v, 0]) & (ds.j == ijk[v, 1]) & (ds.k == ijk[v, 2]),
                                         drop=True)
    np.testing.assert_array_equal(one.values[:, 0], ds.beta.values[0, :, v])


def test_two_dimensional_regressor_names_when_runs_differ(fiac_small):
    designs = load_named_designs(fiac_small)
    designs[1] = designs[1].drop(columns=designs[1].columns[4])
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(
        [fiac_small["func1"], fiac_small["func2"]], design_matrices=designs)
    ds = model.results_
    assert ds.regressor_name.dims == ("run", "regressor")
    assert list(ds.regressor_name.values[0]) == list(designs[0].columns)
    assert list(ds.regressor_name.values[1]) == list(designs[1].columns) + [""]


def test_contrast_volume_equals_nifti_map_with_cf_attributes(fitted):
    model, designs = fitted
    con = "`DSt-DSp` - `SSt-SSp`"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        volume = model.contrast_maps(con, volume=True)["z_score"]
        img = model.compute_contrast(con)
    assert volume.dims == ("x", "y", "z")
    np.testing.assert_array_equal(volume.values, img.get_fdata())
    assert volume.attrs["units"] == "1" and "z score" in volume.attrs["long_name"]
    assert con in volume.attrs["long_name"]
    np.testing.assert_allclose(volume.attrs["affine"], img.affine)
    # world coordinates: 1-D (the FIAC affine is axis-aligned, x flipped)
    np.testing.assert_allclose(volume.x.values, img.affine[0, 0] * np.arange(img.shape[0]) + img.affine[0, 3])
    peak = np.unravel_index(np.argmax(img.get_fdata()), img.shape)
    xyz = apply_affine(img.affine, peak)
    assert float(volume.sel(x=xyz[0], y=xyz[1], z=xyz[2])) == img.get_fdata()[peak]
    # the flat maps carry their voxel coordinates too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flat = model.contrast_maps(con)["z_score"]
    top = int(np.argmax(flat.values))
    assert (int(flat.i[top]), int(flat.j[top]), int(flat.k[top])) == tuple(int(v) for v in peak)


def test_to_volume_keeps_leading_dims(fitted):
    model, designs = fitted
    betas = model.to_volume(model.results_["beta"])
    assert betas.dims == ("run", "regressor", "x", "y", "z")
    assert list(betas.regressor.values) == list(designs[0].columns)
    mask = np.asarray(model.mask_img_.dataobj) != 0
    values = betas.sel(run="run-2", regressor=designs[0].columns[1]).values
    np.testing.assert_array_equal(values[mask], model.results_.beta.values[1, 1])
    assert np.all(values[~mask] == 0)


def test_oblique_affine_gives_index_dims_and_3d_world_coordinates():
    affine = np.array([[2.0, 0.3, 0, -10], [-0.2, 2.0, 0, 5], [0, 0, 2.5, 7], [0, 0, 0, 1]])
    assert not is_axis_aligned(affine) and is_axis_aligned(np.diag([-3.0, 3, 3, 1]))
    mask = np.zeros((4, 5, 3), bool)
    mask[1:3, 2:5, 1] = True
    vol = to_volume(np.arange(mask.sum(), dtype=float), mask, affine)
    assert vol.dims == ("i", "j", "k") and vol.x.dims == ("i", "j", "k")
    np.testing.assert_allclose(vol.x.values[2, 3, 1], apply_affine(affine, [2, 3, 1])[0])
    np.testing.assert_allclose(vol.z.values[1, 4, 1], apply_affine(affine, [1, 4, 1])[2])
    assert vol.values[mask].tolist() == list(range(int(mask.sum())))
    coords = volume_coords(mask.shape, np.diag([-3.0, 3, 3, 1]))
    assert coords["x"][0] == "x" and coords["x"][1][1] == -3.0


def test_round_trip_keeps_every_coordinate(fitted, reopened):
    model, _ = fitted
    xr.testing.assert_identical(reopened.results_.coords.to_dataset(), model.results_.coords.to_dataset())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = model.contrast_maps([1, -1, 0, 0], volume=True)["z_score"]
        b = reopened.contrast_maps([1, -1, 0, 0], volume=True)["z_score"]
    xr.testing.assert_identical(a, b)


def test_open_run_time_and_space(fiac_small, tmp_path):
    header_t_r = float(nib.load(fiac_small["func1"]).header.get_zooms()[3])
    run = open_run(fiac_small["func1"])
    assert run.dims == ("x", "y", "z", "time")
    np.testing.assert_allclose(run.time.values, np.arange(run.sizes["time"]) * header_t_r)
    assert run.time.attrs["units"] == "s"
    img = nib.load(fiac_small["func1"])
    np.testing.assert_allclose(run.x.values, apply_affine(img.affine, np.c_[np.arange(img.shape[0]),
                                                                              np.zeros((img.shape[0], 2))])[:, 0])
    np.testing.assert_array_equal(run.isel(time=3).values, img.get_fdata(dtype=np.float32)[..., 3])
    with pytest.warns(UserWarning, match="differs from the repetition time"):
        slow = open_run(fiac_small["func1"], t_r=4 * header_t_r)
    assert slow.time.values[1] == pytest.approx(4 * header_t_r)
    # native dtype unless NIfTI scaling applies
    data = (np.arange(2 * 3 * 4 * 5) % 7).reshape(2, 3, 4, 5).astype(np.int16)
    plain = nib.Nifti1Image(data, np.eye(4))
    plain.header.set_zooms((1, 1, 1, 0.8))
    nib.save(plain, tmp_path / "int16.nii")
    assert open_run(tmp_path / "int16.nii").dtype == np.int16
    assert open_run(tmp_path / "int16.nii").time.values[2] == pytest.approx(1.6)
    scaled = nib.Nifti1Image(data, np.eye(4))
    scaled.header.set_slope_inter(0.5, 1.0)
    scaled.header.set_zooms((1, 1, 1, 2.0))
    nib.save(scaled, tmp_path / "scaled.nii")
    opened = open_run(tmp_path / "scaled.nii", t_r=2.0)
    assert np.issubdtype(opened.dtype, np.floating)
    np.testing.assert_allclose(opened.values, data * 0.5 + 1.0)
