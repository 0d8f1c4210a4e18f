"""Shared fixtures and helpers.

- Small generated FIAC-like datasets (session-scoped, on disk) and the loaders
  of their design matrices.
- The bad-input harness of test_io, test_volume, test_design, test_contrasts,
  test_model and test_store: every bad input raises a user-facing exception
  (a ``ValueError``/``TypeError``/``FileNotFoundError`` subclass, never a numpy
  ``IndexError``) whose message names the problem and the offending value, within
  seconds (``raises_fast``).  Fit-time checks must not read volume data: the
  ``no_heavy_work`` fixture makes any volume read or dask computation fail.
- Hypothesis settings and the user-error check of the property-based tests of
  test_design and test_contrasts.
- :func:`sigkilled_at_exit`: the child processes of the kill tests of
  test_store, test_concurrency and test_faults are SIGKILLed and reaped
  whatever happens.
- A run with special voxels (zero, constant, partly and all non-finite) and its
  maps from daskglm and nilearn, for the data-hygiene tests of test_volume and
  test_model.
- A freshly written store of a one-run fit (``good_store``), for test_store and
  test_faults.
- Two runs of unequal widths (``unequal``, ``tests/_unequal.py``) and a good
  two-run OLS store of them (``pristine``, copied fresh as ``store``), for the
  store integrity, validation, migration and fault tests, the CLI's errors and
  the contrast-code, t_r and export tests.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import dask
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from daskglm import FirstLevelModel
from daskglm.data.fiac import make_fiac_like
from daskglm.io.nifti import FileRunSource
from daskglm.io.runs import ArrayRunSource
from tests._unequal import unequal_runs


@pytest.fixture(scope="session")
def fiac_small(tmp_path_factory):
    """Two .nii.gz runs of 14x16x14 voxels x 80 scans with the FIAC design."""
    out = tmp_path_factory.mktemp("fiac_small")
    return make_fiac_like(out, shape=(14, 16, 14), n_scans=80, seed=1)


@pytest.fixture(scope="session")
def fiac_small_nii(tmp_path_factory):
    """Same layout, uncompressed .nii, different shape and seed."""
    out = tmp_path_factory.mktemp("fiac_small_nii")
    return make_fiac_like(out, shape=(11, 13, 9), n_scans=70, seed=2, compress=False)


def load_named_design(path) -> pd.DataFrame:
    """A simulated design matrix (``.npz``) with its column names."""
    with np.load(path) as npz:
        return pd.DataFrame(npz["X"], columns=[str(c) for c in npz["columns"]])


def load_named_designs(data: dict) -> list[pd.DataFrame]:
    """Both runs' design matrices with their column names."""
    return [load_named_design(data[f"design_matrix{i}"]) for i in (1, 2)]


def load_designs(data: dict) -> list[pd.DataFrame]:
    """The dataset's design matrices as the seed example loads them."""
    return [pd.DataFrame(np.load(data[f"design_matrix{i}"])["X"]) for i in (1, 2)]


def quiet(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with every warning silenced (nilearn's BIDS queries warn a lot)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def one_blas_thread():
    """One BLAS thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_blas_thread")``)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(autouse=True)
def _quiet_known_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padded with zeros.*")
        warnings.filterwarnings("ignore", message=".*One contrast given.*")
        warnings.filterwarnings("ignore", message=".*The same contrast will be used.*")
        warnings.filterwarnings("ignore", message=".*approximate fixed effects.*")
        yield


# ---------------------------------------------------------------- small runs
#: Grid and length of the runs of the bad-input, special-voxel and store fixtures.
SHAPE = (12, 14, 12)
N_SCANS = 60


# ---------------------------------------------------------------- bad inputs
MAX_SECONDS = 5.0


@pytest.fixture(scope="module")
def vdata(tmp_path_factory) -> dict:
    """A small two-run .nii.gz dataset plus an uncompressed copy of run 1."""
    root = tmp_path_factory.mktemp("validation")
    data = make_fiac_like(root / "gz", shape=SHAPE, n_scans=N_SCANS, seed=5)
    plain = make_fiac_like(root / "nii", shape=SHAPE, n_scans=N_SCANS, seed=5, n_runs=1, compress=False)
    data["design1"], data["design2"] = load_named_designs(data)
    data["nii1"] = plain["func1"]
    data["affine"] = nib.load(data["mask"]).affine
    data["root"] = root
    return data


@pytest.fixture(scope="module")
def fitted(vdata) -> FirstLevelModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(mask_img=vdata["mask"], noise_model="ols")
        return model.fit(vdata["func1"], design_matrices=vdata["design1"])


def _forbidden(*args, **kwargs):
    raise AssertionError("volume data was read (or dask computed) during input validation")


def _raising_scheduler(dsk, keys, **kwargs):
    raise AssertionError("dask computed something during input validation")


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail on any volume read or dask computation: validation must come first."""
    monkeypatch.setattr(FileRunSource, "read", _forbidden)
    monkeypatch.setattr(FileRunSource, "iter_chunks", _forbidden)
    monkeypatch.setattr(ArrayRunSource, "read", _forbidden)
    with dask.config.set(scheduler=_raising_scheduler):
        yield


@contextlib.contextmanager
def raises_fast(exc_type, *fragments: str):
    """``pytest.raises`` that also checks the message names the problem, and speed."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc_type) as info:
            yield info
    elapsed = time.perf_counter() - start
    assert not isinstance(info.value, (IndexError, KeyError, AssertionError))
    assert isinstance(info.value, (ValueError, TypeError, FileNotFoundError))
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in message: {message!r}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f}s to raise"


@contextlib.contextmanager
def sigkilled_at_exit(proc: subprocess.Popen, timeout: float = 30):
    """Run the block while ``proc`` (a test's child process) may live; then SIGKILL and reap it.

    Whatever the block does (it may fail, or the child may have exited), no
    child outlives the test: on leaving, a running ``proc`` gets ``SIGKILL``
    and is waited for (``timeout`` seconds, then an error rather than a hung
    test).  Afterwards ``proc.returncode`` is ``-SIGKILL`` if it was killed.
    """
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=timeout)


def _model(vdata, **kwargs) -> FirstLevelModel:
    return FirstLevelModel(mask_img=vdata["mask"], **kwargs)


# ------------------------------------------------------ property-based tests
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
USER_ERRORS = (ValueError, TypeError, FileNotFoundError)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def _user_error(fn, *args, allowed=USER_ERRORS):
    """Call ``fn``; return the exception, which must be user-facing (or None)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)
    except allowed as err:
        assert not isinstance(err, (IndexError, KeyError))
        assert str(err), "error without a message"
        return err
    return None


# ------------------------------------------------------------ special voxels
OUTPUTS = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


@pytest.fixture(scope="module")
def hdata(tmp_path_factory) -> dict:
    """A .nii run with special voxels: zero, constant, partly NaN/inf, all NaN."""
    root = tmp_path_factory.mktemp("hygiene")
    data = make_fiac_like(root, shape=SHAPE, n_scans=N_SCANS, seed=3, compress=False, n_runs=1)
    img = nib.load(data["func1"])
    bold = np.asarray(img.dataobj).astype(np.float32)
    mask = np.asarray(nib.load(data["mask"]).dataobj).astype(bool)
    voxels = [tuple(v) for v in np.argwhere(mask)[:: mask.sum() // 8][:6]]
    special = dict(zip(["zero", "constant", "one_nan", "one_inf", "all_nan", "few_nan"], voxels))
    bold[special["zero"]] = 0.0
    bold[special["constant"]] = 500.0
    bold[special["one_nan"]][5] = np.nan
    bold[special["one_inf"]][7] = np.inf
    bold[special["all_nan"]] = np.nan
    bold[special["few_nan"]][[0, 20, 59]] = [np.nan, -np.inf, np.nan]
    path = root / "bold_special.nii"
    nib.save(nib.Nifti1Image(bold, img.affine), path)
    design = load_named_design(data["design_matrix1"])
    contrast = np.zeros(design.shape[1])
    contrast[:2] = [1.0, -1.0]
    return dict(data, bold=str(path), bold_array=bold, affine=img.affine, mask_array=mask,
                special=special, design=design, contrast=contrast, root=root)


def _daskglm_maps(hdata, **params):
    model = FirstLevelModel(mask_img=hdata["mask"], **params)
    model.fit(hdata["bold"], design_matrices=hdata["design"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = model.compute_contrast(hdata["contrast"], output_type="all")
    return {k: np.asarray(v.dataobj) for k, v in maps.items()}, caught


def _nilearn_maps(hdata, **params):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = NilearnModel(mask_img=hdata["mask"], **params)
        model.fit(hdata["bold"], design_matrices=hdata["design"])
        maps = model.compute_contrast(hdata["contrast"], output_type="all")
    return {k: np.asarray(v.dataobj) for k, v in maps.items()}


CONFIGS = {
    "ar1-scaled": dict(noise_model="ar1", signal_scaling=0),
    "ols-unscaled": dict(noise_model="ols", signal_scaling=False),
    "ar1-smoothed": dict(noise_model="ar1", signal_scaling=0, smoothing_fwhm=6.0),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def both(request, hdata):
    params = CONFIGS[request.param]
    ours, caught = _daskglm_maps(hdata, **params)
    return request.param, ours, caught, _nilearn_maps(hdata, **params)


# -------------------------------------------------------------------- stores
@pytest.fixture(scope="module")
def sdata(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("store_safety")
    data = make_fiac_like(root / "data", shape=SHAPE, n_scans=N_SCANS, seed=11, compress=False)
    data["root"] = root
    return data


def _design(data: dict, run: int) -> pd.DataFrame:
    return load_named_design(data[f"design_matrix{run}"])


def _fit(data: dict, run: int) -> FirstLevelModel:
    model = FirstLevelModel(mask_img=data["mask"], noise_model="ols")
    return model.fit(data[f"func{run}"], design_matrices=_design(data, run))


@pytest.fixture
def good_store(sdata, tmp_path) -> Path:
    """A freshly written store of the old fit (run 1)."""
    path = tmp_path / "fit.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fit(sdata, 1).to_zarr(path)
    return path



# ----------------------------------------------------- runs of unequal widths
@pytest.fixture(scope="module")
def unequal(tmp_path_factory) -> dict:
    """Two runs of 60 and 80 scans whose event designs have 2 and 3 conditions (unequal widths)."""
    return {**unequal_runs(), "root": tmp_path_factory.mktemp("unequal")}


@pytest.fixture(scope="module")
def pristine(unequal) -> Path:
    path = unequal["root"] / "pristine.zarr"
    FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=unequal["designs"]).to_zarr(path)
    return path


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A fresh copy of a good two-run OLS store (runs of 60 and 80 scans)."""
    path = tmp_path / "fit.zarr"
    shutil.copytree(pristine, path)
    return path


# ------------------------------------------------------------- object storage
#: Credentials of the loopback moto S3 server (fake; moto accepts any).
S3_CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on 127.0.0.1 (session-wide) with a bucket ``fits``; yields the
    fsspec storage options (``endpoint_url``, ``key``, ``secret``).  Skips without moto."""
    import logging
    import socket

    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="fits")
    try:
        yield {"endpoint_url": endpoint, **S3_CREDENTIALS}
    finally:
        server.stop()


@pytest.fixture(autouse=True, scope="session")
def _gzip_index_cache(tmp_path_factory):
    """Seek indexes of the tests' .nii.gz runs go to a temporary folder, not ~/.cache (io/gzindex.py)."""
    import os

    previous = os.environ.get("DASKGLM_GZIP_INDEX_DIR")
    os.environ["DASKGLM_GZIP_INDEX_DIR"] = str(tmp_path_factory.mktemp("gzip-index"))
    yield
    if previous is None:
        os.environ.pop("DASKGLM_GZIP_INDEX_DIR", None)
    else:
        os.environ["DASKGLM_GZIP_INDEX_DIR"] = previous
