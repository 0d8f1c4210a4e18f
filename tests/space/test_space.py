"""The element space: one object for mask, affine, smoothing, crop or mesh; what the model shows of it.

Checked against nilearn's own maskers (``NiftiMasker`` / ``SurfaceMasker``
``inverse_transform`` and ``transform``), and through the public interface
the rest of the package reads (``space_``, ``run_names_``, ``n_scans_``,
``mean_img_``), for fits and for fits reopened from a store.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from nilearn.datasets import load_fsaverage
from nilearn.maskers import NiftiMasker, SurfaceMasker

from daskglm import FirstLevelModel, open_model
from daskglm.errors import SurfaceInputError
from daskglm.io.cifti import CiftiGeometry
from daskglm.io.gifti import SurfaceGeometry
from daskglm.space.build import element_space
from daskglm.space.surface import SurfaceSpace
from daskglm.space.volume import VolumeSpace
from tests.conftest import load_named_designs


@pytest.fixture(scope="module")
def volume_space():
    rng = np.random.default_rng(0)
    mask = rng.random((6, 7, 5)) > 0.4
    affine = np.diag([2.0, 2.5, 3.0, 1.0])
    affine[:3, 3] = [-6, 4, 10]
    return VolumeSpace(mask, affine, smoothing_fwhm=4.0)


def test_volume_unmask_equals_nilearn_inverse_transform(volume_space):
    values = np.random.default_rng(1).standard_normal((3, volume_space.n_elements))
    ours = volume_space.unmask(values, "three maps")
    masker = NiftiMasker(mask_img=volume_space.mask_img).fit()
    theirs = masker.inverse_transform(values)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    np.testing.assert_array_equal(ours.affine, volume_space.affine)
    assert ours.header["descrip"].tobytes().startswith(b"three maps")
    # one map: a 3D image; its in-mask values in nilearn's order
    one = volume_space.unmask(values[0])
    np.testing.assert_allclose(np.ravel(masker.transform(one)), values[0], rtol=1e-6)  # nilearn: float32


def test_volume_series_is_lazy_and_equals_unmask(volume_space):
    values = da.from_array(np.arange(4 * volume_space.n_elements, dtype=float).reshape(4, -1), chunks=(2, -1))
    with dask.config.set(scheduler=_raise):
        img = volume_space.unmask_series(values)  # building the image computes nothing
    assert isinstance(img.dataobj, da.Array)
    np.testing.assert_array_equal(np.asarray(img.dataobj), volume_space.unmask(values.compute()).get_fdata())


def _raise(*args, **kwargs):
    raise AssertionError("computed")


def test_volume_stream_masker_masks_the_crop():
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[2:5, 3:6, 1:4] = True
    crop = (slice(1, 6), slice(2, 7), slice(0, 5))
    affine = np.eye(4)
    stream_affine = affine.copy()
    stream_affine[:3, 3] += [1, 2, 0]
    space = VolumeSpace(mask, affine, crop=crop, stream_affine=stream_affine)
    masker = space.stream_masker()
    assert masker.n_voxels == space.n_elements == 27
    volumes = np.random.default_rng(2).standard_normal((2, 5, 5, 5))  # (k, z, y, x) of the crop
    expected = volumes.transpose(0, 3, 2, 1)[:, mask[crop]]
    np.testing.assert_array_equal(masker.transform(volumes), expected)


def test_volume_to_nilearn_smooths_as_the_fit(volume_space):
    masker = volume_space.to_nilearn()
    assert isinstance(masker, NiftiMasker)
    assert masker.smoothing_fwhm == 4.0
    np.testing.assert_array_equal(np.asarray(masker.mask_img_.dataobj) != 0, volume_space.mask)


def test_given_masker_is_kept():
    img = nib.Nifti1Image(np.ones((3, 3, 3), np.uint8), np.eye(4))
    given = NiftiMasker(mask_img=img).fit()
    space = VolumeSpace(np.ones((3, 3, 3), bool), np.eye(4), given_masker=given)
    assert space.to_nilearn() is given


def test_token_changes_with_every_field(volume_space):
    base = dask.base.tokenize(volume_space)
    assert dask.base.tokenize(VolumeSpace(volume_space.mask, volume_space.affine, 4.0)) == base
    assert dask.base.tokenize(VolumeSpace(volume_space.mask, volume_space.affine, 5.0)) != base
    assert dask.base.tokenize(VolumeSpace(~volume_space.mask, volume_space.affine, 4.0)) != base
    assert dask.base.tokenize(VolumeSpace(volume_space.mask, volume_space.affine * 2, 4.0)) != base
    crop = (slice(0, 6), slice(0, 7), slice(0, 5))
    assert dask.base.tokenize(VolumeSpace(volume_space.mask, volume_space.affine, 4.0, crop=crop)) != base


@pytest.fixture(scope="module")
def mesh():
    return load_fsaverage("fsaverage5")["pial"]


def test_surface_unmask_equals_nilearn_inverse_transform(mesh):
    geometry = SurfaceGeometry(mesh)
    mask = np.random.default_rng(3).random(geometry.n_elements) > 0.3
    space = SurfaceSpace(mask, geometry, smoothing_fwhm=None)
    assert space.kind == "surface"
    values = np.random.default_rng(4).standard_normal((2, space.n_elements))
    ours = space.unmask(values)
    theirs = SurfaceMasker(mask_img=space.mask_img).fit().inverse_transform(values)
    for part in ("left", "right"):
        np.testing.assert_array_equal(np.asarray(ours.data.parts[part]), np.asarray(theirs.data.parts[part]))
    assert space.coords() == {}
    assert isinstance(space.to_nilearn(), SurfaceMasker)


def test_cifti_space_has_no_nilearn_masker():
    from tests.space.test_cifti import brain_models

    geometry = CiftiGeometry(brain_models())
    space = SurfaceSpace(np.ones(geometry.n_elements, bool), geometry)
    assert space.kind == "cifti"
    with pytest.raises(SurfaceInputError, match="CIFTI"):
        space.to_nilearn()
    img = space.unmask(np.arange(space.n_elements, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(img.dataobj)[0], np.arange(space.n_elements))


def test_element_space_rebuilds_either_kind(volume_space, mesh):
    again = element_space(volume_space.mask, volume_space.affine, None, 4.0)
    assert isinstance(again, VolumeSpace)
    assert dask.base.tokenize(again) == dask.base.tokenize(volume_space)
    geometry = SurfaceGeometry(mesh)
    flat = np.ones((geometry.n_elements, 1, 1), bool)  # a store keeps a 1-D mask as an (N, 1, 1) grid
    surface = element_space(flat, np.eye(4), geometry)
    assert isinstance(surface, SurfaceSpace) and surface.mask.shape == (geometry.n_elements,)


# --------------------------------------------------------------------- the model's public view
@pytest.fixture(scope="module")
def two_runs(fiac_small):
    designs = load_named_designs(fiac_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(mask_img=fiac_small["mask"], smoothing_fwhm=5.0)
        model.fit([fiac_small["func1"], fiac_small["func2"]], design_matrices=designs,
                  sample_masks=[np.arange(3, 80), np.arange(80)])
    return model


def test_model_space_is_the_fit_space(two_runs, fiac_small):
    space = two_runs.space_
    assert isinstance(space, VolumeSpace) and space.kind == "volume"
    assert space.smoothing_fwhm == 5.0
    mask = np.asarray(nib.load(fiac_small["mask"]).dataobj) != 0
    np.testing.assert_array_equal(space.mask, mask)
    assert two_runs.n_elements_ == space.n_elements == mask.sum()
    assert two_runs.masker_.smoothing_fwhm == 5.0


def test_run_names_and_scans_before_censoring(two_runs, tmp_path):
    assert [Path(n).name for n in two_runs.run_names_] == ["run1_bold.nii.gz", "run2_bold.nii.gz"]
    assert two_runs.n_scans_ == [80, 80]
    assert [d.shape[0] for d in two_runs.design_matrices_] == [77, 80]
    two_runs.to_zarr(tmp_path / "fit.zarr")
    reopened = open_model(tmp_path / "fit.zarr")
    assert reopened.run_names_ == ["run-1", "run-2"]
    assert reopened.n_scans_ == [77, 80]  # a store keeps the scans fitted
    np.testing.assert_array_equal(reopened.space_.mask, two_runs.space_.mask)
    assert reopened.space_.smoothing_fwhm == 5.0
    mean = reopened.mean_img_
    np.testing.assert_allclose(mean.get_fdata(), two_runs.mean_img_.get_fdata())
    assert (mean.get_fdata()[~two_runs.space_.mask] == 0).all()


def test_space_unmask_gives_the_contrast_image(two_runs):
    contrast = np.eye(two_runs.design_matrices_[0].shape[1])[0]
    z = two_runs.compute_contrast(contrast, output_type="z_score")
    values = two_runs.contrast_maps(contrast)["z_score"].values
    np.testing.assert_array_equal(two_runs.space_.unmask(values).get_fdata(), z.get_fdata())


def test_masker_mask_takes_a_maskers_mask(volume_space, mesh):
    from daskglm.space.base import masker_mask

    img = volume_space.mask_img
    assert masker_mask(img) is img and masker_mask("mask.nii.gz") == "mask.nii.gz"
    fitted = NiftiMasker(mask_img=img).fit()
    assert masker_mask(fitted) is fitted.mask_img_
    assert masker_mask(NiftiMasker(mask_img=img)) is img  # unfitted: the mask it was built with
    surface_mask = SurfaceSpace(np.ones(20484, bool), SurfaceGeometry(mesh)).mask_img
    assert masker_mask(SurfaceMasker(mask_img=surface_mask)) is surface_mask
    with pytest.raises(ValueError, match="SurfaceMasker given as a mask holds no mask"):
        masker_mask(SurfaceMasker())


# --------------------------------------------------------------------- review follow-ups
def test_tokens_see_every_voxel_and_equal_geometries(mesh):
    """Graph keys hash the mask's bytes (numpy abbreviates a large mask's str) and the mesh's digest."""
    a = np.zeros((20, 20, 20), bool)
    a[5:15, 5:15, 5:15] = True
    b = a.copy()
    b[10, 10, 10] = False  # one interior voxel
    assert dask.base.tokenize(VolumeSpace(a, np.eye(4))) != dask.base.tokenize(VolumeSpace(b, np.eye(4)))
    mask = np.ones(20484, bool)
    one, two = SurfaceSpace(mask, SurfaceGeometry(mesh)), SurfaceSpace(mask.copy(), SurfaceGeometry(mesh))
    assert dask.base.tokenize(one) == dask.base.tokenize(two)
    assert dask.base.tokenize(one) != dask.base.tokenize(SurfaceSpace(mask, SurfaceGeometry(mesh), 5.0))


def test_a_space_is_frozen_and_owns_its_mask(volume_space):
    given = np.ones((3, 3, 3), bool)
    space = VolumeSpace(given, np.eye(4))
    given[0, 0, 0] = False  # the caller's array stays the caller's
    assert space.mask.all()
    with pytest.raises(ValueError, match="read-only"):
        space.mask[0, 0, 0] = False


def test_surface_space_has_no_volume(mesh):
    space = SurfaceSpace(np.ones(20484, bool), SurfaceGeometry(mesh))
    with pytest.raises(SurfaceInputError, match="no voxel grid"):
        space.as_volume(np.zeros(20484))


def _surface_fit(mesh, masker, tmp_path=None):
    from tests.space.test_surface import events, surface_run

    model = FirstLevelModel(t_r=2.0, mask_img=masker)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit([surface_run(mesh, 1)], events=[events(1)])


def test_a_given_surface_masker_is_the_fit_masker_and_its_smoothing_counts(mesh, tmp_path):
    from tests.space.test_surface import surface_run

    img = surface_run(mesh, 1)
    plain = _surface_fit(mesh, SurfaceMasker(smoothing_fwhm=None).fit(img))
    smoothed_masker = SurfaceMasker(smoothing_fwhm=6.0).fit(img)
    smoothed = _surface_fit(mesh, smoothed_masker)
    assert smoothed.masker_ is smoothed_masker  # nilearn: masker_ is the given masker
    assert smoothed.space_.smoothing_fwhm == 6.0 and plain.space_.smoothing_fwhm is None
    from daskglm.store.keys import run_keys

    keys = [run_keys(m._state, m._stored_params(), m.chunks) for m in (plain, smoothed)]
    assert keys[0] != keys[1]  # a resume never reuses the unsmoothed fit for the smoothed one
    smoothed.to_zarr(tmp_path / "s.zarr")
    reopened = open_model(tmp_path / "s.zarr")
    assert reopened.space_.smoothing_fwhm == 6.0 and reopened.masker_.smoothing_fwhm == 6.0
    with pytest.raises(ValueError, match="not fitted|fit"):
        _surface_fit(mesh, SurfaceMasker(smoothing_fwhm=6.0))  # nilearn refuses an unfitted masker


def test_a_given_nifti_maskers_smoothing_survives_the_store(fiac_small, tmp_path):
    designs = load_named_designs(fiac_small)
    masker = NiftiMasker(mask_img=fiac_small["mask"], smoothing_fwhm=6.0).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(mask_img=masker).fit(fiac_small["func1"], design_matrices=designs[0])
    model.to_zarr(tmp_path / "fit.zarr")
    reopened = open_model(tmp_path / "fit.zarr")
    assert reopened.space_.smoothing_fwhm == 6.0
    assert reopened.masker_.smoothing_fwhm == 6.0
    assert reopened.smoothing_fwhm == 6.0


class _StreamCounter(dask.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.streamed = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        self.streamed += str(name).startswith(("_stream_stats", "_file_chunk_stats", "_array_chunk_stats"))


def test_mean_img_streams_the_runs_once(fiac_small):
    designs = load_named_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(fiac_small["func1"], design_matrices=designs[0])
    with _StreamCounter() as counter:
        first = model.mean_img_
        once = counter.streamed
        second = model.mean_img_
        model.compute_contrast(np.eye(designs[0].shape[1])[0])
    assert once >= 1 and counter.streamed == once
    np.testing.assert_array_equal(first.get_fdata(), second.get_fdata())


def test_element_names(volume_space, mesh):
    from tests.space.test_cifti import brain_models

    assert volume_space.element_name == "voxels"
    assert SurfaceSpace(np.ones(20484, bool), SurfaceGeometry(mesh)).element_name == "vertices"
    cifti = CiftiGeometry(brain_models())
    assert SurfaceSpace(np.ones(cifti.n_elements, bool), cifti).element_name == "grayordinates"
