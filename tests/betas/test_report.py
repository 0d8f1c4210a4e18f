"""BetaSeriesModel.generate_report: designs, beta maps and trials of a fitted or reopened beta series."""

from __future__ import annotations

from daskglm import BetaSeriesModel, open_model
from tests.betas.conftest import T_R


def test_report_shows_each_runs_design_the_first_trials_maps_and_every_trial(beta_runs, tmp_path):
    model = BetaSeriesModel(t_r=T_R, mask_img=beta_runs["mask"]).fit(beta_runs["imgs"], beta_runs["events"])
    model.to_zarr(tmp_path / "betas.zarr")
    for fitted in (model, open_model(tmp_path / "betas.zarr")):
        text = fitted.generate_report(maps_per_trial_type=1).get_standalone()
        assert text.count('alt="run ') == len(beta_runs["imgs"])  # one LSA design per run
        assert text.count('alt="trial ') == fitted.trials_["trial_type"].nunique()
        assert text.count("<tr>") == len(fitted.trials_) + len(fitted.get_params())  # trials and parameters
        # an image parameter is shown by its kind (a reopened model's mask is in its store, not a parameter)
        assert ("&lt;Nifti1Image&gt;" in text) is (fitted is model)
    path = model.generate_report(maps_per_trial_type=0).save_as_html(tmp_path / "report.html")
    assert path.endswith("report.html")
