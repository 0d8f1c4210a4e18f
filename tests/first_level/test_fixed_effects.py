"""compute_fixed_effects: nilearn's numerics on images, blockwise, with clear input errors."""

from __future__ import annotations

import dask
import nibabel as nib
import numpy as np
import pytest
from nilearn.glm import compute_fixed_effects as nl_fixed_effects
from nilearn.maskers import NiftiMasker

from daskglm import compute_fixed_effects
from daskglm.errors import NiftiInputError
from daskglm.first_level.fixed_effects import fixed_effects_maps

SHAPE = (7, 8, 6)
AFFINE = np.diag([3.0, 3.0, 3.5, 1.0])


def _img(data, affine=AFFINE):
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)


@pytest.fixture(scope="module")
def run_maps():
    rng = np.random.default_rng(7)
    effects = [_img(rng.normal(size=SHAPE)) for _ in range(3)]
    variances = [_img(rng.uniform(0.5, 2.0, size=SHAPE)) for _ in range(3)]
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[1:6, 2:7, 1:5] = 1
    return effects, variances, nib.Nifti1Image(mask, AFFINE)


@pytest.mark.parametrize("precision_weighted", [False, True])
def test_matches_nilearn_with_dofs(run_maps, precision_weighted):
    effects, variances, mask = run_maps
    dofs = [40, 55, 61]
    ours = compute_fixed_effects(effects, variances, mask, precision_weighted, dofs=dofs)
    ref = nl_fixed_effects(effects, variances, mask, precision_weighted=precision_weighted,
                           dofs=dofs)
    inside = mask.get_fdata() > 0
    for a, b, name in zip(ours, ref, ("effect", "variance", "stat", "z")):
        np.testing.assert_allclose(a.get_fdata()[inside], b.get_fdata()[inside], rtol=1e-5,
                                   atol=1e-6, err_msg=name)
        assert np.all(a.get_fdata()[~inside] == 0)


def test_fitted_masker_as_mask_and_no_z(run_maps):
    effects, variances, mask = run_maps
    masker = NiftiMasker(mask_img=mask).fit()
    with_masker = compute_fixed_effects(effects, variances, masker, return_z_score=False)
    with_image = compute_fixed_effects(effects, variances, mask, return_z_score=False)
    assert len(with_masker) == 3
    for a, b in zip(with_masker, with_image):
        np.testing.assert_array_equal(a.get_fdata(), b.get_fdata())


def test_maps_are_lazy(run_maps):
    effects, variances, mask = run_maps

    def forbidden(dsk, keys, **kwargs):
        raise AssertionError("fixed_effects_maps computed something")

    with dask.config.set(scheduler=forbidden):
        *arrays, mask_arr, _ = fixed_effects_maps(effects, variances, mask)
    assert all(isinstance(a, dask.array.Array) for a in arrays)
    assert arrays[0].shape == (int(mask_arr.sum()),)


def test_input_errors_name_the_problem(run_maps):
    effects, variances, mask = run_maps
    with pytest.raises(ValueError, match="No contrast images"):
        compute_fixed_effects([], [], mask)
    with pytest.raises(ValueError, match=r"contrast images \(3\) differs .* variance images \(2\)"):
        compute_fixed_effects(effects, variances[:2], mask)
    with pytest.raises(ValueError, match="degrees of freedom"):
        compute_fixed_effects(effects, variances, mask, dofs=[10, 20])
    with pytest.raises(NiftiInputError, match="shape"):
        compute_fixed_effects(effects[:2] + [_img(np.zeros((7, 8, 5)))], variances, mask)
    with pytest.raises(NiftiInputError, match="affine"):
        compute_fixed_effects(effects[:2] + [_img(np.zeros(SHAPE), np.eye(4))], variances, mask)
    with pytest.raises(NiftiInputError, match="empty"):
        compute_fixed_effects(effects, variances, nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE))


def test_volume_and_surface_maps_get_the_same_argument_checks(run_maps):
    """One check (``check_fixed_effects_inputs``) for both kinds of maps, nilearn's messages."""
    from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage

    from daskglm.first_level.fixed_effects import check_fixed_effects_inputs, surface_fixed_effects

    coords = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    mesh = PolyMesh(left=InMemoryMesh(coords, faces), right=InMemoryMesh(coords, faces))
    rng = np.random.default_rng(0)
    maps = [SurfaceImage(mesh, {"left": rng.normal(size=4), "right": rng.normal(size=4)}) for _ in range(3)]
    effects, variances, mask = run_maps
    assert check_fixed_effects_inputs(effects, variances) == [100, 100, 100]
    assert check_fixed_effects_inputs(effects, variances, np.array([4, 5, 6])) == [4, 5, 6]
    for fixed_effects, contrasts in ((compute_fixed_effects, effects), (surface_fixed_effects, maps)):
        with pytest.raises(ValueError, match="No contrast images"):
            fixed_effects([], [])
        with pytest.raises(ValueError, match=r"contrast images \(3\) differs .* variance images \(2\)"):
            fixed_effects(contrasts, contrasts[:2])
        with pytest.raises(ValueError, match=r"degrees of freedom \(2\) differs .* contrast images \(3\)"):
            fixed_effects(contrasts, contrasts, dofs=[10, 20])
