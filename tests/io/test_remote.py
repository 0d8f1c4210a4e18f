"""Runs, masks, events and confounds at fsspec URLs (moto S3 on loopback): streamed, never downloaded whole."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel, open_run
from daskglm.errors import NiftiInputError
from daskglm.io.nifti import FileRunSource
from daskglm.io.remote import BLOCK_SIZE, RemoteRunSource
from daskglm.io.runs import as_run_source

s3fs = pytest.importorskip("s3fs")


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def remote(s3, tmp_path_factory):
    """A .nii.gz run, the same run as .nii, a truncated .nii, mask, events and confounds, uploaded."""
    from daskglm.data.volumes import write_nifti_stream

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("remote")
    shape, n = (40, 40, 30), 64  # 12 MiB uncompressed: several read-ahead blocks
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    data = (1000 + 10 * rng.standard_normal((*shape, n))).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[10:30, 10:30, 8:22] = 1
    write_nifti_stream(root / "bold.nii.gz", (*shape, n), affine, (data[..., t] for t in range(n)), t_r=2.0)
    write_nifti_stream(root / "bold.nii", (*shape, n), affine, (data[..., t] for t in range(n)), t_r=2.0)
    (root / "short.nii").write_bytes((root / "bold.nii").read_bytes()[: 352 + 4 * 40 * 40 * 30 * 10])
    nib.save(nib.Nifti1Image(mask, affine), root / "mask.nii.gz")
    pd.DataFrame({"onset": np.arange(5, 120, 20.0), "duration": 5.0, "trial_type": "a"}).to_csv(
        root / "events.tsv", sep="\t", index=False)
    pd.DataFrame({"motion": rng.standard_normal(n)}).to_csv(root / "confounds.tsv", sep="\t", index=False)
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(root) + "/", "fits/remote/", recursive=True)
    return {"local": root, "url": "s3://fits/remote", "options": s3}


def _ranges(monkeypatch) -> list[int]:
    """Record the size of every ranged GET of s3fs files."""
    sizes: list[int] = []
    original = s3fs.core.S3File._fetch_range

    def fetch(self, start, end):
        sizes.append(end - start)
        return original(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", fetch)
    return sizes


@pytest.mark.parametrize("name", ["bold.nii.gz", "bold.nii"])
def test_remote_run_streams_the_same_volumes(remote, name, monkeypatch):
    sizes = _ranges(monkeypatch)
    source = RemoteRunSource(f"{remote['url']}/{name}", remote["options"])
    assert sum(sizes) <= 1 << 17  # opening reads the header only (a few KiB, read-ahead included)
    local = FileRunSource(remote["local"] / name)
    assert source.shape == local.shape and source.dtype == local.dtype
    np.testing.assert_array_equal(source.affine, local.affine)
    sizes.clear()
    for (t0, got), (_, expected) in zip(source.iter_chunks(8), local.iter_chunks(8)):
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} volumes {t0}..")
    size = (remote["local"] / name).stat().st_size
    # never one GET of the whole object: read-ahead block + the inflater's request (<= 1 MiB)
    assert max(sizes) <= BLOCK_SIZE + (1 << 20) < size
    assert sum(sizes) <= size + BLOCK_SIZE  # front to back, read once
    np.testing.assert_array_equal(source.read(5, 9), local.read(5, 9))
    assert source.identity()["size"] == size and source.identity()["version"]


def test_fit_with_urls_everywhere_equals_local(remote, monkeypatch):
    import fsspec

    monkeypatch.setitem(fsspec.config.conf, "s3", dict(remote["options"]))  # options for plain URLs
    url, local = remote["url"], remote["local"]

    def fit(root):
        model = FirstLevelModel(t_r=2.0, mask_img=f"{root}/mask.nii.gz", noise_model="ar1")
        return model.fit(f"{root}/bold.nii.gz", events=f"{root}/events.tsv", confounds=f"{root}/confounds.tsv")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        remote_model, local_model = fit(url), fit(local)
        assert isinstance(as_run_source(f"{url}/bold.nii.gz"), RemoteRunSource)
        for output in ("z_score", "effect_size"):
            np.testing.assert_array_equal(
                np.asarray(remote_model.compute_contrast("a", output_type=output).dataobj),
                np.asarray(local_model.compute_contrast("a", output_type=output).dataobj))


def test_open_run_and_errors(remote):
    arr = open_run(f"{remote['url']}/bold.nii.gz", storage_options=remote["options"])
    assert arr.attrs["filename"].startswith("s3://")
    expected = open_run(remote["local"] / "bold.nii.gz")
    np.testing.assert_array_equal(arr[..., 60:].values, expected[..., 60:].values)
    with pytest.raises(NiftiInputError, match="truncated"):
        RemoteRunSource(f"{remote['url']}/short.nii", remote["options"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RemoteRunSource(f"{remote['url']}/nothing.nii.gz", remote["options"])
