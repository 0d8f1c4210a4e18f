"""Surface maps at the group level: daskglm's maps equal nilearn 0.14.1's on fsaverage5.

Held-out reference: nilearn's own ``SecondLevelModel`` and
``non_parametric_inference`` on the same ``SurfaceImage`` maps (both
hemispheres of fsaverage5, 10,242 vertices each): every output type within
1e-3 on ≥ 99.9 % of vertices, with and without mesh smoothing and a
surface mask, from lists, a 2-D ``SurfaceImage``, and first-level models
fitted on surfaces (nilearn's and daskglm's); the permutation maps (max-T,
sign flips and row permutations) from the same ``random_state``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_fsaverage
from nilearn.glm.first_level import FirstLevelModel as NilearnFLM
from nilearn.glm.second_level import SecondLevelModel as NilearnSLM
from nilearn.glm.second_level import non_parametric_inference as nilearn_npi
from nilearn.surface import SurfaceImage

import daskglm
from daskglm.errors import GroupInputError

N_SUBJECTS = 8
OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


@pytest.fixture(scope="module")
def mesh():
    from nilearn.surface import PolyMesh

    pial = load_fsaverage("fsaverage5")["pial"]  # in memory: a FileMesh re-reads its GIfTI at every check
    return PolyMesh(**{part: pial.parts[part].loaded() for part in ("left", "right")})


def _surface_maps(mesh, n: int, seed: int = 0) -> list[SurfaceImage]:
    """One map per subject: an effect on part of each hemisphere, plus noise."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n):
        data = {}
        for part in ("left", "right"):
            size = mesh.parts[part].n_vertices
            effect = np.zeros(size)
            effect[: size // 5] = 0.8
            data[part] = effect + rng.normal(size=size)
        maps.append(SurfaceImage(mesh=mesh, data=data))
    return maps


def _values(img) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(img.data.parts[p], dtype=np.float64)) for p in ("left", "right")])


def _agreement(ours, ref, tol: float = 1e-3) -> float:
    a, b = _values(ours), _values(ref)
    return float(((np.abs(a - b) < tol) | (np.isnan(a) & np.isnan(b))).mean())


def _design(n: int, covariate: bool) -> pd.DataFrame:
    columns = {"intercept": np.ones(n)}
    if covariate:
        columns["age"] = np.linspace(-1, 1, n) ** 3
    return pd.DataFrame(columns)


def _mask(mesh) -> SurfaceImage:
    data = {p: (np.arange(mesh.parts[p].n_vertices) % 7 != 0).astype(np.int8) for p in ("left", "right")}
    return SurfaceImage(mesh=mesh, data=data)


@pytest.mark.parametrize(("covariate", "smoothing", "masked"),
                         [(False, None, False), (True, None, True), (False, 6.0, False)])
def test_surface_group_maps_equal_nilearns(mesh, covariate, smoothing, masked):
    maps = _surface_maps(mesh, N_SUBJECTS)
    design = _design(N_SUBJECTS, covariate)
    params = {"smoothing_fwhm": smoothing, "mask_img": _mask(mesh) if masked else None}
    contrast = "age" if covariate else "intercept"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = daskglm.SecondLevelModel(**params).fit(maps, design_matrix=design)
        ref = NilearnSLM(**params).fit(maps, design_matrix=design)
        ours_maps = ours.compute_contrast(contrast, output_type="all")
        ref_maps = ref.compute_contrast(contrast, output_type="all")
    assert isinstance(ours.mask_img_, SurfaceImage)
    assert ours.n_elements_ == ref.n_elements_
    for name in OUTPUTS:
        assert isinstance(ours_maps[name], SurfaceImage)
        assert _agreement(ours_maps[name], ref_maps[name]) >= 0.999, name


def test_two_d_surface_image_and_dataframe_equal_the_list(mesh):
    maps = _surface_maps(mesh, N_SUBJECTS, seed=1)
    design = _design(N_SUBJECTS, False)
    listed = daskglm.SecondLevelModel().fit(maps, design_matrix=design).compute_contrast()
    assert all(m.data.parts["left"].ndim == 1 for m in maps)  # the caller's images are left as they were
    stacked = SurfaceImage(mesh=mesh, data={p: np.stack([np.asarray(m.data.parts[p]) for m in maps], axis=1)
                                            for p in ("left", "right")})
    two_d = daskglm.SecondLevelModel().fit(stacked, design_matrix=design).compute_contrast()
    np.testing.assert_allclose(_values(two_d), _values(listed), rtol=1e-10)
    table = pd.DataFrame({"subject_label": [f"{i:02d}" for i in range(N_SUBJECTS)], "map_name": "a",
                          "effects_map_path": maps})
    from_table = daskglm.SecondLevelModel().fit(table).compute_contrast(first_level_contrast="a")
    np.testing.assert_allclose(_values(from_table), _values(listed), rtol=1e-10)


def _surface_runs(mesh, n_scans: int, seed: int):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"task": np.tile([0.0, 0.0, 1.0, 1.0], n_scans // 4), "constant": np.ones(n_scans)})
    data = {p: 100 + rng.normal(size=(mesh.parts[p].n_vertices, n_scans)) + 0.5 * X["task"].to_numpy()
            for p in ("left", "right")}
    return SurfaceImage(mesh=mesh, data=data), X


def test_surface_first_level_models_equal_nilearns(mesh):
    runs = [_surface_runs(mesh, 24, seed) for seed in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_flm = [daskglm.FirstLevelModel(noise_model="ols").fit(img, design_matrices=X) for img, X in runs]
        ref_flm = [NilearnFLM(noise_model="ols").fit(img, design_matrices=X) for img, X in runs]
        for i, (a, b) in enumerate(zip(ours_flm, ref_flm)):
            a.subject_label = b.subject_label = f"{i:02d}"
        # nilearn 0.14.1 fits surface models at the group level but its compute_contrast refuses them
        # (check_niimg on their SurfaceImage effects): the reference is its model on those effect maps
        effects = [m.compute_contrast("task", output_type="effect_size") for m in ref_flm]
        ref = NilearnSLM().fit(effects, design_matrix=_design(len(effects), False)).compute_contrast(
            output_type="all")
        from_ours = daskglm.SecondLevelModel().fit(ours_flm).compute_contrast(first_level_contrast="task",
                                                                             output_type="all")
        from_nilearns = daskglm.SecondLevelModel().fit(ref_flm).compute_contrast(first_level_contrast="task",
                                                                                output_type="all")
    for name in OUTPUTS:
        assert _agreement(from_nilearns[name], ref[name]) >= 0.999, name
        assert _agreement(from_ours[name], ref[name]) >= 0.999, name


@pytest.mark.parametrize("covariate", [False, True])
def test_surface_permutations_equal_nilearns(mesh, covariate):
    maps = _surface_maps(mesh, N_SUBJECTS, seed=2)
    design = _design(N_SUBJECTS, covariate)
    kwargs = {"design_matrix": design, "second_level_contrast": "age" if covariate else "intercept",
              "n_perm": 100, "random_state": 0, "two_sided_test": True}
    ours = daskglm.non_parametric_inference(maps, **kwargs)
    ref = nilearn_npi(maps, **{**kwargs, "second_level_contrast": [0, 1] if covariate else [1]})
    assert isinstance(ours, SurfaceImage)
    np.testing.assert_allclose(_values(ours), _values(ref), atol=1e-6)


@pytest.mark.parametrize("bad", [["sub-01_hemi-L.func.gii", "sub-02_hemi-L.func.gii"], "sub-01_hemi-L.shape.gii"])
def test_gifti_files_are_refused_clearly(bad):
    with pytest.raises(GroupInputError, match="GIfTI file: it holds one hemisphere"):
        daskglm.SecondLevelModel().fit(bad, design_matrix=pd.DataFrame({"intercept": np.ones(2)}))


def test_mixed_surface_and_volume_masks_are_refused(mesh, tmp_path):
    import nibabel as nib

    maps = _surface_maps(mesh, 3)
    nifti_mask = nib.Nifti1Image(np.ones((3, 3, 3), dtype=np.uint8), np.eye(4))
    with pytest.raises(TypeError, match="compatible types"):
        daskglm.non_parametric_inference(maps, design_matrix=_design(3, False), mask=nifti_mask, n_perm=5)
