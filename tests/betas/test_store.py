"""A beta series written to Zarr reopens (no refit) with the same beta maps."""

from __future__ import annotations

import numpy as np
import pytest

import daskglm
from daskglm import BetaSeriesModel, FirstLevelModel
from tests.betas.conftest import T_R


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
