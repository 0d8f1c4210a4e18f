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


def test_betas_command_writes_cifti_beta_series_as_dscalar_equal_to_nilearns_lss(tmp_path, capsys):
    """A CIFTI run with --nifti-out: .dscalar.nii beta series (one map per trial), each trial's map
    equal to nilearn's run_glm + compute_contrast on its LSS design."""
    from nibabel import cifti2
    from nilearn.glm import compute_contrast
    from nilearn.glm.first_level import make_first_level_design_matrix, mean_scaling, run_glm

    from daskglm.io.cifti import write_cifti_run
    from tests.betas._recipes import lss_transformer

    n_scans = 60
    surface = np.ones(200, bool)
    surface[:20] = False
    volume = np.zeros((4, 4, 4), bool)
    volume[1:3, 1:3, 1:4] = True
    bm = (cifti2.BrainModelAxis.from_mask(surface, name="CortexLeft")
          + cifti2.BrainModelAxis.from_mask(volume, name="ThalamusLeft", affine=np.diag([2.0, 2.0, 2.0, 1.0])))
    rng = np.random.default_rng(9)
    Y = 100 + rng.standard_normal((n_scans, len(bm)))
    run = write_cifti_run(tmp_path / "sub-01_task-x_space-fsLR_bold.dtseries.nii", bm, n_scans, T_R,
                          lambda a, b: Y[:, a:b], dtype=np.float64)
    events = pd.DataFrame({"onset": [6.0, 20.0, 36.0, 50.0, 66.0, 80.0], "duration": 1.0,
                           "trial_type": ["a", "b", "a", "b", "a", "b"]})
    events.to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    out = tmp_path / "maps"
    code = main(["betas", str(run), "--events", str(tmp_path / "events.tsv"), "--t-r", str(T_R),
                 "--noise-model", "ols", "-o", str(tmp_path / "betas.zarr"), "--nifti-out", str(out),
                 "--scheduler", "synchronous", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    scaled = mean_scaling(Y)[0]
    for trial_type in ("a", "b"):
        written = nib.load(out / f"sub-01_task-x_desc-{trial_type}_betaseries.dscalar.nii")
        assert written.header.get_axis(1) == bm
        rows = np.flatnonzero(events["trial_type"].to_numpy() == trial_type)
        assert written.shape == (len(rows), len(bm))
        for sample, i in enumerate(rows):
            lss, name = lss_transformer(events, i)
            X = make_first_level_design_matrix(np.arange(n_scans) * T_R, lss, hrf_model="glover")
            labels, results = run_glm(scaled, X.to_numpy(), noise_model="ols")
            con = (X.columns == name).astype(float)
            ref = compute_contrast(labels, results, con).effect_size()
            np.testing.assert_allclose(written.get_fdata()[sample], ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_betas_command_refuses_trial_types_sharing_a_file_label_before_computing(tmp_path, capsys):
    img, events, mask = make_run(22, n_trials=6)
    events["trial_type"] = ["face-up", "face_up", "house"] * 2
    run = tmp_path / "run.nii.gz"
    nib.save(img, run)
    events.to_csv(tmp_path / "events.tsv", sep="\t", index=False)
    store = tmp_path / "betas.zarr"
    code = main(["betas", str(run), "--events", str(tmp_path / "events.tsv"), "--t-r", str(T_R),
                 "-o", str(store), "--nifti-out", str(tmp_path / "nifti"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "'face-up' and 'face_up' of run 0 both give the file label desc-faceup" in err
    assert not store.exists() and not (tmp_path / "nifti").exists()


def test_surface_beta_series_are_written_one_gifti_per_hemisphere_holding_the_beta_maps(tmp_path):
    """``--nifti-out`` on surface runs: ``_hemi-L/R_desc-<type>_betaseries.func.gii``, one column per trial."""
    import nibabel as nib
    import pandas as pd
    from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage

    from daskglm import BetaSeriesModel
    from daskglm.cli.betas import _write_nifti

    rng = np.random.default_rng(2)
    n_scans, parts = 40, {"left": 30, "right": 24}
    mesh = PolyMesh(**{part: InMemoryMesh(rng.standard_normal((k, 3)),
                                          np.array([[i, i + 1, i + 2] for i in range(k - 2)]))
                       for part, k in parts.items()})
    data = {part: 100 + rng.standard_normal((k, n_scans)) for part, k in parts.items()}
    events = pd.DataFrame({"onset": [4.0, 18.0, 30.0, 44.0, 58.0], "duration": 1.0,
                           "trial_type": ["a", "b", "a", "b", "a"]})
    model = BetaSeriesModel(t_r=2.0, noise_model="ols").fit(SurfaceImage(mesh=mesh, data=data), events)
    _write_nifti(model, ["sub-01_task-x_run-1_bold.func.gii"], tmp_path)
    maps = model.beta_maps()
    for trial_type, n_trials in (("a", 3), ("b", 2)):
        for part, hemi in (("left", "L"), ("right", "R")):
            path = tmp_path / f"sub-01_task-x_run-1_hemi-{hemi}_desc-{trial_type}_betaseries.func.gii"
            written = np.column_stack([d.data for d in nib.load(path).darrays])
            assert written.shape == (parts[part], n_trials)
            np.testing.assert_allclose(written, np.asarray(maps[trial_type].data.parts[part]), rtol=1e-6)
    assert (tmp_path / "sub-01_task-x_run-1_desc-trials_events.tsv").exists()


def test_betas_command_takes_fmriprep_confounds_strategies_as_fit_does(tmp_path, capsys):
    """``--confounds-strategy`` (tables found next to the runs) and its scrubbing: nilearn's LSS on load_confounds."""
    from nilearn.interfaces.fmriprep import load_confounds

    from daskglm.data.bids import make_bids_dataset
    from tests.betas._recipes import agreement, nilearn_beta_series

    ds = make_bids_dataset(tmp_path / "ds", n_subjects=1, n_sessions=0, n_runs=2, shape=(8, 9, 7), n_scans=40,
                           seed=6)
    runs = ds["runs"]["01"]
    events = [r.replace("/derivatives/", "/").replace("_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
                                                      "_events.tsv") for r in runs]
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(nib.load(runs[0]).shape[:3], np.uint8), nib.load(runs[0]).affine), mask)
    store = tmp_path / "betas.zarr"
    code = main(["betas", *runs, "--events", *events, "--t-r", "2", "--mask", str(mask), "--noise-model", "ols",
                 "--confounds-strategy", "motion", "scrub", "--confounds-option", "scrub=0",
                 "--confounds-option", "fd_threshold=0.3", "-o", str(store), "--scheduler", "synchronous",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    confounds, masks = load_confounds(runs, strategy=("motion", "scrub"), scrub=0, fd_threshold=0.3)
    assert sum(len(m) for m in masks) < 80  # scans are scrubbed
    model = open_model(store)
    assert [len(d) for d in model.design_matrices_] == [len(m) for m in masks]
    ref = nilearn_beta_series(runs, [pd.read_csv(e, sep="\t") for e in events], nib.load(mask), "lss",
                              confounds=list(confounds), sample_masks=list(masks), t_r=2.0, noise_model="ols")
    ours = model.betas_.values
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert agreement(ours, ref)[0] > 0.99
    # columns picked by name from the raw tables, as daskglm fit
    tables = [r.split("_space-")[0] + "_desc-confounds_timeseries.tsv" for r in runs]
    code = main(["betas", *runs, "--events", *events, "--t-r", "2", "--mask", str(mask), "--noise-model", "ols",
                 "--confounds", *tables, "--confounds-columns", "trans_?", "rot_?", "-o", str(tmp_path / "c.zarr"),
                 "--scheduler", "synchronous", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    columns = set(open_model(tmp_path / "c.zarr").design_matrices_[0].columns)
    assert {"trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"} <= columns
    assert "framewise_displacement" not in columns and "csf" not in columns
