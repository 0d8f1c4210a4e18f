"""Surface studies on object storage (moto S3 on loopback): fsLR CIFTI and fsaverage5 GIfTI runs.

Both generated datasets (``make_bids_dataset(space="fsLR")``; nilearn's fake
fsaverage5 BIDS dataset with signal, as ``tests/test_bids_fsaverage5.py``)
are copied into a bucket; ``fit_bids`` with the dataset and the store on S3
gives the maps of the local run.  The runs are read by range requests
(CIFTI) or streamed XML (GIfTI), never downloaded whole by the client.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import first_level_from_bids, fit_bids, open_subject
from daskglm.data.bids import make_bids_dataset
from daskglm.io import cifti as cifti_io
from daskglm.io.cifti import RemoteCiftiRunSource
from daskglm.io.remote import RemoteGiftiRunSource
from daskglm.studies.subjects import read_status
from tests.conftest import quiet

s3fs = pytest.importorskip("s3fs")

SCRUB = {"confounds_strategy": ("motion", "wm_csf", "scrub"),
         "confounds_kwargs": {"motion": "basic", "scrub": 0, "fd_threshold": 0.5}}
MOTION = {"confounds_strategy": ("motion",), "confounds_kwargs": {"motion": "basic"}}



pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _surface_values(img) -> np.ndarray:
    if isinstance(img, nib.Cifti2Image):
        return np.asarray(img.dataobj, dtype=np.float64)[0]
    return np.concatenate([np.asarray(img.data.parts[h]).ravel() for h in ("left", "right")])


def _z(model, contrast: str) -> np.ndarray:
    return _surface_values(quiet(model.compute_contrast, contrast))


@pytest.fixture(scope="module")
def fslr(s3, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fslr_s3")
    ds = make_bids_dataset(root / "ds", n_subjects=2, n_sessions=0, n_runs=2, space="fsLR", n_scans=50,
                           n_vertices=200, seed=11)
    s3fs.S3FileSystem(**s3).put(ds["root"] + "/", "fits/fslr/", recursive=True)
    local = quiet(fit_bids, ds["root"], root / "local.zarr", "faces", space_label="fsLR", sub_labels=["02"],
                   progress=False, **SCRUB)
    local.raise_for_errors()
    return {"ds": ds, "local": local}


@pytest.fixture(scope="module")
def fsaverage5(s3, tmp_path_factory) -> dict:
    import pandas as pd
    from nilearn._utils.data_gen import create_fake_bids_dataset

    from tests.studies.test_bids_fsaverage5 import N_VERTICES, _add_signal

    base = tmp_path_factory.mktemp("fsaverage5_s3")
    root = create_fake_bids_dataset(base_dir=base, n_sub=2, n_ses=0, tasks=["main"], n_runs=[2],
                                    n_vertices=N_VERTICES)
    rng = np.random.default_rng(25)
    for run in sorted(root.glob("derivatives/sub-*/func/*_space-fsaverage5_bold.func.gii")):
        sub, task, run_label = run.name.split("_")[:3]
        _add_signal(run, pd.read_csv(root / sub / "func" / f"{sub}_{task}_{run_label}_events.tsv", sep="\t"), rng)
    s3fs.S3FileSystem(**s3).put(str(root) + "/", "fits/fsaverage5/", recursive=True)
    local = quiet(fit_bids, root, base / "local.zarr", "main", space_label="fsaverage5", slice_time_ref=0.0,
                   sub_labels=["02"], progress=False, **MOTION)
    local.raise_for_errors()
    return {"root": root, "local": local}


def test_fslr_study_from_s3_to_s3_equals_local(s3, fslr, monkeypatch):
    # small read blocks and windows: several ranged reads per window, several windows per run
    monkeypatch.setattr(cifti_io, "BLOCK_BYTES", 150 * 50 * 4)
    monkeypatch.setattr(cifti_io, "REMOTE_WINDOW_BYTES", 30 * len(fslr["ds"]["brain_models"]) * 4)
    # one subject: the cost is the store's writes to the moto server (about 4 s per subject)
    result = quiet(fit_bids, "s3://fits/fslr", "s3://fits/fslr.zarr", "faces", space_label="fsLR", sub_labels=["02"],
                    storage_options=s3, progress=False, contrasts={"fh": "face - house"},
                    bids_out="s3://fits/fslr-out", **SCRUB)
    assert result.ok, result.failed
    status = read_status("s3://fits/fslr.zarr", s3)
    assert status["02"]["scans_kept"] == fslr["local"].status["02"]["scans_kept"] < status["02"]["scans"]
    remote = _z(open_subject("s3://fits/fslr.zarr", "02", storage_options=s3), "face - house")
    local = _z(open_subject(fslr["local"].store, "02"), "face - house")
    assert np.abs(local).max() > 5
    np.testing.assert_allclose(remote, local, rtol=1e-10, atol=1e-10)
    fs = s3fs.S3FileSystem(**s3)
    with fs.open("fits/fslr-out/sub-02/sub-02_task-faces_space-fsLR_den-91k_contrast-fh_stat-z_statmap.dscalar.nii") as f:
        written = nib.Cifti2Image.from_bytes(f.read())
    assert written.header.get_axis(1) == fslr["ds"]["brain_models"]


def test_fslr_query_on_s3_returns_remote_cifti_sources(s3, fslr):
    models, imgs, events, confounds = quiet(
        first_level_from_bids, "s3://fits/fslr", "faces", space_label="fsLR", sub_labels=["02"],
        storage_options=s3, confounds_strategy=("motion",), confounds_motion="basic")
    assert all(isinstance(r, RemoteCiftiRunSource) and str(r).startswith("s3://fits/fslr/derivatives/sub-02/")
               for r in imgs[0])
    assert len(imgs[0]) == len(events[0]) == len(confounds[0]) == 2 and models[0].t_r == 2.0
    source = imgs[0][0]
    local = nib.load(fslr["ds"]["runs"]["02"][0])
    assert source.geometry.brain_models == local.header.get_axis(1) and source.t_r == 2.0
    assert len(source._head) == source._offset < source.size  # the header only, until read
    np.testing.assert_array_equal(source.read(3, 17), np.asarray(local.dataobj)[3:17])
    import pickle

    clone = pickle.loads(pickle.dumps(source))  # as shipped to a worker: header bytes, no data
    assert clone.geometry.same_as(source.geometry) and len(pickle.dumps(source)) < 2 * source._offset + 4096
    np.testing.assert_array_equal(clone.read(0, 5), np.asarray(local.dataobj)[:5])


def test_fsaverage5_study_from_s3_to_s3_equals_local(s3, fsaverage5):
    models, imgs, _, _ = quiet(first_level_from_bids, "s3://fits/fsaverage5", "main", space_label="fsaverage5",
                                slice_time_ref=0.0, sub_labels=["01"], storage_options=s3)
    assert all(isinstance(r, RemoteGiftiRunSource) for r in imgs[0]) and imgs[0][0].shape == (2 * 10242, 30)
    # one subject: the cost is the store's writes to the moto server (about 4 s per subject)
    result = quiet(fit_bids, "s3://fits/fsaverage5", "s3://fits/fsaverage5.zarr", "main", sub_labels=["02"],
                    space_label="fsaverage5", slice_time_ref=0.0, storage_options=s3, progress=False, **MOTION)
    assert result.ok, result.failed
    assert read_status("s3://fits/fsaverage5.zarr", s3)["02"]["scans_kept"] == 2 * 29  # non-steady state
    remote = _z(open_subject("s3://fits/fsaverage5.zarr", "02", storage_options=s3), "c0 - c1")
    local = _z(open_subject(fsaverage5["local"].store, "02"), "c0 - c1")
    assert np.abs(local).max() > 5
    np.testing.assert_allclose(remote, local, rtol=1e-10, atol=1e-10)


def test_remote_surface_sources_reject_bad_objects(s3, fslr):
    from daskglm.errors import SurfaceInputError

    with pytest.raises(FileNotFoundError, match="does not exist"):
        RemoteCiftiRunSource("s3://fits/fslr/derivatives/sub-02/func/missing_bold.dtseries.nii", s3)
    fs = s3fs.S3FileSystem(**s3)
    fs.pipe("fits/bad/run_bold.dtseries.nii", b"\x1f\x8b" + bytes(600))
    with pytest.raises(SurfaceInputError, match="gzip"):
        RemoteCiftiRunSource("s3://fits/bad/run_bold.dtseries.nii", s3)
    run = fslr["ds"]["runs"]["02"][0]
    fs.pipe("fits/bad/cut_bold.dtseries.nii", Path(run).read_bytes()[:-100])  # truncated
    with pytest.raises(SurfaceInputError, match="truncated"):
        RemoteCiftiRunSource("s3://fits/bad/cut_bold.dtseries.nii", s3)
    from nilearn.datasets import load_fsaverage

    mesh = load_fsaverage()["pial"]
    urls = {"left": "s3://fits/fslr/participants.tsv", "right": "s3://fits/fslr/participants.tsv"}
    with pytest.raises(SurfaceInputError):  # not GIfTI XML
        quiet(RemoteGiftiRunSource, urls, mesh, s3)


def test_bare_cifti_url_is_a_remote_cifti_run(s3, fslr, monkeypatch):
    """A CIFTI URL given straight to fit()/as_run_source is read as CIFTI, not as a NIfTI volume."""
    import fsspec

    from daskglm import FirstLevelModel
    from daskglm.io.runs import as_run_source

    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3))  # options for plain URLs
    local = fslr["ds"]["runs"]["02"][0]
    url = "s3://fits/fslr/derivatives/sub-02/func/" + Path(local).name
    assert isinstance(as_run_source(url), RemoteCiftiRunSource)
    n_scans = nib.load(local).shape[0]
    design = pd.DataFrame({"a": np.sin(np.arange(n_scans) / 3.0), "constant": 1.0})
    z = [quiet(FirstLevelModel(mask_img=False).fit(run, design_matrices=design).compute_contrast, "a")
         for run in (url, local)]
    np.testing.assert_array_equal(np.asarray(z[0].dataobj), np.asarray(z[1].dataobj))


def test_open_run_on_a_cifti_url(s3, fslr):
    """open_run streams a CIFTI URL with its storage options, like the local file."""
    from daskglm import open_run

    local = fslr["ds"]["runs"]["02"][0]
    url = "s3://fits/fslr/derivatives/sub-02/func/" + Path(local).name
    remote, here = open_run(url, storage_options=s3), open_run(local)
    assert remote.dims == ("time", "grayordinate") and remote.attrs["filename"] == url
    np.testing.assert_array_equal(remote.isel(time=slice(2, 9)).values, here.isel(time=slice(2, 9)).values)
    np.testing.assert_array_equal(remote["structure"].values, here["structure"].values)


def test_square_gifti_array_reads_as_nilearn_reads_it_locally_and_remotely(s3, tmp_path):
    """A 6 x 6 (time, vertex) array on a 6-vertex mesh: both readers orient it as nilearn does."""
    import s3fs
    from nibabel.gifti import GiftiDataArray, GiftiImage
    from nilearn.surface import InMemoryMesh, PolyMesh, load_surf_data

    from daskglm.io.gifti import GiftiRunSource

    coords = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1]], float)
    faces = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 4], [1, 3, 5]])
    mesh = PolyMesh(left=InMemoryMesh(coords, faces), right=InMemoryMesh(coords + 2, faces))
    data = np.arange(36, dtype=np.float32).reshape(6, 6)  # rows: scans (nilearn's reading)
    paths = {}
    for part in ("left", "right"):
        paths[part] = tmp_path / f"{part}.func.gii"
        nib.save(GiftiImage(darrays=[GiftiDataArray(data + (part == "right"), datatype="NIFTI_TYPE_FLOAT32")]),
                 paths[part])
    s3fs.S3FileSystem(**s3).put(str(tmp_path) + "/", "fits/square/", recursive=True)
    local = GiftiRunSource(paths, mesh).read(0, 6)
    remote = RemoteGiftiRunSource({p: f"s3://fits/square/{p}.func.gii" for p in paths}, mesh, s3).read(0, 6)
    nilearn_scans = load_surf_data(paths["left"]).T  # nilearn: (vertex, time)
    np.testing.assert_array_equal(local[:, :6], nilearn_scans)
    np.testing.assert_array_equal(remote, local)
