"""CIFTI-2 maps at the group level (beyond nilearn): dense scalar maps in, dense scalar maps out.

The reference is a direct numpy OLS on the grayordinate matrix (β =
pinv(X) y, t = cβ / sqrt(σ² c(XᵀX)⁻¹cᵀ), z from the t distribution's tails)
and nilearn's public ``permuted_ols`` on the same matrix (same
``random_state``: the same sign flips / permutations).  The subjects' maps
lie on the reduced fsLR-like grayordinates of the BIDS simulator (two
partial cortices, two thalamus volume parts); the cortex's mesh for TFCE is
a triangulated strip of as many vertices.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel import cifti2
from nilearn.mass_univariate import permuted_ols
from scipy import stats

import daskglm
from daskglm.data.bids import cifti_brain_models
from daskglm.errors import GroupInputError, SurfaceInputError
from daskglm.group.maskers import CiftiMasker, masker_space, space_topology
from daskglm.kernels.mesh import mesh_adjacency, voxel_adjacency

N_SUBJECTS = 12
N_VERTICES = 120


@pytest.fixture(scope="module")
def brain_models():
    return cifti_brain_models(n_vertices=N_VERTICES)


def _dscalar(values: np.ndarray, brain_models) -> cifti2.Cifti2Image:
    header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis([f"map {i}" for i in range(len(values))]),
                                            brain_models))
    return cifti2.Cifti2Image(np.asarray(values, dtype=np.float32), header=header)


@pytest.fixture(scope="module")
def study(brain_models, tmp_path_factory):
    rng = np.random.default_rng(0)
    n = len(brain_models)
    age = np.linspace(-1, 1, N_SUBJECTS) ** 3
    Y = 0.4 + np.outer(age, np.linspace(0, 1, n)) + rng.normal(size=(N_SUBJECTS, n))
    Y = Y.astype(np.float32)
    folder = tmp_path_factory.mktemp("cifti_group")
    paths = []
    for i, row in enumerate(Y):
        path = folder / f"sub-{i:02d}_effect.dscalar.nii"
        _dscalar(row[None], brain_models).to_filename(path)
        paths.append(str(path))
    design = pd.DataFrame({"intercept": np.ones(N_SUBJECTS), "age": age})
    return {"Y": Y.astype(np.float64), "paths": paths, "design": design, "folder": folder}


def _numpy_ols(Y: np.ndarray, X: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    beta = np.linalg.pinv(X) @ Y
    df = X.shape[0] - np.linalg.matrix_rank(X)
    sigma2 = ((Y - X @ beta) ** 2).sum(axis=0) / df
    var = sigma2 * (c @ np.linalg.inv(X.T @ X) @ c)
    t = (c @ beta) / np.sqrt(var)
    z = np.where(t > 0, stats.norm.isf(stats.t.sf(t, df)), stats.norm.ppf(stats.t.cdf(t, df)))
    return {"effect_size": c @ beta, "effect_variance": var, "stat": t, "z_score": z}


def _values(img) -> np.ndarray:
    assert isinstance(img, cifti2.Cifti2Image)
    return np.asarray(img.dataobj, dtype=np.float64)[0]


@pytest.mark.parametrize("contrast", ["intercept", "age"])
def test_cifti_group_maps_equal_numpy_ols(study, brain_models, contrast):
    model = daskglm.SecondLevelModel().fit(study["paths"], design_matrix=study["design"])
    maps = model.compute_contrast(contrast, output_type="all")
    c = np.array([1.0, 0.0]) if contrast == "intercept" else np.array([0.0, 1.0])
    ref = _numpy_ols(study["Y"], study["design"].to_numpy(), c)
    assert model.n_elements_ == len(brain_models)
    for name, expected in ref.items():
        img = maps[name]
        assert img.header.get_axis(1) == brain_models
        close = np.abs(_values(img) - expected) < 1e-3 * max(1.0, np.abs(expected).max() * (name != "z_score"))
        assert close.mean() >= 0.999, name


def test_one_multi_map_file_and_a_dataframe_equal_the_list(study, brain_models, tmp_path):
    listed = _values(daskglm.SecondLevelModel().fit(study["paths"], design_matrix=study["design"])
                     .compute_contrast("age"))
    stacked = tmp_path / "all.dscalar.nii"
    _dscalar(study["Y"], brain_models).to_filename(stacked)
    one_file = _values(daskglm.SecondLevelModel().fit(str(stacked), design_matrix=study["design"])
                       .compute_contrast("age"))
    np.testing.assert_allclose(one_file, listed, rtol=1e-6, atol=1e-6)
    table = pd.DataFrame({"subject_label": [f"{i:02d}" for i in range(N_SUBJECTS)], "map_name": "effect",
                          "effects_map_path": study["paths"]})
    model = daskglm.SecondLevelModel().fit(table)
    intercept_only = _values(model.compute_contrast(first_level_contrast="effect"))
    ref = _numpy_ols(study["Y"], np.ones((N_SUBJECTS, 1)), np.array([1.0]))["z_score"]
    assert (np.abs(intercept_only - ref) < 1e-3).mean() >= 0.999


def test_cifti_masks_and_refusals(study, brain_models):
    keep = np.zeros(len(brain_models), dtype=bool)
    keep[::3] = True
    mask_img = _dscalar(keep[None].astype(np.float32), brain_models)
    model = daskglm.SecondLevelModel(mask_img=mask_img).fit(study["paths"], design_matrix=study["design"])
    z = _values(model.compute_contrast("age"))
    assert model.n_elements_ == keep.sum() and np.all(z[~keep] == 0)
    ref = _numpy_ols(study["Y"][:, keep], study["design"].to_numpy(), np.array([0.0, 1.0]))["z_score"]
    np.testing.assert_allclose(z[keep], ref, atol=1e-3)
    with pytest.raises(SurfaceInputError, match="CIFTI files hold none"):
        daskglm.SecondLevelModel(smoothing_fwhm=4.0).fit(study["paths"], design_matrix=study["design"])
    other = cifti_brain_models(n_vertices=N_VERTICES + 20)
    with pytest.raises(GroupInputError, match="other CIFTI brain models"):
        daskglm.SecondLevelModel().fit([nib.load(study["paths"][0]), _dscalar(np.zeros((1, len(other))), other)],
                                       design_matrix=study["design"].iloc[:2])
    odd = study["folder"] / "other.dscalar.nii"  # files are parsed as they are read
    _dscalar(np.zeros((1, len(other))), other).to_filename(odd)
    model = daskglm.SecondLevelModel().fit([study["paths"][0], str(odd)], design_matrix=study["design"].iloc[:2])
    with pytest.raises(SurfaceInputError, match="brain models differ"):
        model.compute_contrast("intercept")
    with pytest.raises(GroupInputError, match="require a design matrix"):
        daskglm.SecondLevelModel().fit(study["paths"])


@pytest.mark.parametrize("contrast", ["intercept", "age"])
def test_cifti_max_t_equals_nilearns_permuted_ols(study, contrast):
    design = study["design"]
    ours = daskglm.non_parametric_inference(study["paths"], design_matrix=design, second_level_contrast=contrast,
                                            n_perm=200, random_state=4, two_sided_test=True)
    tested = design[[contrast]].to_numpy()
    confounds = design[[c for c in design.columns if c != contrast]].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = permuted_ols(tested, study["Y"], confounding_vars=confounds, n_perm=200, random_state=4,
                           two_sided_test=True, output_type="dict")
    np.testing.assert_allclose(_values(ours), ref["logp_max_t"].ravel(), atol=1e-5)


def _strip_mesh(n: int):
    """A triangulated strip of n vertices (2 rows), as a nilearn InMemoryMesh."""
    from nilearn.surface import InMemoryMesh

    half = n // 2
    coords = np.c_[np.r_[np.arange(half), np.arange(n - half)], np.r_[np.zeros(half), np.ones(n - half)],
                   np.zeros(n)].astype(float)
    faces = [[i, i + 1, half + i] for i in range(half - 1)] + \
            [[i + 1, half + i + 1, half + i] for i in range(min(half, n - half) - 1)]
    return InMemoryMesh(coords, np.array(faces))


def test_cifti_adjacency_joins_each_cortex_by_its_mesh_and_the_voxels_by_faces(study, brain_models):
    mesh = {"left": _strip_mesh(N_VERTICES), "right": _strip_mesh(N_VERTICES)}
    masker = CiftiMasker().fit(study["paths"][0])
    topology = space_topology(masker_space(masker), mesh)
    dense = np.zeros((len(brain_models),) * 2, dtype=int)
    dense[topology.u, topology.v] = dense[topology.v, topology.u] = 1
    cortex = mesh_adjacency(mesh["left"].faces, N_VERTICES).toarray()
    for name, sl, sub in brain_models.iter_structures():
        if name in brain_models.nvertices:  # a cortex: the mesh's edges among its vertices
            np.testing.assert_array_equal(dense[sl, sl], cortex[np.ix_(sub.vertex, sub.vertex)])
    volume = brain_models.volume_mask
    np.testing.assert_array_equal(dense[np.ix_(volume, volume)], voxel_adjacency(brain_models.voxel[volume]).toarray())
    assert not dense[np.ix_(~volume, volume)].any()  # cortex and subcortex never touch


def test_cifti_tfce_needs_a_mesh_and_is_reproducible(study):
    kwargs = {"design_matrix": study["design"], "second_level_contrast": "age", "n_perm": 30, "tfce": True}
    with pytest.raises(SurfaceInputError, match="need the surfaces their cortex lies on"):
        daskglm.non_parametric_inference(study["paths"], **kwargs)
    mesh = (_strip_mesh(N_VERTICES), _strip_mesh(N_VERTICES))
    first = daskglm.non_parametric_inference(study["paths"], random_state=0, mesh=mesh, **kwargs)
    again = daskglm.non_parametric_inference(study["paths"], random_state=0, mesh=mesh, **kwargs)
    assert {"t", "logp_max_t", "tfce", "logp_max_tfce"} <= set(first)
    for key in first:
        assert isinstance(first[key], nib.Cifti2Image)
        np.testing.assert_array_equal(_values(first[key]), _values(again[key]))


@pytest.mark.parametrize("mesh", [None, "wrong"])
def test_cifti_tfce_mesh_errors_come_before_any_map_is_read(study, mesh, no_heavy_work):
    """A missing or wrong mesh is refused before the maps are read (was: after reading all of them)."""
    wrong = (_strip_mesh(N_VERTICES + 2), _strip_mesh(N_VERTICES + 2)) if mesh == "wrong" else None
    with pytest.raises(SurfaceInputError, match="vertices" if wrong else "need the surfaces"):
        daskglm.non_parametric_inference(study["paths"], design_matrix=study["design"], second_level_contrast="age",
                                         n_perm=10, threshold=0.01, mesh=wrong)


def test_a_non_cifti_file_among_cifti_maps_is_named_at_fit(study, tmp_path):
    """A NIfTI map in a list of CIFTI paths: refused at fit, by index and path (was: WrapStructError at compute)."""
    nifti = tmp_path / "sub-99_effect.nii.gz"
    nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)).to_filename(nifti)
    paths = [*study["paths"][:3], str(nifti)]
    design = study["design"].iloc[:4]
    with pytest.raises(GroupInputError, match=r"second_level_input\[3\] \('.*sub-99_effect.nii.gz'\) is not a CIFTI"):
        daskglm.SecondLevelModel().fit(paths, design_matrix=design)
    with pytest.raises(GroupInputError, match=r"second_level_input\[1\] .* is a CIFTI-2 map"):
        daskglm.SecondLevelModel().fit([str(nifti), study["paths"][0]], design_matrix=design.iloc[:2])
    with pytest.raises(GroupInputError, match=r"second_level_input\[3\]"):
        daskglm.non_parametric_inference(paths, design_matrix=design, n_perm=5)
    disguised = tmp_path / "sub-98_effect.dscalar.nii"  # a NIfTI-1 file under a CIFTI name: named when read
    nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)).to_filename(disguised)
    model = daskglm.SecondLevelModel().fit([*study["paths"][:3], str(disguised)], design_matrix=design)
    with pytest.raises(SurfaceInputError, match="sub-98_effect.dscalar.nii' is not a CIFTI-2 file"):
        model.compute_contrast("intercept")


def test_variance_input_as_one_multi_map_cifti_file(study, brain_models, tmp_path):
    """variance_input as one .dscalar.nii of one map per subject (was: nilearn's "Expected dimension is 4D"):
    the list of single-map files' result, and the per-grayordinate scipy REML reference."""
    from tests.group.test_mixed_effects_reml import TOL, _check_against_reference

    rng = np.random.default_rng(5)
    v = rng.uniform(0.2, 1.5, size=study["Y"].shape).astype(np.float32).astype(np.float64)
    stacked = tmp_path / "variances.dscalar.nii"
    _dscalar(v, brain_models).to_filename(stacked)
    listed = []
    for i, row in enumerate(v):
        listed.append(str(tmp_path / f"sub-{i:02d}_variance.dscalar.nii"))
        _dscalar(row[None], brain_models).to_filename(listed[-1])
    results = []
    for variance_input in (str(stacked), listed, nib.load(stacked)):
        model = daskglm.SecondLevelModel().fit(study["paths"], design_matrix=study["design"],
                                               variance_input=variance_input)
        maps = model.compute_contrast("age", output_type="all")
        results.append({k: _values(maps[k]) for k in ("effect_size", "effect_variance", "stat")}
                       | {"between": _values(model.between_variance_)})
    for other in results[1:]:
        for key, values in results[0].items():
            np.testing.assert_array_equal(other[key], values, err_msg=key)
    cols = slice(0, 40)
    worst, _ = _check_against_reference(study["Y"][:, cols], v[:, cols], study["design"].to_numpy(),
                                        np.array([[0.0, 1.0]]), results[0]["effect_size"][cols],
                                        results[0]["effect_variance"][cols], results[0]["between"][cols])
    assert max(worst.values()) < TOL, worst
    with pytest.raises(GroupInputError, match=r"variance_input has 2 maps"):
        daskglm.SecondLevelModel().fit(study["paths"], design_matrix=study["design"],
                                       variance_input=_dscalar(v[:2], brain_models))
    nifti = [nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4))] * len(listed)
    with pytest.raises(GroupInputError, match=r"variance_input\[0\] is not a CIFTI-2 map"):
        daskglm.SecondLevelModel().fit(study["paths"], design_matrix=study["design"], variance_input=nifti)
