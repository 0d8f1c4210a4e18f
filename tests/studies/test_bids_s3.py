"""A BIDS study on object storage (moto S3 on loopback): inputs and store on S3 give the local maps."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from daskglm import first_level_from_bids, fit_bids, open_subject
from daskglm.cli import main
from daskglm.data.bids import make_bids_dataset
from daskglm.glm.sample_masks import sample_masks_from_confounds
from daskglm.io.remote import RemoteRunSource
from daskglm.studies.subjects import read_status

s3fs = pytest.importorskip("s3fs")

SPACE = "MNI152NLin2009cAsym"
STRATEGY = {"confounds_strategy": ("motion", "wm_csf", "scrub"),
            "confounds_kwargs": {"motion": "basic", "scrub": 0, "fd_threshold": 0.5},
            "mask_img": "derivatives"}  # nilearn's EPI mask (the default) is empty on a 6 x 7 x 5 grid


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def study(s3, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bids_s3")
    ds = make_bids_dataset(root / "ds", n_subjects=2, n_sessions=0, n_runs=2, shape=(6, 7, 5), n_scans=40,
                           seed=5)
    s3fs.S3FileSystem(**s3).put(ds["root"] + "/", "fits/ds/", recursive=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = fit_bids(ds["root"], root / "local.zarr", "faces", space_label=SPACE, progress=False,
                         **STRATEGY)
    return {"ds": ds, "local": local, "root": root, "options": s3}


def _z(model) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.compute_contrast("face - house").get_fdata()


def test_fit_bids_from_s3_to_s3_equals_local(study):
    options = study["options"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_bids("s3://fits/ds", "s3://fits/study.zarr", "faces", space_label=SPACE,
                          storage_options=options, progress=False, **STRATEGY)
    assert result.ok, result.failed
    status = read_status("s3://fits/study.zarr", options)
    assert status["01"]["scans_kept"] == study["local"].status["01"]["scans_kept"] < status["01"]["scans"]
    for sid in ("01", "02"):
        np.testing.assert_array_equal(_z(open_subject("s3://fits/study.zarr", sid, storage_options=options)),
                                      _z(open_subject(study["local"].store, sid)))


def test_first_level_from_bids_on_s3_streams_remote_runs(study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models, imgs, events, confounds = first_level_from_bids(
            "s3://fits/ds", "faces", space_label=SPACE, sub_labels=["02"], mask_img="derivatives",
            storage_options=study["options"], confounds_strategy=("motion",), confounds_motion="basic")
    assert all(isinstance(r, RemoteRunSource) and str(r).startswith("s3://fits/ds/derivatives/sub-02/")
               for r in imgs[0])
    assert len(imgs[0]) == len(events[0]) == len(confounds[0]) == 2
    assert models[0].t_r == 2.0 and sample_masks_from_confounds(confounds[0]) is not None


def test_cli_bids_on_s3(study, capsys):
    options = study["options"]
    argv = ["bids", "s3://fits/ds", "-o", "s3://fits/cli.zarr", "--task", "faces", "--space", SPACE,
            "--sub", "01", "--confounds-strategy", "motion", "wm_csf", "scrub",
            "--confounds-option", "motion=basic", "--confounds-option", "scrub=0",
            "--confounds-option", "fd_threshold=0.5", "--no-progress", "--resume", "--mask", "derivatives",
            "--storage-option", f"endpoint_url={options['endpoint_url']}",
            "--storage-option", f"key={options['key']}", "--storage-option", f"secret={options['secret']}",
            "--storage-option", "anon=false", "--contrast", "face-house", "--bids-out", "s3://fits/cli-out"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    assert "sub-01" in capsys.readouterr().out
    np.testing.assert_array_equal(_z(open_subject("s3://fits/cli.zarr", "01", storage_options=options)),
                                  _z(open_subject(study["local"].store, "01")))
    root = json.loads(s3fs.S3FileSystem(**options).cat_file("fits/cli.zarr/zarr.json"))
    assert root["attributes"]["bids"]["runs"]["01"][0].startswith("s3://fits/ds/")
    names = s3fs.S3FileSystem(**options).ls("fits/cli-out/sub-01", refresh=True)
    assert any(n.endswith("_contrast-faceMinusHouse_stat-z_statmap.nii.gz") for n in names)
