"""``target_affine`` / ``target_shape``: runs resampled on the fly, with nilearn's numerics.

nilearn's masker resamples each run with ``resample_img(...,
interpolation="continuous")`` onto its mask's grid cropped to the mask's
bounding box (+1 voxel), clipped to the value range of the whole run, then
smooths and masks; a given mask is resampled with nearest-neighbour
interpolation.  daskglm resamples volume by volume inside the stream
(:class:`daskglm.io.views.ResampledRunSource`), never holding the resampled run.
References: nilearn 0.14.1's ``resample_img`` and ``FirstLevelModel``.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.image import resample_img

from daskglm import FirstLevelModel
from daskglm.kernels.resample import resample_volumes, resampling_grid

AFFINE = np.array([[3.0, 0, 0, -15], [0, 3.0, 0, -20], [0, 0, 3.0, -10], [0, 0, 0, 1]])
SHAPE, N_SCANS = (12, 13, 11), 48
TARGET = np.array([[2.0, 0, 0, -14], [0, 2.0, 0, -18], [0, 0, 2.0, -8], [0, 0, 0, 1]])
OBLIQUE = np.array([[2.0, 0.3, 0, -5], [0, 2, 0.1, -3], [0.2, 0, 2, 4], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def rdata(tmp_path_factory) -> dict:
    """A float64 run with a smooth 'brain' (so no voxel is clipped flat), on disk and in memory."""
    rng = np.random.default_rng(5)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = np.clip(1.2 - (x**2 + y**2 + z**2), 0, None)
    data = (100 * brain)[..., None] * (1 + 0.01 * rng.standard_normal((*SHAPE, N_SCANS)))
    data[4:8, 4:8, 3:7] += 2 * np.sin(np.arange(N_SCANS) / 4)
    img = nib.Nifti1Image(data, AFFINE)
    path = tmp_path_factory.mktemp("resampling") / "run.nii.gz"
    nib.save(img, path)
    events = pd.DataFrame({"onset": [8, 30, 52, 74], "duration": [8] * 4, "trial_type": ["a", "b"] * 2})
    mask = nib.Nifti1Image((brain > 0.3).astype(np.uint8), AFFINE)
    return {"img": img, "path": str(path), "events": events, "mask": mask}


@pytest.mark.parametrize(
    ("target_affine", "target_shape"),
    [(TARGET, (15, 17, 14)), (np.diag([2.5, 2.5, 2.5]), None), (OBLIQUE, (10, 10, 12)), (AFFINE, None)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_kernel_equals_resample_img(target_affine, target_shape, dtype):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((9, 10, 11, 4)) * 10 + 100).astype(dtype)
    img = nib.Nifti1Image(data, AFFINE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn's "Casting data from int16 to float32"
        ref = resample_img(img, target_affine=target_affine, target_shape=target_shape,
                           interpolation="continuous", copy_header=True, force_resample=True)
    grid = resampling_grid(data.shape[:3], AFFINE, target_affine, target_shape)
    volumes = np.ascontiguousarray(data.transpose(3, 2, 1, 0))
    ours = resample_volumes(volumes, grid, clip_range=(float(data.min()), float(data.max())))
    assert np.allclose(grid.affine, ref.affine)
    assert ours.dtype == np.asarray(ref.dataobj).dtype
    np.testing.assert_array_equal(ours.transpose(3, 2, 1, 0), np.asarray(ref.dataobj))


def test_target_outside_the_data_is_nilearns_error():
    far = TARGET.copy()
    far[:3, 3] = 1000.0
    with pytest.raises(ValueError, match="does not contain any of the data"):
        resampling_grid(SHAPE, AFFINE, far, (5, 5, 5))
    with pytest.raises(ValueError, match="without anchor vector"):
        resampling_grid(SHAPE, AFFINE, np.eye(3), (5, 5, 5))


def _all_maps(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = model.compute_contrast("a - b", output_type="all")
    return maps


@pytest.mark.parametrize(
    "params",
    [
        {"target_affine": TARGET, "target_shape": (15, 17, 14)},
        {"target_affine": np.diag([2.5, 2.5, 2.5])},
        {"target_affine": TARGET, "target_shape": (15, 17, 14), "smoothing_fwhm": 5.0},
    ],
    ids=["4x4", "3x3", "4x4-smoothed"],
)
@pytest.mark.parametrize("with_mask", [False, True])
def test_fit_with_target_grid_equals_nilearn(rdata, params, with_mask):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    kwargs = dict(t_r=2.0, mask_img=rdata["mask"] if with_mask else None, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = NilearnModel(**kwargs).fit(rdata["img"], events=rdata["events"])
    ours = FirstLevelModel(**kwargs, chunks={"time": 7}).fit(rdata["path"], events=rdata["events"])
    mask = np.asarray(theirs.masker_.mask_img_.dataobj) > 0
    np.testing.assert_array_equal(np.asarray(ours.mask_img_.dataobj) > 0, mask)
    a, b = _all_maps(ours), _all_maps(theirs)
    for name, ref in b.items():
        assert a[name].shape == ref.shape and np.allclose(a[name].affine, ref.affine)
        x, y = np.asarray(a[name].dataobj)[mask], np.asarray(ref.dataobj)[mask]
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(y).max()), err_msg=name)


def test_resampling_streams_without_holding_the_run(rdata, monkeypatch):
    """Volumes are resampled a chunk at a time: no call ever sees the whole run."""
    import daskglm.io.views as views

    seen = []
    original = views.resample_volumes

    def spy(volumes, grid, **kwargs):
        seen.append(len(volumes))
        return original(volumes, grid, **kwargs)

    monkeypatch.setattr(views, "resample_volumes", spy)
    model = FirstLevelModel(t_r=2.0, mask_img=rdata["mask"], target_affine=TARGET, target_shape=(15, 17, 14),
                            chunks={"time": 5})
    model.fit(rdata["path"], events=rdata["events"])
    _all_maps(model)
    assert seen and max(seen) <= 5 and sum(seen) >= N_SCANS


def test_target_shape_without_affine_is_refused(rdata):
    with pytest.raises(ValueError, match="target_affine should be specified too"):
        FirstLevelModel(t_r=2.0, target_shape=(10, 10, 10)).fit(rdata["path"], events=rdata["events"])


def test_sample_masks_with_resampling_equal_nilearn(rdata):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    keep = np.ones(N_SCANS, bool)
    keep[[0, 1, 20, 21, 47]] = False
    kwargs = dict(t_r=2.0, mask_img=rdata["mask"], target_affine=TARGET, target_shape=(15, 17, 14))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = NilearnModel(**kwargs).fit(rdata["img"], events=rdata["events"], sample_masks=keep)
    ours = FirstLevelModel(**kwargs).fit(rdata["path"], events=rdata["events"], sample_masks=keep)
    mask = np.asarray(theirs.masker_.mask_img_.dataobj) > 0
    x = np.asarray(_all_maps(ours)["z_score"].dataobj)[mask]
    y = np.asarray(_all_maps(theirs)["z_score"].dataobj)[mask]
    np.testing.assert_allclose(x, y, atol=1e-6)


def test_non_finite_values_resample_as_nilearn():
    """nilearn extrapolates NaN/inf from neighbours, resamples, and puts NaN back (nearest)."""
    rng = np.random.default_rng(1)
    data = rng.standard_normal((9, 10, 11, 2)) * 10 + 100
    data[4, 5, 6, 0] = np.nan
    data[2:4, 3, 3, 1] = np.inf
    data[0, 0, 0, :] = np.nan  # on the border
    img = nib.Nifti1Image(data, AFFINE)
    with pytest.warns(RuntimeWarning, match="NaNs or infinite values"):
        ref = resample_img(img, target_affine=TARGET, target_shape=(15, 17, 14), interpolation="continuous",
                           copy_header=True, force_resample=True)
    grid = resampling_grid(data.shape[:3], AFFINE, TARGET, (15, 17, 14))
    clip = (float(np.nanmin(data)), float(np.nanmax(data)))
    ours = resample_volumes(np.ascontiguousarray(data.transpose(3, 2, 1, 0)), grid, clip_range=clip)
    np.testing.assert_array_equal(ours.transpose(3, 2, 1, 0), np.asarray(ref.dataobj))
    assert np.isnan(ours).any()


def test_target_equal_to_the_runs_grid_does_not_resample(rdata):
    """nilearn's masker leaves runs on the target grid alone; a mask elsewhere is resampled to it."""
    other = nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), TARGET)
    model = FirstLevelModel(t_r=2.0, mask_img=other, target_affine=AFFINE, target_shape=SHAPE)
    model.fit(rdata["path"], events=rdata["events"])
    assert model.space_.crop is None  # streamed as read: no resampling onto a crop of the target grid
    assert model.mask_img_.shape == SHAPE and np.allclose(model.mask_img_.affine, AFFINE)
