"""BetaSeriesModel against nilearn's beta-series recipes (one FirstLevelModel per trial)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import NiftiMasker

from daskglm import BetaSeriesModel, FirstLevelModel
from tests.betas._recipes import agreement, lss_transformer, nilearn_beta_series
from tests.betas.conftest import T_R, make_run


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("method", ["lsa", "lss", "lss1"])
def test_betas_equal_nilearn_recipes_multi_run(beta_runs, method, noise_model):
    imgs, events, mask = beta_runs["imgs"], beta_runs["events"], beta_runs["mask"]
    model = BetaSeriesModel(method=method, t_r=T_R, mask_img=mask, noise_model=noise_model)
    ours = model.fit(imgs, events).betas_.values
    ref = nilearn_beta_series(imgs, events, mask, method, t_r=T_R, noise_model=noise_model)
    fraction, n_differ = agreement(ours, ref)
    # float64 runs: nilearn's arithmetic is ours, so no AR(1) voxel sits on a bin edge here
    assert fraction >= 0.999, f"{n_differ} (trial, voxel) values differ"
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


def test_float32_runs_agree_within_nilearn_float32_rounding():
    """nilearn scales float32 runs in float32; we accumulate in float64: ~1e-6 of the largest beta apart."""
    img, events, mask = make_run(3, dtype=np.float32)
    ours = BetaSeriesModel(t_r=T_R, mask_img=mask).fit(img, events).betas_.values
    ref = nilearn_beta_series([img], [events], mask, "lss", t_r=T_R)
    scale = np.abs(ref).max(axis=1, keepdims=True)
    assert np.abs(ours - ref).max() <= 1e-4 * scale.max()
    fraction, n_differ = agreement(ours, ref)
    assert fraction > 0.99, n_differ  # the rest: betas ~0 against float32 rounding


def test_beta_maps_are_nilearns_concatenated_images_in_events_order(beta_runs):
    imgs, events, mask = beta_runs["imgs"], beta_runs["events"], beta_runs["mask"]
    model = BetaSeriesModel(method="lss", t_r=T_R, mask_img=mask).fit(imgs, events)
    maps = model.beta_maps()
    conditions = list(pd.unique(pd.concat(events)["trial_type"]))
    assert list(maps) == conditions
    ref = nilearn_beta_series(imgs, events, mask, "lss", t_r=T_R)
    trial_types = pd.concat(events)["trial_type"].to_numpy()
    masker = NiftiMasker(mask).fit()
    for name in conditions:
        assert maps[name].shape == mask.shape + (int((trial_types == name).sum()),)
        np.testing.assert_allclose(masker.transform(maps[name]), ref[trial_types == name], rtol=1e-5,
                                   atol=1e-6)
    one = model.beta_maps("house")
    np.testing.assert_array_equal(one.get_fdata(), maps["house"].get_fdata())


@pytest.mark.parametrize("output_type", ["effect_variance", "stat", "z_score"])
def test_trial_variance_stat_and_z_equal_nilearns(output_type):
    img, events, mask = make_run(4, n_trials=6)
    model = BetaSeriesModel(method="lss", t_r=T_R, mask_img=mask).fit(img, events)
    maps = model.beta_maps(output_type=output_type)
    masker = NiftiMasker(mask).fit()
    ours = np.concatenate([masker.transform(maps[c]) for c in maps])
    order = np.concatenate([np.flatnonzero(events["trial_type"].to_numpy() == c) for c in maps])
    ref = nilearn_beta_series([img], [events], mask, "lss", output_type=output_type, t_r=T_R)[order]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_confounds_and_censoring_as_nilearn():
    img, events, mask = make_run(5, n_trials=10)
    rng = np.random.default_rng(5)
    n_scans = img.shape[-1]
    confounds = pd.DataFrame(rng.standard_normal((n_scans, 3)), columns=["motion_x", "motion_y", "csf"])
    kept = np.setdiff1d(np.arange(n_scans), [30, 31, 32, 70])
    model = BetaSeriesModel(method="lss", t_r=T_R, mask_img=mask, noise_model="ar1")
    ours = model.fit(img, events, confounds=confounds, sample_masks=kept).betas_.values
    ref = nilearn_beta_series([img], [events], mask, "lss", confounds=[confounds], sample_masks=[kept], t_r=T_R)
    fraction, n_differ = agreement(ours, ref)
    assert fraction >= 0.999, n_differ
    assert model.design_matrices_[0].shape[0] == len(kept)


def test_hrf_derivative_beta_is_the_main_regressors_with_censoring():
    """nilearn orthogonalizes each condition's derivative: the conditions' columns are not sums of trials'."""
    img, events, mask = make_run(6, n_trials=6)
    kept = np.setdiff1d(np.arange(img.shape[-1]), [2, 3, 60, 108, 109])
    params = {"t_r": T_R, "hrf_model": "glover + derivative", "noise_model": "ar1"}
    model = BetaSeriesModel(method="lss", mask_img=mask, **params)
    ours = model.fit(img, events, sample_masks=kept).betas_.values
    ref = nilearn_beta_series([img], [events], mask, "lss", sample_masks=[kept], **params)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


def test_hrf_derivative_betas_of_conditions_whose_names_prefix_each_other_equal_nilearns():
    """Conditions ``go`` and ``go_left``: ``go_left``'s columns are not ``go``'s basis columns."""
    img, events, mask = make_run(8, n_trials=6, conditions=("go", "go_left"))
    assert set(events["trial_type"]) == {"go", "go_left"}
    params = {"t_r": T_R, "hrf_model": "glover + derivative", "noise_model": "ols"}
    ours = BetaSeriesModel(method="lss", mask_img=mask, **params).fit(img, events).betas_.values
    ref = nilearn_beta_series([img], [events], mask, "lss", **params)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("noise_model, whitening, rank_deficient", [
    ("ar1", "exact", False), ("ar2", "binned", False), ("ar2", "binned", True),
])
def test_per_voxel_whitening_equals_the_first_level_model_on_each_lss_design(noise_model, whitening,
                                                                            rank_deficient):
    """Kinds nilearn lacks: the reference is daskglm's own FirstLevelModel on each trial's explicit design.

    ``rank_deficient``: a duplicated confound column, so every trial's design is rank deficient (both
    fits then use the pseudo-inverse of the whitened Gram).
    """
    img, events, mask = make_run(7, n_trials=3)
    confounds = None
    if rank_deficient:
        walk = np.cumsum(np.random.default_rng(7).normal(size=img.shape[-1]))
        confounds = pd.DataFrame({"motion": walk, "motion_copy": walk})
    params = {"t_r": T_R, "mask_img": mask, "noise_model": noise_model, "whitening": whitening}
    model = BetaSeriesModel(method="lss", **params).fit(img, events, confounds=confounds)
    ours, variances = model.betas_.values, model.variances_.values
    for i in range(len(events)):
        lss, name = lss_transformer(events, i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            glm = FirstLevelModel(**params).fit(img, lss, confounds=confounds)
        maps = glm.contrast_maps(name)
        np.testing.assert_allclose(ours[i], maps["effect_size"].values, rtol=1e-6, atol=1e-9)
        if whitening == "binned":  # exact whitening's contrasts calibrate the variance; ours is the GLS one
            np.testing.assert_allclose(variances[i], maps["effect_variance"].values, rtol=1e-6, atol=1e-12)


def test_betas_values_compute_with_one_blas_thread_per_task(beta_runs, monkeypatch):
    """``betas_.values`` through dask's default thread pool: every solve task runs with one BLAS thread."""
    import dask
    from threadpoolctl import threadpool_info

    import daskglm.betas.graph as betas_graph

    seen = []
    solve = betas_graph.trial_betas_block

    def recording(*args):
        seen.append(max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"))
        return solve(*args)

    monkeypatch.setattr(betas_graph, "trial_betas_block", recording)
    model = BetaSeriesModel(t_r=T_R, mask_img=beta_runs["mask"], chunks={"voxel": 200})
    model.fit(beta_runs["imgs"][0], beta_runs["events"][0])
    with dask.config.set(scheduler="threads", num_workers=2):
        betas = model.betas_.values
    assert betas.shape[0] == len(beta_runs["events"][0])
    assert len(seen) > 1 and set(seen) == {1}


@pytest.mark.parametrize("method", ["lsa", "lss"])
def test_ar1_betas_with_ill_conditioned_confounds_equal_nilearn(method):
    """Motion-like confounds on very different scales: the AR(1) bins' Gram is ill-conditioned (cond > 1e8)."""
    img, events, mask = make_run(5, n_trials=8)
    walk = np.cumsum(np.random.default_rng(5).normal(size=(img.shape[-1], 3)), axis=0)
    confounds = pd.DataFrame({"rot": walk[:, 0] * 1e-4, "trans": walk[:, 1], "csf": walk[:, 2] * 1e3,
                              "rot_power2": (walk[:, 0] * 1e-4) ** 2})
    model = BetaSeriesModel(method=method, t_r=T_R, mask_img=mask, noise_model="ar1")
    ours = model.fit(img, events, confounds=confounds).betas_.values
    ref = nilearn_beta_series([img], [events], mask, method, confounds=[confounds], t_r=T_R, noise_model="ar1")
    assert agreement(ours, ref)[0] >= 0.999
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7 * np.abs(ref).max())
