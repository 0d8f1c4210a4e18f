"""A beta series written to Zarr reopens (no refit) with the same beta maps."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import zarr
from nilearn.maskers import NiftiMasker

import daskglm
from daskglm import BetaSeriesModel, FirstLevelModel
from daskglm.errors import StoreError
from tests.betas.conftest import T_R, make_run


def test_round_trip_gives_the_same_beta_maps(beta_runs, tmp_path):
    imgs, events, mask = beta_runs["imgs"], beta_runs["events"], beta_runs["mask"]
    model = BetaSeriesModel(method="lss", t_r=T_R, mask_img=mask, noise_model="ar1").fit(imgs, events)
    store = tmp_path / "betas.zarr"
    model.to_zarr(store)
    reopened = daskglm.open_model(store)
    assert isinstance(reopened, BetaSeriesModel)
    assert repr(reopened) == "BetaSeriesModel(t_r=2.0)"  # the mask image is kept as the space
    for output_type in ("effect_size", "z_score"):
        before, after = model.beta_maps(output_type=output_type), reopened.beta_maps(output_type=output_type)
        assert list(before) == list(after)
        for name in before:
            np.testing.assert_array_equal(before[name].get_fdata(), after[name].get_fdata())
            np.testing.assert_array_equal(before[name].affine, after[name].affine)
    assert reopened.trials_.equals(model.trials_)
    assert [d.shape for d in reopened.design_matrices_] == [d.shape for d in model.design_matrices_]
    with pytest.raises(FileExistsError):
        model.to_zarr(store)
    model.to_zarr(store, overwrite=True)


def test_open_model_still_opens_first_level_fits(beta_runs, tmp_path):
    imgs, events, mask = beta_runs["imgs"], beta_runs["events"], beta_runs["mask"]
    glm = FirstLevelModel(t_r=T_R, mask_img=mask).fit(imgs[0], events[0])
    glm.to_zarr(tmp_path / "fit.zarr")
    assert isinstance(daskglm.open_model(tmp_path / "fit.zarr"), FirstLevelModel)


@pytest.fixture(scope="module")
def small_model():
    img, events, mask = make_run(11, n_trials=5)
    return BetaSeriesModel(t_r=T_R, mask_img=mask, noise_model="ols").fit(img, events).persist()


def test_a_later_run_with_more_trials_writes_and_reopens(tmp_path):
    """Runs of 6, 9 and 7 trials: the trial axis is chunked (6, 9, 7), which Zarr refuses unless rechunked."""
    runs = [make_run(seed, n_trials=n) for seed, n in ((31, 6), (32, 9), (33, 7))]
    model = BetaSeriesModel(t_r=T_R, mask_img=runs[0][2], noise_model="ols")
    model.fit([r[0] for r in runs], [r[1] for r in runs])
    assert model.betas_.data.chunks[0] == (6, 9, 7)
    model.to_zarr(tmp_path / "betas.zarr")  # lazy: computed while written
    reopened = daskglm.open_model(tmp_path / "betas.zarr")
    np.testing.assert_array_equal(reopened.betas_.values, model.betas_.values)
    np.testing.assert_array_equal(reopened.variances_.values, model.variances_.values)
    before, after = model.beta_maps(), reopened.beta_maps()
    for name in before:
        np.testing.assert_array_equal(after[name].get_fdata(), before[name].get_fdata())
    assert reopened.trials_.equals(model.trials_)


def test_the_smoothing_of_a_given_masker_is_stored(tmp_path):
    img, events, mask = make_run(12, n_trials=4)
    masker = NiftiMasker(mask, smoothing_fwhm=6.0).fit()
    model = BetaSeriesModel(t_r=T_R, mask_img=masker, noise_model="ols").fit(img, events)
    assert model.space_.smoothing_fwhm == 6.0
    model.to_zarr(tmp_path / "betas.zarr")
    reopened = daskglm.open_model(tmp_path / "betas.zarr")
    assert reopened.smoothing_fwhm == 6.0
    assert reopened.space_.smoothing_fwhm == 6.0
    assert reopened.masker_.smoothing_fwhm == 6.0
    np.testing.assert_array_equal(reopened.betas_.values, model.betas_.values)


def test_a_leftover_of_an_interrupted_replacement_does_not_block_overwrites(small_model, tmp_path):
    store = tmp_path / "betas.zarr"
    small_model.to_zarr(store)
    leftover = tmp_path / ".betas.zarr.old"  # what an interrupted replacement used to leave behind
    (leftover / "beta").mkdir(parents=True)
    small_model.to_zarr(store, overwrite=True)
    small_model.to_zarr(store, overwrite=True)
    np.testing.assert_array_equal(daskglm.open_model(store).betas_.values, small_model.betas_.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".betas.zarr.old", "betas.zarr"]


def test_a_store_created_while_the_series_is_computed_is_not_replaced(tmp_path):
    img, events, mask = make_run(13, n_trials=4)
    model = BetaSeriesModel(t_r=T_R, mask_img=mask, noise_model="ols").fit(img, events)
    store = tmp_path / "betas.zarr"

    def someone_else_writes(block):
        store.mkdir(exist_ok=True)
        (store / "theirs.txt").write_text("not ours")
        return block

    result = model._result  # meta given: dask must not call the function before the compute
    late = result.betas.map_blocks(someone_else_writes, meta=np.empty((0, 0)))
    model._result = dataclasses.replace(result, betas=late)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.to_zarr(store)
    assert (store / "theirs.txt").read_text() == "not ours"
    assert [p.name for p in tmp_path.iterdir()] == ["betas.zarr"]  # no temporary directory left


@pytest.mark.parametrize("damage, message", [
    ("no_params", "'model_params' is missing"),
    ("bad_trial_types", "'trial_types' is not valid JSON"),
    ("no_beta", r"lacks the array\(s\) \['beta'\]"),
    ("more_trial_types", "array 'beta' has shape \\(5, \\d+\\), expected \\(7, "),
])
def test_a_damaged_store_is_a_store_error_naming_what_is_wrong(small_model, tmp_path, damage, message):
    store = tmp_path / "betas.zarr"
    small_model.to_zarr(store)
    group = zarr.open_group(str(store), mode="r+")
    if damage == "no_params":
        del group.attrs["model_params"]
    elif damage == "bad_trial_types":
        group.attrs["trial_types"] = '["face", '
    elif damage == "no_beta":
        shutil.rmtree(store / "beta")
    else:
        group.attrs["trial_types"] = json.dumps(["face"] * 7)
    with pytest.raises(StoreError, match=message) as info:
        daskglm.open_model(store)
    assert str(store) in str(info.value)
    with pytest.raises(FileNotFoundError, match="No beta-series store"):
        BetaSeriesModel.from_store(tmp_path / "none.zarr")
