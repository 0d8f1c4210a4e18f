"""Fits on object storage: a real S3-API server (moto's server mode) on loopback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from daskglm import FirstLevelModel, open_model
from daskglm.store.zarr import StoreError, complete_run_keys
from tests.conftest import load_designs

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

# the moto S3 server on loopback is tests/conftest.py's session fixture ``s3``


@pytest.fixture(scope="module", autouse=True)
def _deterministic_blas():
    """threadpoolctl limits are process-wide, so the engine's per-task limits race on the
    threaded scheduler and fits may differ in the last bit; one outer limit makes them exact."""
    with threadpool_limits(1):
        yield


def _fit(data, **kwargs) -> FirstLevelModel:
    return FirstLevelModel(mask_img=data["mask"], **kwargs).fit(
        [data["func1"], data["func2"]], design_matrices=load_designs(data)
    )


def _maps(model) -> dict:
    return {k: np.asarray(v.dataobj) for k, v in model.compute_contrast([1, 0, 0, 0], output_type="all").items()}


@pytest.fixture(scope="module")
def reference(fiac_small):
    return _maps(_fit(fiac_small))


def _same(a, b):
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_write_and_reopen_on_s3(fiac_small, s3, reference):
    url = "s3://fits/sub-01/fit.zarr"
    summary = _fit(fiac_small).to_zarr(url, storage_options=s3)
    assert summary.written == [0, 1] and summary.store == url
    fs = s3fs.S3FileSystem(**s3)
    names = {p.rsplit("/", 1)[-1] for p in fs.ls("fits/sub-01/fit.zarr", refresh=True)}
    assert "zarr.json" in names and sum(n.startswith("run") for n in names) == 2
    root = json.loads(fs.cat_file("fits/sub-01/fit.zarr/zarr.json"))
    assert root["attributes"]["daskglm_format_version"] == 3
    _same(reference, _maps(open_model(url, storage_options=s3)))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _fit(fiac_small).to_zarr(url, storage_options=s3)


def test_endpoint_from_environment(fiac_small, s3, reference, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    url = "s3://fits/env/fit.zarr"
    _fit(fiac_small).to_zarr(url)
    _same(reference, _maps(open_model(url)))


def test_uncommitted_fit_is_invisible_on_s3(fiac_small, s3, reference):
    """No rename on S3: until the commit record is written last, readers refuse the store."""
    url = "s3://fits/pending/fit.zarr"
    pending = _fit(fiac_small).to_zarr(url, storage_options=s3, compute=False)
    # metadata objects exist already, but nothing is marked complete
    assert s3fs.S3FileSystem(**s3).exists("fits/pending/fit.zarr")
    assert complete_run_keys(url, s3) == {}
    with pytest.raises(StoreError, match="not a complete daskglm fit store"):
        open_model(url, storage_options=s3)
    pending.compute()
    assert len(complete_run_keys(url, s3)) == 2
    _same(reference, _maps(open_model(url, storage_options=s3)))


def test_overwrite_and_resume_on_s3(fiac_small, s3, reference):
    url = "s3://fits/resume/fit.zarr"
    _fit(fiac_small, noise_model="ols").to_zarr(url, storage_options=s3)
    ols = _maps(open_model(url, storage_options=s3))
    assert not np.array_equal(ols["z_score"], reference["z_score"])
    # different parameters: nothing reusable, every run replaced
    summary = _fit(fiac_small).to_zarr(url, storage_options=s3, resume=True)
    assert summary.written == [0, 1] and summary.reused == []
    _same(reference, _maps(open_model(url, storage_options=s3)))
    # same inputs and parameters again: everything reused, nothing recomputed
    summary = _fit(fiac_small).to_zarr(url, storage_options=s3, resume=True)
    assert summary.written == [] and summary.reused == [0, 1]
    fs = s3fs.S3FileSystem(**s3)
    runs = [p for p in fs.ls("fits/resume/fit.zarr", refresh=True) if p.rsplit("/", 1)[-1].startswith("run")]
    assert len(runs) == 2  # superseded run groups were deleted after the commit
    _same(reference, _maps(open_model(url, storage_options=s3)))
