"""``daskglm bids`` / ``fit_bids`` defaults on fMRIPrep's usual layout (``derivatives/fmriprep``).

The derivatives folder is found one level down (or named in the error), the
mask default is the one of ``first_level_from_bids`` (nilearn's EPI mask) for
the command line and Python, ``statmap.json`` records the mask used, and a
failed subject's error is printed once, in the command line's words.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from daskglm import first_level_from_bids, open_subject
from daskglm.cli import main
from daskglm.data.bids import make_bids_dataset
from daskglm.studies.bids.study import fit_bids
from tests.conftest import quiet

pytestmark = pytest.mark.usefixtures("one_blas_thread")

FMRIPREP = "derivatives/fmriprep"


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> dict:
    return make_bids_dataset(tmp_path_factory.mktemp("bids_defaults") / "ds", n_subjects=2, n_sessions=0,
                             n_runs=1, shape=(8, 9, 7), n_scans=40, seed=7, derivatives_folder=FMRIPREP)


def _z(model, *fit_args) -> np.ndarray:
    if fit_args:
        quiet(model.fit, *fit_args)
    return quiet(model.compute_contrast, "face - house").get_fdata()


def test_python_first_level_from_bids_names_the_folder(ds):
    with pytest.raises(RuntimeError, match=r"(?s)No subject found in.*derivatives; did you mean "
                                           r"derivatives_folder='derivatives/fmriprep'\?"):
        quiet(first_level_from_bids, ds["root"], "faces")


def test_cli_finds_fmriprep_and_uses_first_level_from_bids_mask(ds, tmp_path, capsys):
    """`daskglm bids DATASET` on derivatives/fmriprep: found; the EPI mask, as first_level_from_bids' default."""
    store, out = tmp_path / "study.zarr", tmp_path / "out"
    argv = ["bids", ds["root"], "-o", store, "--task", "faces", "--sub", "01", "--contrast", "face-house",
            "--bids-out", out, "--confounds-strategy", "motion", "--confounds-option", "motion=basic",
            "--no-progress"]
    assert quiet(main, [str(a) for a in argv]) == 0
    capsys.readouterr()
    root = json.loads((store / "zarr.json").read_text())["attributes"]["bids"]
    assert root["derivatives"] == FMRIPREP and root["mask"] is None
    models, imgs, events, confounds = quiet(first_level_from_bids, ds["root"], "faces", sub_labels=["01"],
                                             derivatives_folder=FMRIPREP, confounds_strategy=("motion",),
                                             confounds_motion="basic")
    assert models[0].mask_img is None  # nilearn's default: the EPI mask of the runs
    reference = models[0].fit(imgs[0], events[0], confounds[0])
    ours = open_subject(store, "01")
    np.testing.assert_array_equal(np.asarray(ours.mask_img_.dataobj), np.asarray(reference.mask_img_.dataobj))
    np.testing.assert_allclose(_z(ours), _z(reference), atol=1e-6)
    statmap = json.loads((out / "sub-01" / "statmap.json").read_text())
    assert statmap["ModelParameters"]["mask_img"] == "epi mask computed"
    # the store exists: each subject's error once (stderr), in the command line's words
    code = quiet(main, [str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--overwrite" in errors[0] and "--resume" in errors[0], captured.err
    assert "=True" not in captured.err + captured.out and "FileExistsError" not in captured.out


def test_derivatives_mask_is_recorded_in_statmap_json(ds, tmp_path):
    out = tmp_path / "out"
    result = quiet(fit_bids, ds["root"], tmp_path / "m.zarr", "faces", contrasts={"face-house": "face - house"},
                   mask_img="derivatives", bids_out=out, progress=False, confounds_strategy=("motion",),
                   confounds_kwargs={"motion": "basic"})
    assert result.ok, result.failed
    first = ds["runs"]["01"][0].replace("desc-preproc_bold", "desc-brain_mask")
    for sid in ("01", "02"):  # nilearn's "derivatives": the first subject's brain masks for every subject
        statmap = json.loads((out / f"sub-{sid}" / "statmap.json").read_text())
        assert statmap["ModelParameters"]["mask_img"] == [first]
        inside = np.asarray(open_subject(tmp_path / "m.zarr", sid).mask_img_.dataobj) > 0
        brain = np.asarray(__import__("nibabel").load(first).dataobj) > 0
        np.testing.assert_array_equal(inside, brain)


def test_two_pipelines_are_named_in_the_error(ds, tmp_path, capsys):
    copy = tmp_path / "ds"
    shutil.copytree(ds["root"], copy)
    shutil.copytree(copy / FMRIPREP, copy / "derivatives" / "other")
    code = quiet(main, ["bids", str(copy), "-o", str(tmp_path / "s.zarr"), "--task", "faces", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "No subject found in" in err and "--derivatives derivatives/fmriprep" in err
    assert "--derivatives derivatives/other" in err and "derivatives_folder" not in err
