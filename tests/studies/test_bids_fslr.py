"""The study path for fsLR CIFTI-2 runs: ``first_level_from_bids`` / ``fit_bids`` / ``daskglm bids --space fsLR``.

The dataset is :func:`daskglm.data.bids.make_bids_dataset` with
``space="fsLR"``: fMRIPrep-named ``..._space-fsLR_den-91k_bold.dtseries.nii``
runs on a reduced grayordinate set (two partial cortical surfaces and two
subcortical volume parts), their ``.json`` sidecars and fMRIPrep-like
confounds with framewise-displacement spikes.  The reference is nilearn
0.14.1's ``run_glm`` + ``compute_contrast`` on the runs' matrices loaded with
nibabel, with designs made by nilearn's ``make_first_level_design_matrix``
from ``load_confounds``' confounds, rows and scans kept by its sample masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm import compute_contrast, expression_to_contrast_vector
from nilearn.glm.first_level import make_first_level_design_matrix, mean_scaling, run_glm
from nilearn.interfaces.fmriprep import load_confounds

import daskglm
from daskglm.cli import main
from daskglm.data.bids import make_bids_dataset
from daskglm.glm.sample_masks import sample_masks_from_confounds
from tests.conftest import quiet

SPACE = "fsLR"
CONTRAST = "face - house"
SCRUB = {"strategy": ("motion", "wm_csf", "scrub"), "motion": "basic", "scrub": 0, "fd_threshold": 0.5}
QUERY = {f"confounds_{k}": v for k, v in SCRUB.items()}
FIT_BIDS = {"confounds_strategy": SCRUB["strategy"],
            "confounds_kwargs": {k: v for k, v in SCRUB.items() if k != "strategy"}}



pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> dict:
    return make_bids_dataset(tmp_path_factory.mktemp("fslr") / "ds", n_subjects=2, n_sessions=0, n_runs=2,
                             space=SPACE, n_scans=60, n_vertices=300, seed=7)


def _reference(runs: list[str], events: list[pd.DataFrame], confounds: list | None, masks: list | None,
               noise_model: str, t_r: float = 2.0, slice_time_ref: float = 0.5) -> dict:
    """nilearn's run_glm + compute_contrast on the CIFTI matrices (fixed effects over runs, as nilearn)."""
    total = None
    for i, (run, ev) in enumerate(zip(runs, events)):
        img = nib.load(run)
        Y = np.asarray(img.get_fdata(), dtype=np.float64)
        frame_times = t_r * (slice_time_ref + np.arange(Y.shape[0]))
        conf = None if confounds is None else confounds[i]
        X = make_first_level_design_matrix(
            frame_times, ev, hrf_model="glover", drift_model="cosine", high_pass=0.01,
            add_regs=None if conf is None else conf.to_numpy(),
            add_reg_names=None if conf is None else list(conf.columns))
        con = expression_to_contrast_vector(CONTRAST, list(X.columns))
        if masks is not None and masks[i] is not None:
            Y, X = Y[masks[i]], X.iloc[masks[i]]
        Y = mean_scaling(Y)[0]
        labels, results = run_glm(Y, X.to_numpy(), noise_model=noise_model)
        c = compute_contrast(labels, results, con, stat_type="t")
        total = c if total is None else total + c
    total = total * (1.0 / len(runs))
    return {"z_score": total.z_score(), "effect_size": np.ravel(total.effect_size())}


def _values(img) -> np.ndarray:
    assert isinstance(img, nib.Cifti2Image)
    return np.asarray(img.dataobj, dtype=np.float64)[0]


def _agreement(ours: np.ndarray, ref: np.ndarray, tol: float = 1e-3) -> float:
    return float(((np.abs(ours - ref) < tol) | (np.isnan(ours) & np.isnan(ref))).mean())


def test_one_test_says_which_space_labels_are_cifti():
    """The simulator writes CIFTI runs for the labels the query looks for them under: one function says which."""
    import daskglm.data.bids
    import daskglm.studies.bids.query
    from daskglm.io.cifti import is_cifti_space

    assert daskglm.data.bids.is_cifti_space is daskglm.studies.bids.query.is_cifti_space is is_cifti_space
    assert is_cifti_space(SPACE) and is_cifti_space("fsLR32k")
    assert not any(is_cifti_space(label) for label in (None, "", "fsaverage5", "MNI152NLin2009cAsym", "T1w", 1))


def test_generated_runs_are_fmriprep_named_reduced_cifti(ds):
    run = Path(ds["runs"]["01"][0])
    assert run.name == "sub-01_task-faces_run-1_space-fsLR_den-91k_bold.dtseries.nii"
    img = nib.load(run)
    bm = img.header.get_axis(1)
    assert bm == ds["brain_models"] and img.shape == (60, len(bm)) < (60, 91282)
    assert {"CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_THALAMUS_LEFT"} <= set(bm.name)
    assert img.header.get_axis(0).step == ds["t_r"]
    sidecar = json.loads(run.with_name(run.name.replace(".dtseries.nii", ".json")).read_text())
    assert sidecar["RepetitionTime"] == 2.0 and "Reduced" in sidecar and sidecar["surface"] == "fsLR"
    assert not list(run.parent.glob("*mask*"))  # no brain mask: the brain models are the mask


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_models_with_scrubbing_equal_run_glm(ds, noise_model):
    models, imgs, events, confounds = quiet(daskglm.first_level_from_bids, ds["root"], "faces", space_label=SPACE,
                                             noise_model=noise_model, **QUERY)
    assert [m.subject_label for m in models] == ds["subjects"]
    for model, runs, run_events, run_confounds in zip(models, imgs, events, confounds):
        assert runs == ds["runs"][model.subject_label]
        assert model.t_r == 2.0 and model.slice_time_ref == 0.5 and model.mask_img is None
        frames, masks = zip(*(load_confounds(r, **SCRUB) for r in runs))  # one run at a time
        for got, frame in zip(run_confounds, frames):
            pd.testing.assert_frame_equal(got, frame)
        carried = sample_masks_from_confounds(run_confounds)  # the confounds' attrs["sample_mask"]
        for got, kept, run in zip(carried, masks, runs):  # non-steady state + FD spikes
            np.testing.assert_array_equal(got, kept)
            assert len(kept) == ds["n_scans"] - 2 - len(ds["spikes"][run])
        model.fit(runs, run_events, run_confounds)
        ours = quiet(model.compute_contrast, CONTRAST, output_type="all")
        ref = _reference(runs, run_events, list(frames), list(masks), noise_model)
        z = _values(ours["z_score"])
        assert np.abs(ref["z_score"]).max() > 5  # the generated activations are found
        assert _agreement(z, ref["z_score"]) >= 0.999
        assert _agreement(_values(ours["effect_size"]), ref["effect_size"]) >= 0.999
        # the face area responds more to faces, the house area to houses
        assert np.median(z[ds["areas"]["face_area"]]) > 3 > -3 > np.median(z[ds["areas"]["house_area"]])
        if noise_model == "ols":  # the sample masks matter: without them, another fit
            unmasked = _reference(runs, run_events, list(frames), None, noise_model)
            assert _agreement(z, unmasked["z_score"]) < 0.5


def test_models_without_confounds_equal_run_glm(ds):
    models, imgs, events, confounds = quiet(daskglm.first_level_from_bids, ds["root"], "faces", space_label=SPACE,
                                             sub_labels=["02"], noise_model="ar1", confounds_strategy=None)
    assert confounds == [None] and sample_masks_from_confounds(confounds[0]) is None
    z = _values(quiet(models[0].fit(imgs[0], events[0]).compute_contrast, CONTRAST))
    assert _agreement(z, _reference(imgs[0], events[0], None, None, "ar1")["z_score"]) >= 0.999


def test_img_filters_and_missing_runs(ds):
    _, imgs, _, _ = quiet(daskglm.first_level_from_bids, ds["root"], "faces", space_label=SPACE,
                           img_filters=[("run", "2"), ("den", "91k")], confounds_strategy=None)
    assert [[Path(p).name.split("_")[2] for p in runs] for runs in imgs] == [["run-2"], ["run-2"]]
    with pytest.raises(ValueError, match="No BOLD files found"):
        quiet(daskglm.first_level_from_bids, ds["root"], "faces", space_label=SPACE, img_filters=[("run", "9")])


@pytest.fixture(scope="module")
def study(ds, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fslr_study")
    result = quiet(daskglm.fit_bids, ds["root"], out / "study.zarr", "faces", contrasts={"fh": CONTRAST},
                    space_label=SPACE, progress=False, bids_out=out / "derivatives", **FIT_BIDS)
    result.raise_for_errors()
    return {"result": result, "out": out}


def test_fit_bids_store_equals_run_glm(ds, study):
    status = study["result"].status
    for sid in ds["subjects"]:
        runs = ds["runs"][sid]
        assert status[sid]["voxels"] == len(ds["brain_models"])
        assert status[sid]["scans_kept"] == sum(ds["n_scans"] - 2 - len(ds["spikes"][r]) for r in runs)
        model = daskglm.open_subject(study["out"] / "study.zarr", sid)
        z = _values(quiet(model.compute_contrast, CONTRAST))
        frames, masks = zip(*(load_confounds(r, **SCRUB) for r in runs))
        events = [pd.read_csv(Path(ds["root"]) / f"sub-{sid}" / "func" / f"sub-{sid}_task-faces_run-{i}_events.tsv",
                              sep="\t") for i in (1, 2)]
        assert _agreement(z, _reference(runs, events, list(frames), list(masks), "ar1")["z_score"]) >= 0.999
    root = json.loads((study["out"] / "study.zarr" / "zarr.json").read_text())["attributes"]["bids"]
    assert root["space"] == SPACE and root["runs"]["01"] == ds["runs"]["01"]


def test_bids_out_dscalars_have_the_inputs_brain_models(ds, study):
    folder = study["out"] / "derivatives" / "sub-01"
    stem = "sub-01_task-faces_space-fsLR_den-91k"
    model = daskglm.open_subject(study["out"] / "study.zarr", "01")
    expected = quiet(model.compute_contrast, CONTRAST, output_type="all")
    bm = nib.load(ds["runs"]["01"][0]).header.get_axis(1)
    for output, label in (("z_score", "z"), ("stat", "t"), ("effect_size", "effect"),
                          ("effect_variance", "variance"), ("p_value", "p")):
        img = nib.load(folder / f"{stem}_contrast-fh_stat-{label}_statmap.dscalar.nii")
        assert img.header.get_axis(1) == bm
        assert img.nifti_header.get_intent()[0] == "ConnDenseScalar"
        np.testing.assert_array_equal(_values(img), _values(expected[output]))
    mask = nib.load(folder / f"{stem}_mask.dscalar.nii")
    assert mask.header.get_axis(1) == bm and _values(mask).all()
    assert (folder / "sub-01_task-faces_run-2_space-fsLR_den-91k_design.tsv").exists()


def test_cli_bids_fslr(ds, study, tmp_path, capsys):
    argv = ["bids", ds["root"], "-o", str(tmp_path / "cli.zarr"), "--task", "faces", "--space", SPACE,
            "--sub", "02", "--confounds-strategy", *SCRUB["strategy"], "--confounds-option", "motion=basic",
            "--confounds-option", "scrub=0", "--confounds-option", "fd_threshold=0.5", "--no-progress",
            "--contrast", "face-house", "--bids-out", str(tmp_path / "out")]
    assert quiet(main, argv) == 0
    assert "sub-02" in capsys.readouterr().out
    z = _values(quiet(daskglm.open_subject(tmp_path / "cli.zarr", "02").compute_contrast, CONTRAST))
    ref = _values(quiet(daskglm.open_subject(study["out"] / "study.zarr", "02").compute_contrast, CONTRAST))
    np.testing.assert_array_equal(z, ref)
    written = nib.load(tmp_path / "out" / "sub-02" /
                       "sub-02_task-faces_space-fsLR_den-91k_contrast-faceMinusHouse_stat-z_statmap.dscalar.nii")
    assert written.header.get_axis(1) == ds["brain_models"]
    np.testing.assert_allclose(_values(written), z, rtol=1e-6)


def test_fslr_queries_leave_nilearn_untouched(ds):
    """Our CIFTI query swaps nothing in nilearn: nilearn's own query, in another thread meanwhile, still
    finds no ``bold.nii*`` run for fsLR, and nilearn's module holds the same functions afterwards."""
    import threading

    from nilearn.glm.first_level import first_level as module
    from nilearn.glm.first_level import first_level_from_bids as nilearn_first_level_from_bids

    before = dict(vars(module))
    seen = {}

    def nilearn_query():
        try:
            quiet(nilearn_first_level_from_bids, ds["root"], "faces", space_label=SPACE, confounds_strategy=None)
        except ValueError as err:
            seen["nilearn"] = str(err)

    worker = threading.Thread(target=nilearn_query)
    worker.start()
    _, imgs, _, _ = quiet(daskglm.first_level_from_bids, ds["root"], "faces", space_label=SPACE,
                          confounds_strategy=None)
    worker.join()
    assert imgs == [ds["runs"][s] for s in ds["subjects"]]
    assert "No BOLD files found" in seen["nilearn"]
    assert vars(module).keys() == before.keys()
    assert all(vars(module)[name] is value for name, value in before.items())
