"""BIDS studies: first_level_from_bids (nilearn's, sample masks kept), fit_bids, the CLI, derivatives."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel as NilearnModel
from nilearn.glm.first_level import first_level_from_bids as nilearn_first_level_from_bids
from nilearn.interfaces.fmriprep import load_confounds

import daskglm
from daskglm import FirstLevelModel, first_level_from_bids, fit_bids, open_subject
from daskglm.cli import main
from daskglm.data.bids import make_bids_dataset
from daskglm.glm.sample_masks import sample_masks_from_confounds
from daskglm.studies.bids.derivatives import derivative_filenames
from daskglm.studies.subjects import read_status
from tests.conftest import quiet

SPACE = "MNI152NLin2009cAsym"
MOTION = {"confounds_strategy": ("motion", "wm_csf"), "confounds_motion": "basic"}
SCRUB = {"confounds_strategy": ("motion", "wm_csf", "scrub"), "confounds_motion": "basic",
         "confounds_scrub": 0, "confounds_fd_threshold": 0.5}
CONTRAST = "face - house"


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> dict:
    return make_bids_dataset(tmp_path_factory.mktemp("bids") / "ds", n_subjects=2, n_sessions=2,
                             n_runs=1, shape=(8, 9, 7), n_scans=50, seed=3)



def _z(model, *fit_args, **fit_kwargs) -> np.ndarray:
    if fit_args:
        model.fit(*fit_args, **fit_kwargs)
    return quiet(model.compute_contrast, CONTRAST).get_fdata()


def _close(a, b, mask) -> float:
    """Fraction of in-mask voxels within 1e-3."""
    return float((np.abs(a - b)[mask] < 1e-3).mean())


def _nilearn_with_masks(ds, imgs, events, confounds, strategy_kwargs, mask_img, t_r, slice_time_ref):
    kwargs = {k[len("confounds_"):]: v for k, v in strategy_kwargs.items()}
    _, masks = load_confounds(imgs, **kwargs)
    model = NilearnModel(t_r=t_r, slice_time_ref=slice_time_ref, mask_img=mask_img)
    return _z(model, imgs, events, confounds, sample_masks=masks), masks


@pytest.mark.parametrize("strategy", [MOTION, SCRUB], ids=["motion", "scrub"])
def test_first_level_from_bids_is_nilearns_with_sample_masks(ds, strategy):
    kwargs = dict(space_label=SPACE, mask_img="derivatives", **strategy)
    ours = quiet(first_level_from_bids, ds["root"], "faces", **kwargs)
    ref = quiet(nilearn_first_level_from_bids, ds["root"], "faces", **kwargs)
    assert [m.subject_label for m in ours[0]] == ["01", "02"]
    assert ours[1] == ref[1]  # run paths
    for a, b in zip(ours[2] + ours[3], ref[2] + ref[3]):
        for x, y in zip(a, b):
            pd.testing.assert_frame_equal(x, y)
    for model, nl_model, imgs, events, confounds in zip(ours[0], ref[0], *ours[1:]):
        assert isinstance(model, FirstLevelModel)
        assert (model.t_r, model.slice_time_ref) == (nl_model.t_r, nl_model.slice_time_ref) == (2.0, 0.5)
        expected, masks = _nilearn_with_masks(ds, imgs, events, confounds, strategy, nl_model.mask_img,
                                              nl_model.t_r, nl_model.slice_time_ref)
        carried = sample_masks_from_confounds(confounds)  # the confounds' attrs["sample_mask"]
        for kept, got in zip(masks, carried):
            np.testing.assert_array_equal(kept, got)
        n_dropped = 50 - len(carried[0])
        assert n_dropped == (2 + 2 if "scrub" in strategy["confounds_strategy"] else 2)  # non-steady (+ FD spikes)
        z = _z(model, imgs, events, confounds)  # plain fit: uses the masks the confounds carry
        inside = np.asarray(model.mask_img_.dataobj) > 0
        assert _close(z, expected, inside) >= 0.999
        # the sample masks matter: nilearn without them is a different fit
        unmasked = _z(NilearnModel(t_r=2.0, slice_time_ref=0.5, mask_img=nl_model.mask_img),
                      imgs, events, confounds)
        assert _close(z, unmasked, inside) < 0.9


def test_first_level_from_bids_without_strategy_matches_nilearn(ds):
    kwargs = dict(space_label=SPACE, mask_img="derivatives", sub_labels=["02"],
                  img_filters=[("ses", "1")], confounds_strategy=None)
    models, imgs, events, confounds = quiet(first_level_from_bids, ds["root"], "faces", **kwargs)
    ref = quiet(nilearn_first_level_from_bids, ds["root"], "faces", **kwargs)
    assert len(imgs[0]) == 1 and "ses-1" in imgs[0][0] and confounds == [None]
    assert sample_masks_from_confounds(confounds[0]) is None
    z = _z(models[0], imgs[0], events[0])
    expected = _z(ref[0][0], imgs[0], events[0])
    assert _close(z, expected, np.asarray(models[0].mask_img_.dataobj) > 0) >= 0.999


def test_first_level_from_bids_errors_are_nilearns(ds):
    with pytest.raises(ValueError, match="No BOLD files found|not found|no"):
        quiet(first_level_from_bids, ds["root"], "nosuchtask", space_label=SPACE)
    with pytest.raises(RuntimeError, match="confounds_"):
        quiet(first_level_from_bids, ds["root"], "faces", space_label=SPACE, bogus=1)


@pytest.fixture(scope="module")
def study(ds, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("study")
    store, out = root / "study.zarr", root / "derivatives_out"
    result = quiet(fit_bids, ds["root"], store, "faces", contrasts={"face-house": CONTRAST},
                    space_label=SPACE, progress=False, bids_out=out, mask_img="derivatives",
                    confounds_strategy=SCRUB["confounds_strategy"],
                    confounds_kwargs={"motion": "basic", "scrub": 0, "fd_threshold": 0.5})
    return {"store": store, "out": out, "result": result}


def test_fit_bids_store_equals_first_level_from_bids(ds, study):
    result = study["result"]
    assert result.ok and sorted(result.completed) == ["01", "02"]
    models, imgs, events, confounds = quiet(first_level_from_bids, ds["root"], "faces", space_label=SPACE,
                                             mask_img="derivatives", **SCRUB)
    for model, run_imgs, ev, conf in zip(models, imgs, events, confounds):
        reopened = open_subject(study["store"], model.subject_label)
        expected = _z(model, run_imgs, ev, conf)
        np.testing.assert_allclose(_z(reopened), expected, atol=1e-6)
    status = read_status(study["store"])
    assert status["01"]["status"] == "complete"
    assert status["01"]["runs"] == 2 and status["01"]["scans"] == 100 and status["01"]["scans_kept"] == 92
    assert status["01"]["voxels"] == int((np.asarray(models[0].mask_img.dataobj) > 0).sum())
    assert status["01"]["wall_s"] > 0
    table = result.table()
    assert table.splitlines()[0].split()[:7] == ["subject", "status", "runs", "scans", "scans_kept",
                                                  "voxels", "wall_s"]


def test_per_subject_masks(ds, tmp_path):
    """nilearn's mask_img="derivatives" gives every subject the first one's mask; 'per-subject' does not."""
    result = quiet(fit_bids, ds["root"], tmp_path / "p.zarr", "faces", space_label=SPACE, progress=False,
                    mask_img="per-subject", confounds_strategy=("motion",), confounds_kwargs={"motion": "basic"})
    own = [np.asarray(__import__("nibabel").load(ds["runs"][s][0].replace("desc-preproc_bold", "desc-brain_mask"))
                      .dataobj).astype(bool) for s in ("01", "02")]
    assert [result.status[s]["voxels"] for s in ("01", "02")] == [int(m.sum()) for m in own]
    assert own[0].sum() != own[1].sum()
    with pytest.raises(ValueError, match="mask_img must be one of"):
        fit_bids(ds["root"], tmp_path / "q.zarr", "faces", mask_img="bogus")


def test_fit_bids_resume_reuses_everything(ds, study):
    again = quiet(fit_bids, ds["root"], study["store"], "faces", space_label=SPACE, progress=False,
                   resume=True, mask_img="derivatives", confounds_strategy=SCRUB["confounds_strategy"],
                   confounds_kwargs={"motion": "basic", "scrub": 0, "fd_threshold": 0.5})
    assert again.ok
    for summary in again.completed.values():
        assert summary.written == [] and summary.reused == [0, 1]


def test_bids_out_names_are_nilearns(ds, study, tmp_path, monkeypatch):
    import nilearn.glm.io
    from nilearn.interfaces.bids import save_glm_to_bids

    monkeypatch.setattr(nilearn.glm.io, "is_matplotlib_installed", lambda: False)  # no figures: faster

    models, imgs, events, confounds = quiet(nilearn_first_level_from_bids, ds["root"], "faces",
                                             space_label=SPACE, mask_img="derivatives", sub_labels=["01"],
                                             minimize_memory=False, **MOTION)
    quiet(models[0].fit, imgs[0], events[0], confounds[0])
    quiet(save_glm_to_bids, models[0], {"face-house": CONTRAST}, out_dir=tmp_path)
    theirs = {p.name for p in (tmp_path / "sub-01").iterdir()
              if p.name.endswith(("_statmap.nii.gz", "_mask.nii.gz", "_design.tsv", "_design.json"))
              and "stat-errorts" not in p.name and "stat-rsquared" not in p.name}
    ours = {p.name for p in (study["out"] / "sub-01").iterdir() if p.suffix != ".json" or "design" in p.name}
    assert ours == theirs
    assert "sub-01_task-faces_space-MNI152NLin2009cAsym_contrast-faceMinusHouse_stat-z_statmap.nii.gz" in ours
    desc = json.loads((study["out"] / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Version"] == daskglm.__version__
    assert desc["SourceDatasets"] == [{"URL": str(Path(ds["root"]))}]
    names = derivative_filenames(imgs[0], {"face-house": CONTRAST})
    z_file = study["out"] / "sub-01" / names["maps"]["face-house"]["z_score"]
    z_ref = _z(open_subject(study["store"], "01"))
    np.testing.assert_array_equal(np.asarray(__import__("nibabel").load(z_file).dataobj), z_ref)


def test_failed_subject_does_not_lose_the_others(ds, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(ds["root"], copy)
    bad = Path(ds["runs"]["02"][1].replace(ds["root"], str(copy)))
    good = bad.read_bytes()
    data = gzip.decompress(good)
    bad.write_bytes(gzip.compress(data[: len(data) // 2]))  # truncated run: sub-02 fails
    options = dict(space_label=SPACE, progress=False, confounds_strategy=("motion",),
                   confounds_kwargs={"motion": "basic"})
    result = quiet(fit_bids, copy, tmp_path / "s.zarr", "faces", **options)
    assert list(result.completed) == ["01"] and list(result.failed) == ["02"]
    assert "truncated" in result.failed["02"]
    status = read_status(tmp_path / "s.zarr")
    assert status["01"]["status"] == "complete"
    assert status["02"]["status"] == "failed" and "truncated" in status["02"]["error"]
    # sub-01 loses an events file (nilearn's query fails for it alone); sub-02 is repaired
    (copy / "sub-01" / "ses-2" / "func" / "sub-01_ses-2_task-faces_run-1_events.tsv").unlink()
    bad.write_bytes(good)
    result = quiet(fit_bids, copy, tmp_path / "s.zarr", "faces", resume=True, **options)
    assert list(result.completed) == ["02"] and list(result.failed) == ["01"]
    status = read_status(tmp_path / "s.zarr")
    assert status["02"]["status"] == "complete" and status["01"]["status"] == "failed"
    assert open_subject(tmp_path / "s.zarr", "01").n_elements_ > 0  # its earlier fit is still there


def test_relative_paths_resolved_on_the_client(ds, tmp_path, monkeypatch):
    run = Path(ds["runs"]["01"][0])
    monkeypatch.chdir(run.parent)
    model = FirstLevelModel(mask_img=False).fit(run.name, design_matrices=pd.DataFrame(
        {"constant": np.ones(50), "lin": np.linspace(-1, 1, 50)}))
    monkeypatch.chdir(tmp_path)  # a worker elsewhere still finds the run
    assert np.isfinite(quiet(model.compute_contrast, "lin").get_fdata()).all()


def test_cli_bids(ds, tmp_path, capsys):
    store = tmp_path / "cli.zarr"
    argv = ["bids", ds["root"], "-o", str(store), "--task", "faces", "--space", SPACE, "--sub", "01",
            "--confounds-strategy", "motion", "wm_csf", "scrub", "--confounds-option", "motion=basic",
            "--confounds-option", "scrub=0", "--confounds-option", "fd_threshold=0.5",
            "--contrast", "face-house", "--bids-out", str(tmp_path / "out"), "--no-progress", "--mask", "derivatives"]
    assert quiet(main, argv) == 0
    out = capsys.readouterr().out
    assert "sub-01" in out and "complete" in out
    models, imgs, events, confounds = quiet(first_level_from_bids, ds["root"], "faces", space_label=SPACE,
                                             mask_img="derivatives", sub_labels=["01"], **SCRUB)
    np.testing.assert_allclose(_z(open_subject(store, "01")), _z(models[0], imgs[0], events[0], confounds[0]),
                               atol=1e-6)
    assert list((tmp_path / "out" / "sub-01").glob("*contrast-faceMinusHouse_stat-z_statmap.nii.gz"))
    assert quiet(main, argv + ["--resume"]) == 0
    assert quiet(main, ["bids", ds["root"], "-o", str(tmp_path / "x"), "--task", "faces",
                         "--storage-option", "novalue", "--no-progress"]) != 0


def test_fit_bids_on_a_distributed_cluster(ds, study, tmp_path):
    distributed = pytest.importorskip("distributed")
    copy = tmp_path / "ds"
    shutil.copytree(ds["root"], copy)
    bad = Path(ds["runs"]["02"][0].replace(ds["root"], str(copy)))
    bad.write_bytes(bad.read_bytes()[:2000])  # truncated: sub-02 fails, sub-01 is fitted on the cluster
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        result = quiet(fit_bids, copy, tmp_path / "d.zarr", "faces", space_label=SPACE, progress=False,
                        mask_img="derivatives", confounds_strategy=SCRUB["confounds_strategy"],
                        confounds_kwargs={"motion": "basic", "scrub": 0, "fd_threshold": 0.5},
                        contrasts={"face-house": CONTRAST}, bids_out=tmp_path / "out", schedule="subjects")
    assert list(result.completed) == ["01"] and list(result.failed) == ["02"]
    # the worker's fit used the sample masks the confounds carried into the task
    kept = read_status(study["store"])["01"]["scans_kept"]
    assert result.status["01"]["scans_kept"] == kept < result.status["01"]["scans"]
    np.testing.assert_array_equal(_z(open_subject(tmp_path / "d.zarr", "01")),
                                  _z(open_subject(study["store"], "01")))
    # the derivatives, written by the workers, are the ones written without a cluster
    ours = sorted(p.name for p in (tmp_path / "out" / "sub-01").iterdir())
    assert ours == sorted(p.name for p in (study["out"] / "sub-01").iterdir())
    z_name = next(n for n in ours if n.endswith("stat-z_statmap.nii.gz"))
    np.testing.assert_array_equal(np.asarray(__import__("nibabel").load(tmp_path / "out" / "sub-01" / z_name).dataobj),
                                  np.asarray(__import__("nibabel").load(study["out"] / "sub-01" / z_name).dataobj))
    assert json.loads((tmp_path / "out" / "dataset_description.json").read_text())["SourceDatasets"] == [
        {"URL": str(copy)}]
