"""``daskglm betas``: a beta-series store and NiBetaSeries-named NIfTI outputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from daskglm import BetaSeriesModel, open_model
from daskglm.cli import main
from daskglm.cli.betas import betaseries_prefix
from tests.betas.conftest import T_R, make_run


def test_betaseries_prefix_keeps_bids_entities():
    assert betaseries_prefix("/d/sub-01_ses-2_task-faces_run-3_space-MNI_desc-preproc_bold.nii.gz") == \
        "sub-01_ses-2_task-faces_run-3"
    assert betaseries_prefix("data/myrun.nii") == "myrun"


def test_betas_command_writes_store_nifti_and_trials(tmp_path, capsys):
    img, events, mask = make_run(21, n_trials=6, dtype=np.float32)
    run = tmp_path / "sub-01_task-faces_run-1_bold.nii.gz"
    nib.save(img, run)
    nib.save(mask, tmp_path / "mask.nii.gz")
    events.to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    store, out = tmp_path / "betas.zarr", tmp_path / "nifti"
    code = main(["betas", str(run), "--events", str(tmp_path / "events.tsv"), "--t-r", str(T_R),
                 "--mask", str(tmp_path / "mask.nii.gz"), "-o", str(store), "--nifti-out", str(out),
                 "--scheduler", "synchronous", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    expected = BetaSeriesModel(t_r=T_R, mask_img=mask).fit(img, events).beta_maps()
    for trial_type, image in expected.items():
        written = nib.load(out / f"sub-01_task-faces_run-1_desc-{trial_type}_betaseries.nii.gz")
        np.testing.assert_allclose(written.get_fdata(), image.get_fdata(), rtol=1e-5, atol=1e-6)
    trials = pd.read_csv(out / "sub-01_task-faces_run-1_desc-trials_events.tsv", sep="\t")
    assert list(trials["trial_type"]) == list(events["trial_type"])
    assert isinstance(open_model(store), BetaSeriesModel)
    # an existing store is kept unless --overwrite
    code = main(["betas", str(run), "--events", str(tmp_path / "events.tsv"), "--t-r", str(T_R),
                 "-o", str(store)])
    assert code == 2 and "overwrite" in capsys.readouterr().err


def test_betas_command_names_a_missing_file(tmp_path, capsys):
    code = main(["betas", str(tmp_path / "none.nii.gz"), "--events", str(tmp_path / "e.tsv"), "--t-r", "2",
                 "-o", str(tmp_path / "b.zarr")])
    assert code != 0 and "does not exist" in capsys.readouterr().err


def test_bids_beta_series_writes_each_subjects_store_and_maps_equal_to_nilearns_recipe(tmp_path, capsys):
    import warnings

    from daskglm import first_level_from_bids
    from daskglm.data.bids import make_bids_dataset
    from tests.betas._recipes import agreement, nilearn_beta_series

    ds = make_bids_dataset(tmp_path / "ds", n_subjects=2, n_sessions=0, n_runs=2, shape=(8, 9, 7), n_scans=40,
                           seed=4)
    store, maps = tmp_path / "betas", tmp_path / "derivatives"
    code = main(["bids", str(ds["root"]), "-o", str(store), "--task", ds["task"], "--beta-series", "lsa",
                 "--confounds-strategy", "motion", "--bids-out", str(maps), "--scheduler", "synchronous",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    model = open_model(store / "sub-01_betaseries.zarr")
    assert isinstance(model, BetaSeriesModel) and (store / "sub-02_betaseries.zarr").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glms, imgs, events, confounds = first_level_from_bids(
            str(ds["root"]), ds["task"], sub_labels=["01"], confounds_strategy=("motion",))
    glm = glms[0]
    # the runs, events, confounds and load_confounds' sample masks the command fits; nilearn's models on them
    sample_masks = [table.attrs.get("sample_mask") for table in confounds[0]]
    assert all(mask is not None for mask in sample_masks)  # non-steady-state scans: censoring is exercised
    ref = nilearn_beta_series(imgs[0], events[0], model.mask_img_, "lsa", confounds=confounds[0],
                              sample_masks=sample_masks, t_r=glm.t_r, slice_time_ref=glm.slice_time_ref)
    ours = model.betas_.values  # float32 runs: nilearn computes in float32, we in float64
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert agreement(ours, ref)[0] > 0.99  # the rest: betas ~0 against float32 rounding
    func = maps / "sub-01" / "func"
    written = nib.load(func / "sub-01_task-faces_run-2_desc-face_betaseries.nii.gz")
    faces = model.beta_maps("face")
    n_run1_faces = int(((model.trials_["run"] == 0) & (model.trials_["trial_type"] == "face")).sum())
    np.testing.assert_allclose(written.get_fdata(), faces.get_fdata()[..., n_run1_faces:], rtol=1e-6)
    assert (func / "sub-01_task-faces_run-1_desc-trials_events.tsv").exists()
    code = main(["bids", str(ds["root"]), "-o", str(store), "--task", ds["task"], "--beta-series", "lss",
                 "--contrast", "face-house"])
    assert code != 0 and "--contrast" in capsys.readouterr().err
