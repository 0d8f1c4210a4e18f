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
