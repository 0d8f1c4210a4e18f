"""Bad input to BetaSeriesModel gets a clear error; building the beta series computes nothing."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from daskglm import BetaSeriesModel
from tests.betas.conftest import T_R, make_run


class ComputeForbidden(RuntimeError):
    pass


def _raising_scheduler(dsk, keys, **kwargs):
    raise ComputeForbidden(f"dask computed {len(keys)} key(s) while a lazy result was expected")


@pytest.fixture(scope="module")
def run():
    return make_run(11, n_trials=6)


def test_events_without_trial_type(run):
    img, events, mask = run
    with pytest.raises(ValueError, match="no trial_type column"):
        BetaSeriesModel(t_r=T_R, mask_img=mask).fit(img, events.drop(columns="trial_type"))


def test_trial_outside_the_run(run):
    img, events, mask = run
    events = events.copy()
    events.loc[3, "onset"] = T_R * img.shape[-1] + 50.0
    with pytest.raises(ValueError, match=r"Trial 3 of run 0 .* outside the run"):
        BetaSeriesModel(t_r=T_R, mask_img=mask).fit(img, events)


def test_lss1_needs_other_trials(run):
    img, events, mask = run
    with pytest.raises(ValueError, match="single trial"):
        BetaSeriesModel(method="lss1", t_r=T_R, mask_img=mask).fit(img, events.iloc[:1])


def test_lsa_with_more_columns_than_scans_names_lss():
    img, events, mask = make_run(12, n_trials=48, n_scans=50)
    with pytest.raises(ValueError, match="method='lss'"):
        BetaSeriesModel(method="lsa", t_r=T_R, mask_img=mask).fit(img, events)
    betas = BetaSeriesModel(method="lss", t_r=T_R, mask_img=mask, noise_model="ols").fit(img, events).betas_
    assert betas.shape[0] == 48 and np.isfinite(betas.values).all()


def test_unknown_method_and_parameter(run):
    img, events, mask = run
    with pytest.raises(ValueError, match="Unknown method"):
        BetaSeriesModel(method="lsx", t_r=T_R).fit(img, events)
    with pytest.raises(TypeError, match="unexpected parameter"):
        BetaSeriesModel(tr=2.0)


def test_unknown_trial_type_and_output_type(run):
    img, events, mask = run
    model = BetaSeriesModel(t_r=T_R, mask_img=mask).fit(img, events)
    with pytest.raises(ValueError, match="No trial of trial_type"):
        model.beta_maps("car")
    with pytest.raises(ValueError, match="output_type"):
        model.beta_maps(output_type="beta")


def test_repr_and_params():
    model = BetaSeriesModel(method="lsa", t_r=2.0, noise_model="ols")
    assert repr(model) == "BetaSeriesModel(method='lsa', noise_model='ols', t_r=2.0)"
    assert model.get_params()["hrf_model"] == "glover"


def test_building_the_beta_series_computes_nothing(run):
    img, events, mask = run
    with dask.config.set(scheduler=_raising_scheduler):
        model = BetaSeriesModel(t_r=T_R, mask_img=mask, noise_model="ar1").fit([img, img], [events, events])
        betas = model.betas_
        assert betas.shape == (12, int(mask.get_fdata().sum()))
        with pytest.raises(ComputeForbidden):
            model.beta_maps()


def test_a_zero_regressor_of_a_trial_inside_the_run_names_its_cause(run):
    """Only an onset outside the run is reported as outside it; a zero modulation, an event between two scans
    with hrf_model=None or censored scans are named instead."""
    img, events, mask = run
    inside = r"Trial 2 of run 0 .* its onset is in the run \(0 \.\. 220 s\), but "
    zero = events.assign(modulation=1.0)
    zero.loc[2, "modulation"] = 0.0
    with pytest.raises(ValueError, match=r"Trial 2 of run 0 .* its modulation is 0\.$"):
        BetaSeriesModel(t_r=T_R, mask_img=mask).fit(img, zero)
    on_scans = events.assign(onset=np.round(events["onset"] / T_R) * T_R)  # hrf_model=None: boxcars at scans
    between = on_scans.copy()
    between.loc[2, ["onset", "duration"]] = [41.0, 0.5]  # scans at 40 and 42 s
    with pytest.raises(ValueError, match=inside + "with hrf_model=None it covers no scan time"):
        BetaSeriesModel(t_r=T_R, mask_img=mask, hrf_model=None).fit(img, between)
    censored = on_scans.copy()
    censored.loc[2, ["onset", "duration"]] = [40.0, 1.0]
    kept = np.setdiff1d(np.arange(img.shape[-1]), [20])
    with pytest.raises(ValueError, match=inside + ".*the scans its response covers may all be removed by the "
                                         "sample mask"):
        BetaSeriesModel(t_r=T_R, mask_img=mask, hrf_model=None).fit(img, censored, sample_masks=kept)
    before = on_scans.copy()
    before.loc[2, ["onset", "duration"]] = [-10.0, 1.0]
    with pytest.raises(ValueError, match=r"Trial 2 of run 0 .* its onset lies outside the run \(0 \.\. 220 s\)"):
        BetaSeriesModel(t_r=T_R, mask_img=mask, hrf_model=None).fit(img, before)
