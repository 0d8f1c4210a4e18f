"""daskglm.non_parametric_inference against nilearn 0.14.1 (same draws, and Monte Carlo error)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.second_level import SecondLevelModel as NilearnSLM
from nilearn.glm.second_level import non_parametric_inference as nilearn_npi
from scipy.ndimage import gaussian_filter

from daskglm import non_parametric_inference
from daskglm.kernels import permutation as K

N = 14
SHAPE = (11, 12, 10)


@pytest.fixture(scope="module")
def group():
    rng = np.random.default_rng(7)
    mask = np.zeros(SHAPE, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    signal = np.zeros(SHAPE)
    signal[3:6, 3:6, 3:6] = 1.2
    imgs = [nib.Nifti1Image((gaussian_filter(rng.standard_normal(SHAPE), 1.2) * 2.5 + signal) * mask, np.eye(4))
            for _ in range(N)]
    design = pd.DataFrame({"intercept": np.ones(N), "age": rng.standard_normal(N),
                           "g": np.tile([1.0, 0.0], N // 2)})
    return {"imgs": imgs, "design": design, "mask": nib.Nifti1Image(mask.astype(np.uint8), np.eye(4))}


def _both(group, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = non_parametric_inference(group["imgs"], design_matrix=group["design"], **kwargs)
        ref = nilearn_npi(group["imgs"], design_matrix=group["design"], **kwargs)
    if not isinstance(ref, dict):
        return {"logp_max_t": ours}, {"logp_max_t": ref}
    return ours, ref


@pytest.mark.parametrize("kwargs", [
    {"second_level_contrast": "intercept"},                                    # sign flips, covariates
    {"second_level_contrast": "age", "two_sided_test": True, "n_jobs": 2},     # permutations
    {"second_level_contrast": "g", "model_intercept": False},
    {"second_level_contrast": "intercept", "tfce": True, "threshold": 0.01},
    {"second_level_contrast": "age", "tfce": True, "threshold": 0.05, "two_sided_test": True},
])
def test_same_draws_as_nilearn(group, kwargs):
    """Same random_state and n_jobs: nilearn's permutations, so nilearn's maps."""
    n_perm = 40 if kwargs.get("tfce") else 200
    ours, ref = _both(group, n_perm=n_perm, random_state=5, **kwargs)
    assert set(ours) == set(ref)
    for name in ref:
        np.testing.assert_allclose(ours[name].get_fdata(), ref[name].get_fdata(), atol=1e-8, err_msg=name)


def test_one_sample_within_monte_carlo_error(group):
    """Different seeds: FWE p-values agree within Monte Carlo error."""
    n_perm = 400
    design = pd.DataFrame({"intercept": np.ones(N)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = non_parametric_inference(group["imgs"], design_matrix=design, n_perm=n_perm, random_state=1)
        ref = nilearn_npi(group["imgs"], design_matrix=design, n_perm=n_perm, random_state=2)
    mask = np.asarray(group["mask"].dataobj).astype(bool)
    p_ours = 10 ** -ours.get_fdata()[mask]
    p_ref = 10 ** -ref.get_fdata()[mask]
    se = np.sqrt(p_ref * (1 - p_ref) / n_perm * 2) + 1.0 / n_perm
    assert np.mean(np.abs(p_ours - p_ref) <= 4 * se) >= 0.99
    assert (p_ref < 0.05).any()  # the signal is found by both
    assert np.array_equal(p_ours < 0.01, p_ref < 0.01) or np.mean((p_ours < 0.05) == (p_ref < 0.05)) > 0.97


def test_uncorrected_and_batches(group, monkeypatch):
    """Uncorrected p ≈ parametric p; the result does not depend on the batching."""
    kwargs = {"design_matrix": group["design"], "second_level_contrast": "age", "n_perm": 300,
              "random_state": 0, "uncorrected": True}
    out = non_parametric_inference(group["imgs"], **kwargs)
    import daskglm.group.permutation as perm

    monkeypatch.setattr(perm, "BATCH_ELEMENTS", 7 * 1024)  # many permutation batches
    import daskglm.group.graph as graph

    monkeypatch.setattr(graph, "voxel_block_size", lambda n: 200)  # several voxel blocks
    again = non_parametric_inference(group["imgs"], **kwargs)
    for name in out:
        np.testing.assert_array_equal(out[name].get_fdata(), again[name].get_fdata(), err_msg=name)
    mask = np.asarray(group["mask"].dataobj).astype(bool)
    p_perm = 10 ** -out["logp_t"].get_fdata()[mask]
    slm = NilearnSLM().fit(group["imgs"], design_matrix=group["design"])
    p_param = slm.compute_contrast("age", output_type="p_value").get_fdata()[mask]
    se = np.sqrt(p_param * (1 - p_param) / 300)
    # one set of permutations serves every voxel, so the errors are correlated across voxels
    assert np.corrcoef(p_perm, p_param)[0, 1] > 0.98
    assert np.median(np.abs(p_perm - p_param)) <= 2 * np.median(se)
    assert np.all(out["logp_t"].get_fdata()[mask] >= out["logp_max_t"].get_fdata()[mask] - 1e-12)


def test_kernel_batch_matches_one_by_one():
    """A batched (P, n) @ (n, V) product equals nilearn's per-permutation formula."""
    rng = np.random.default_rng(3)
    Y = rng.standard_normal((10, 50))
    design = K.prepare_design(rng.standard_normal(10), np.c_[rng.standard_normal(10)], True)
    Yn = K.normalize_targets(Y, design)
    perms = K.draw_permutations(np.random.RandomState(0), 6, 2, 10, design.intercept_test)
    batch = K.batch_scores(Yn, design, perms)
    for i, p in enumerate(perms):
        one = K.t_scores(design.tested[p], Yn, design.covars[p])
        np.testing.assert_allclose(batch[i], one, rtol=1e-10)


def test_errors(group):
    with pytest.raises(ValueError, match="File not found"):
        non_parametric_inference("random string object")
    with pytest.raises(ValueError, match="n_jobs == 0"):
        non_parametric_inference(group["imgs"], design_matrix=group["design"], second_level_contrast="age",
                                 n_jobs=0, n_perm=2)


@pytest.mark.parametrize("two_sided", [False, True])
def test_one_sample_without_confounds_same_as_nilearn(group, two_sided):
    """The max-over-b shortcut (no confounds) gives nilearn's maps exactly."""
    design = pd.DataFrame({"intercept": np.ones(N)})
    kwargs = {"design_matrix": design, "n_perm": 300, "random_state": 9, "two_sided_test": two_sided}
    ours = non_parametric_inference(group["imgs"], **kwargs)
    ref = nilearn_npi(group["imgs"], **kwargs)
    np.testing.assert_array_equal(ours.get_fdata(), ref.get_fdata())


def test_batch_max_equals_max_of_scores():
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((12, 300))
    Y[:, 5] = 0  # an all-zero voxel: NaN scores, ignored
    for tested, conf in ((np.ones(12), None), (rng.standard_normal(12), None),
                         (rng.standard_normal(12), np.c_[rng.standard_normal(12)])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            design = K.prepare_design(tested, conf, conf is not None)
            Yn = K.normalize_targets(Y, design)
        perms = K.draw_permutations(np.random.RandomState(1), 20, 1, 12, design.intercept_test)
        for two_sided in (False, True):
            scores = K.batch_scores(Yn, design, perms)
            expected = np.nanmax(np.fabs(scores) if two_sided else scores, axis=1)
            np.testing.assert_array_equal(K.batch_max(Yn, design, perms, two_sided), expected)
