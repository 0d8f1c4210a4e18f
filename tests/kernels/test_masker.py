"""VolumeMasker against nilearn: smoothing the whole field of view, then masking.

``VolumeMasker`` only smooths the mask's bounding box grown by the kernel's
reach; these tests check that the in-mask values equal nilearn's
``smooth_img`` (and ``NiftiMasker(smoothing_fwhm=...)``) on the full image, for
an oblique, anisotropic affine and an irregular mask touching the borders.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import smooth_img
from nilearn.maskers import NiftiMasker

from daskglm.kernels import masker as masker_module
from daskglm.kernels.masker import VolumeMasker, nilearn_float_dtype, smoothing_sigmas

SHAPE = (20, 16, 12)
N_VOLS = 4


def _oblique_affine() -> np.ndarray:
    """Anisotropic voxels (2.0, 3.0, 2.5 mm) rotated about two axes."""
    a, b = 0.4, -0.25
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([2.0, 3.0, 2.5])
    affine[:3, 3] = [-12.0, 7.5, 30.0]
    return affine


def _mask(seed: int = 0) -> np.ndarray:
    """An irregular blob plus scattered voxels in one corner, touching the low borders.

    Its bounding box grown by the kernels' reach is smaller than the image, so
    the crop is exercised together with nilearn's reflection at the image edge.
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.indices(SHAPE)
    blob = ((x - 3.0) / 4) ** 2 + ((y - 5.0) / 4) ** 2 + ((z - 4.0) / 3) ** 2 < 1.0
    scattered = (rng.random(SHAPE) < 0.05) & (x < 8) & (y < 10) & (z < 8)
    mask = blob | scattered
    mask[0, 0, 0] = mask[7, 9, 7] = True
    mask &= ~((x < 3) & (y > 5) & (z > 3))  # a notch
    return mask


def _data(dtype, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = 100.0 + 20.0 * rng.standard_normal(SHAPE + (N_VOLS,))
    return data.astype(dtype)


def _volumes(data: np.ndarray) -> np.ndarray:
    """The (k, nz, ny, nx) layout VolumeMasker reads."""
    return np.ascontiguousarray(data.transpose(3, 2, 1, 0))


def _nilearn_smooth_then_mask(data, affine, mask, fwhm) -> np.ndarray:
    smoothed = smooth_img(nib.Nifti1Image(data, affine), fwhm).get_fdata(dtype=np.float64)
    return smoothed[mask].T  # (k, V), nilearn's voxel order


def _tolerance(dtype) -> dict:
    eps = np.finfo(nilearn_float_dtype(dtype)).eps
    return {"rtol": 8 * eps, "atol": 8 * eps * 100.0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("fwhm", [5.0, [4.0, 0.0, 7.0], 9.0])
def test_bounding_box_smoothing_equals_full_field_of_view(dtype, fwhm):
    affine, mask = _oblique_affine(), _mask()
    data = _data(dtype)
    masker = VolumeMasker(mask, affine, fwhm)
    ours = masker.transform(_volumes(data))
    assert ours.dtype == nilearn_float_dtype(data.dtype)
    assert ours.shape == (N_VOLS, int(mask.sum()))
    # the box really is smaller than the image for the narrow kernel
    if fwhm == 5.0:
        assert np.prod([s.stop - s.start for s in masker.crop]) < mask.size
    np.testing.assert_allclose(ours, _nilearn_smooth_then_mask(data, affine, mask, fwhm), **_tolerance(dtype))


def test_matches_nifti_masker_with_smoothing():
    affine, mask = _oblique_affine(), _mask(3)
    data = _data(np.float32, seed=4)
    masker = NiftiMasker(mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine),
                         smoothing_fwhm=6.0, standardize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = masker.fit_transform(nib.Nifti1Image(data, affine))
    ours = VolumeMasker(mask, affine, 6.0).transform(_volumes(data))
    np.testing.assert_allclose(ours, ref, **_tolerance(np.float32))


@pytest.mark.parametrize("fwhm", [None, 6.0])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf + -inf in a sum
def test_non_finite_values_become_zero_as_in_nilearn(fwhm):
    affine, mask = _oblique_affine(), _mask()
    data = _data(np.float32)
    inside = np.argwhere(mask)[[0, 7]]
    data[tuple(inside[0]), 1] = np.nan
    data[tuple(inside[1]), 2] = np.inf
    outside = np.argwhere(~mask)[5]
    data[tuple(outside), 0] = -np.inf  # outside the mask, but within the kernel's reach
    with pytest.warns(UserWarning, match="Non-finite values"):
        ours = VolumeMasker(mask, affine, fwhm).transform(_volumes(data))
    assert np.all(np.isfinite(ours))
    if fwhm is None:
        clean = np.where(np.isfinite(data), data, 0)
        np.testing.assert_array_equal(ours, clean[mask].T)
    else:
        np.testing.assert_allclose(
            ours, _nilearn_smooth_then_mask(data, affine, mask, fwhm), **_tolerance(np.float32)
        )


@pytest.mark.parametrize("fwhm", [None, 0.0, [0.0, 0.0, 0.0]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_no_smoothing_is_plain_masking(fwhm, dtype):
    affine, mask = _oblique_affine(), _mask()
    data = _data(dtype)
    masker = VolumeMasker(mask, affine, fwhm)
    assert masker.sigmas is None
    ours = masker.transform(_volumes(data))
    assert ours.dtype == nilearn_float_dtype(data.dtype)
    np.testing.assert_array_equal(ours, data[mask].T.astype(ours.dtype))


def test_smoothing_sigmas_use_the_affine_column_norms():
    affine = _oblique_affine()
    sigmas = smoothing_sigmas(affine, 6.0)
    np.testing.assert_allclose(sigmas, 6.0 / (np.sqrt(8 * np.log(2)) * np.array([2.0, 3.0, 2.5])))
    assert smoothing_sigmas(affine, None) is None
    np.testing.assert_allclose(smoothing_sigmas(affine, [6.0, None, 0.0])[1:], 0.0)


@pytest.mark.parametrize("engine", ["opencv", "scipy"])
@pytest.mark.parametrize("shape", [(2, 3, 1), (5, 1, 9), (13, 11, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_smoothing_engines_equal_scipy_on_the_full_field(engine, shape, dtype, monkeypatch):
    """OpenCV's separable passes and the scipy fallback give scipy's numbers, even for a kernel
    reaching further than the image (repeated reflections) and for one-voxel axes."""
    if engine == "opencv":
        pytest.importorskip("cv2")
    else:
        monkeypatch.setattr(masker_module, "_opencv", lambda: None)
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(5)
    data = (100 + 20 * rng.standard_normal((*shape, 3))).astype(dtype)
    sigmas = np.array([2.1, 0.0, 1.3])  # the kernel's reach (9 and 5 voxels) exceeds the small axes
    expected = data.copy()
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            expected = gaussian_filter1d(expected, sigma, axis=axis, truncate=4.0)
    volumes = _volumes(data)
    result = masker_module.smooth_box(volumes.copy(), sigmas)
    assert result.dtype == dtype
    np.testing.assert_allclose(result.transpose(3, 2, 1, 0), expected, **_tolerance(dtype))


def test_gaussian_taps_are_scipys():
    from scipy.ndimage import gaussian_filter1d

    impulse = np.zeros(41)
    impulse[20] = 1.0
    for sigma in (0.4, 1.06, 2.5):
        taps = masker_module.gaussian_taps(sigma)
        r = len(taps) // 2
        np.testing.assert_allclose(taps, gaussian_filter1d(impulse, sigma, truncate=4.0)[20 - r : 21 + r],
                                   rtol=1e-12, atol=1e-15)


def test_transposed_input_views_are_smoothed_like_contiguous_ones():
    """In-memory runs reach the masker as a transposed (x, y, z, t) view: no unit stride on x."""
    affine, mask = _oblique_affine(), _mask()
    data = _data(np.float32)
    masker = VolumeMasker(mask, affine, 5.0)
    view = data.transpose(3, 2, 1, 0)
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(masker.transform(view), masker.transform(np.ascontiguousarray(view)))
