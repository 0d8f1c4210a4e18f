"""Fit stores: opening, format version, and resuming fits.

``open_model`` on missing paths, plain directories, NIfTI files, foreign Zarr
groups and stores of another format raises a clear error; stores carry a
format version that is checked on open.  Resuming: complete runs are kept, an
interrupted fit finishes identical to a clean one.  Runs of unequal widths (scans
and regressors) go through a store and back as nilearn fits them.  Failed and interrupted
writes are in test_faults, stores on object storage in test_s3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from daskglm import FirstLevelModel, open_model
from daskglm.data.fiac import make_fiac_like
from daskglm.store.zarr import FORMAT_VERSION, RUN_MARKER, StoreError, complete_run_keys
from tests._unequal import _z
from tests.conftest import raises_fast, sigkilled_at_exit


# ---------------------------------------------------------------- open_model
@pytest.fixture(scope="module")
def store(vdata, fitted) -> Path:
    path = vdata["root"] / "good.zarr"
    fitted.to_zarr(path)
    return path


def test_open_model_missing_path(vdata):
    path = str(vdata["root"] / "nothing_here.zarr")
    with raises_fast(FileNotFoundError, path):
        open_model(path)


def test_open_model_on_plain_directory(vdata):
    path = str(vdata["root"] / "gz")  # a folder of NIfTI files, no Zarr metadata
    with raises_fast((StoreError, FileNotFoundError), path, "store"):
        open_model(path)


def test_open_model_on_nifti_file(vdata):
    with raises_fast((StoreError, FileNotFoundError), vdata["func1"], "store"):
        open_model(vdata["func1"])


def test_open_model_on_foreign_zarr(vdata):
    import zarr

    path = vdata["root"] / "foreign.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.attrs["made_by"] = "someone else"
    group.create_array("x", shape=(3,), dtype="f8")
    with raises_fast(StoreError, str(path), "daskglm"):
        open_model(path)


def test_open_model_newer_format_version(vdata, store, tmp_path):
    import shutil

    import zarr

    from daskglm.store.zarr import FORMAT_VERSION

    copy = tmp_path / "newer.zarr"
    shutil.copytree(store, copy)
    group = zarr.open_group(str(copy), mode="r+")
    assert "daskglm_format_version" in group.attrs, "stores must carry a format version"
    group.attrs["daskglm_format_version"] = FORMAT_VERSION + 1
    zarr.consolidate_metadata(str(copy))
    with raises_fast(StoreError, "version", str(FORMAT_VERSION + 1)):
        open_model(copy)


def test_good_store_opens(store, fitted):
    """Control for the open_model tests: the same fixture store does open."""
    model = open_model(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = model.compute_contrast("constant", output_type="effect_size")
        b = fitted.compute_contrast("constant", output_type="effect_size")
    np.testing.assert_allclose(np.asarray(a.dataobj), np.asarray(b.dataobj))
    assert os.path.isdir(store)


# ------------------------------------------------------------ format version
def _set_attr(path: Path, name: str, value) -> None:
    """Edit a root attribute in the store's root ``zarr.json`` (Zarr v3 metadata)."""
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    attrs = meta.setdefault("attributes", {})
    assert name in attrs, f"the store's root metadata lacks {name!r}"
    if value is None:
        del attrs[name]
    else:
        attrs[name] = value
    meta_path.write_text(json.dumps(meta))


def test_store_carries_format_version(good_store):
    attrs = json.loads((good_store / "zarr.json").read_text())["attributes"]
    assert attrs["daskglm_format_version"] == FORMAT_VERSION
    assert isinstance(attrs["daskglm_format"], str)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("daskglm_format_version", FORMAT_VERSION + 1, str(FORMAT_VERSION + 1)),
        ("daskglm_format_version", 999, "999"),
        ("daskglm_format_version", "2", "version"),
        ("daskglm_format_version", None, "version"),
        ("daskglm_format", "some-other-format", "some-other-format"),
        ("daskglm_format", None, "daskglm"),
    ],
)
def test_incompatible_format_fails_clearly(good_store, name, value, fragment):
    _set_attr(good_store, name, value)
    start = time.perf_counter()
    with pytest.raises(StoreError) as info:
        open_model(good_store)
    assert time.perf_counter() - start < 5
    assert str(good_store) in str(info.value)
    assert fragment in str(info.value)


# -------------------------------------------------------------------- resume
@pytest.fixture(scope="module", autouse=True)
def _deterministic_blas():
    """One process-wide BLAS limit so that repeated fits are bit-identical (see test_s3)."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def rdata(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("resume")
    return make_fiac_like(out / "data", shape=(12, 14, 12), n_scans=60, seed=5, compress=False)


def _runs(data):
    return [data["func1"], data["func2"]]


def _designs(data):
    return [data["design_matrix1"], data["design_matrix2"]]


def _fit(data, runs=None, **kwargs) -> FirstLevelModel:
    return FirstLevelModel(mask_img=data["mask"], **kwargs).fit(runs or _runs(data), design_matrices=_designs(data))


def _maps(model) -> dict:
    out = {k: np.asarray(v.dataobj) for k, v in model.compute_contrast([1, 0, 0, 0], output_type="all").items()}
    out["F"] = np.asarray(model.compute_contrast(np.eye(8)[:3], output_type="z_score").dataobj)
    return out


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def clean(rdata, tmp_path_factory) -> dict:
    store = tmp_path_factory.mktemp("clean") / "fit.zarr"
    _fit(rdata).to_zarr(store)
    return _maps(open_model(store))


def test_resume_skips_complete_runs(rdata, clean, tmp_path):
    store = tmp_path / "fit.zarr"
    first = _fit(rdata).to_zarr(store)
    assert first.written == [0, 1] and first.reused == []
    groups = {n: os.stat(store / n).st_mtime_ns for n in os.listdir(store) if n.startswith("run")}
    again = _fit(rdata)
    summary = again.to_zarr(store, resume=True)
    assert summary.written == [] and summary.reused == [0, 1]
    assert {n: os.stat(store / n).st_mtime_ns for n in os.listdir(store) if n.startswith("run")} == groups
    _same(clean, _maps(again))  # the model now reads its fit from the store
    _same(clean, _maps(open_model(store)))
    with pytest.raises(FileExistsError, match="resume=True"):
        _fit(rdata).to_zarr(store)


def test_changed_input_or_parameters_refit_only_what_changed(rdata, clean, tmp_path):
    store = tmp_path / "fit.zarr"
    copy = tmp_path / "run2.nii"
    copy.write_bytes(Path(rdata["func2"]).read_bytes())
    runs = [rdata["func1"], str(copy)]
    _fit(rdata, runs).to_zarr(store)
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: mtime changed
    summary = _fit(rdata, runs).to_zarr(store, resume=True)
    assert summary.written == [1] and summary.reused == [0]
    _same(clean, _maps(open_model(store)))
    summary = _fit(rdata, runs, noise_model="ols").to_zarr(store, resume=True)
    assert summary.written == [0, 1]
    with pytest.raises(AssertionError):
        _same(clean, _maps(open_model(store)))
    assert open_model(store).noise_model == "ols"
    assert len([n for n in os.listdir(store) if n.startswith("run")]) == 2  # superseded groups deleted


def test_every_fit_parameter_enters_the_resume_key(rdata, tmp_path):
    """diagnostic_lags is an __init__ parameter: stored, reopened, and part of the key."""
    store = tmp_path / "fit.zarr"
    _fit(rdata).to_zarr(store)
    summary = _fit(rdata, diagnostic_lags=2).to_zarr(store, resume=True)
    assert summary.written == [0, 1] and summary.reused == []
    reopened = open_model(store)
    assert reopened.diagnostic_lags == 2
    diagnostics = reopened.whitening_diagnostics(output_type="dataset")
    assert list(diagnostics["acf_lag"].values) == [1, 2]
    assert _fit(rdata, diagnostic_lags=2).to_zarr(store, resume=True).reused == [0, 1]


def test_resume_an_opened_model_keeps_its_keys(rdata, clean, tmp_path):
    store = tmp_path / "fit.zarr"
    _fit(rdata).to_zarr(store)
    copy = tmp_path / "copy.zarr"
    open_model(store).to_zarr(copy)
    assert complete_run_keys(copy).keys() == complete_run_keys(store).keys()
    summary = _fit(rdata).to_zarr(copy, resume=True)
    assert summary.reused == [0, 1]
    _same(clean, _maps(open_model(copy)))


def test_format_version_is_checked(rdata, tmp_path):
    store = tmp_path / "fit.zarr"
    _fit(rdata, noise_model="ols").to_zarr(store)
    root = json.loads((store / "zarr.json").read_text())
    root["attributes"]["daskglm_format_version"] = 99
    (store / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match="99"):
        open_model(store)


def test_half_written_run_is_not_complete(rdata, tmp_path):
    store = tmp_path / "fit.zarr"
    pending = _fit(rdata).to_zarr(store, compute=False)
    # before computing: only hidden temporaries (and the writer's lock and claim), no complete run,
    # no commit
    assert complete_run_keys(store) == {}
    assert all(n.startswith((".tmp-", ".daskglm-")) for n in os.listdir(store))
    with pytest.raises(StoreError, match="not a complete"):
        open_model(store)
    pending.compute()
    assert len(complete_run_keys(store)) == 2
    open_model(store)


INTERRUPTED = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.simplefilter("ignore")
    import dask
    from dask.callbacks import Callback
    from threadpoolctl import threadpool_limits
    from daskglm import FirstLevelModel

    runs, designs, mask, store = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3], sys.argv[4]

    class SlowAfterFirstRun(Callback):
        # the user's slow machine: after a run group is committed, the next takes a while
        def _posttask(self, key, result, dsk, state, worker_id):
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith("_finalize_group") and str(result).startswith("run"):
                print("run complete", result, flush=True)
                time.sleep(60)

    with threadpool_limits(1), dask.config.set(scheduler="synchronous"), SlowAfterFirstRun():
        model = FirstLevelModel(mask_img=mask).fit(runs, design_matrices=designs)
        model.to_zarr(store)
    print("finished", flush=True)
    """
)


def test_interrupted_fit_resumes_to_identical_results(rdata, clean, tmp_path):
    store = tmp_path / "fit.zarr"
    script = tmp_path / "fit.py"
    script.write_text(INTERRUPTED)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, str(script), ",".join(_runs(rdata)), ",".join(_designs(rdata)),
         rdata["mask"], str(store)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    with sigkilled_at_exit(proc):  # killed mid-fit
        line = proc.stdout.readline()  # blocks until the first run group is complete
        assert line.startswith("run complete"), line + proc.stderr.read()[-2000:]
    assert proc.returncode == -signal.SIGKILL
    # killed mid-fit: one run complete, nothing committed, readers refuse the store
    assert len(complete_run_keys(store)) == 1
    with pytest.raises(StoreError):
        open_model(store)
    with pytest.raises(FileExistsError):
        _fit(rdata).to_zarr(store)
    summary = _fit(rdata).to_zarr(store, resume=True)
    assert len(summary.reused) == 1 and len(summary.written) == 1
    _same(clean, _maps(open_model(store)))
    assert not [n for n in os.listdir(store) if n.startswith(".tmp-")]
    for name in os.listdir(store):
        if name.startswith("run"):
            assert json.loads((store / name / "zarr.json").read_text())["attributes"][RUN_MARKER] is True


class _CtrlCAfterFirstRun:
    """Ctrl-C (KeyboardInterrupt in the scheduler's thread) as soon as one run's group is complete."""

    def __enter__(self):
        from dask.callbacks import Callback

        class CtrlC(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                name = key[0] if isinstance(key, tuple) else key
                if str(name).startswith("_finalize_group") and str(result).startswith("run"):
                    raise KeyboardInterrupt

        self.callback = CtrlC()
        self.callback.__enter__()
        return self

    def __exit__(self, *exc):
        self.callback.__exit__(*exc)


def test_ctrl_c_keeps_finished_runs_for_resume(rdata, clean, tmp_path):
    """In-process Ctrl-C during to_zarr: the run already fitted stays complete; resume=True fits only the other."""
    store = tmp_path / "fit.zarr"
    with pytest.raises(KeyboardInterrupt), _CtrlCAfterFirstRun():
        _fit(rdata).to_zarr(store)
    assert len(complete_run_keys(store)) == 1 and not [n for n in os.listdir(store) if n.startswith(".tmp-")]
    with pytest.raises(StoreError):
        open_model(store)  # nothing committed
    with pytest.raises(FileExistsError, match="holds no committed fit"):
        _fit(rdata).to_zarr(store)
    summary = _fit(rdata).to_zarr(store, resume=True)
    assert len(summary.reused) == 1 and len(summary.written) == 1
    _same(clean, _maps(open_model(store)))
    assert len([n for n in os.listdir(store) if n.startswith("run")]) == 2


def test_interrupted_overwrite_keeps_the_old_fit(rdata, clean, tmp_path):
    """Ctrl-C while replacing a store: the old fit stays readable; the new run fitted is kept for resume."""
    store = tmp_path / "fit.zarr"
    _fit(rdata, noise_model="ols").to_zarr(store)
    old = _maps(open_model(store))
    with pytest.raises(KeyboardInterrupt), _CtrlCAfterFirstRun():
        _fit(rdata).to_zarr(store, overwrite=True)
    _same(old, _maps(open_model(store)))
    summary = _fit(rdata).to_zarr(store, resume=True)
    assert len(summary.reused) == 1 and len(summary.written) == 1
    _same(clean, _maps(open_model(store)))


# ------------------------------------------------------ runs of unequal widths
def test_unequal_runs_through_a_store_equal_nilearn(unequal):
    from nilearn.glm.first_level import FirstLevelModel as NilearnModel

    assert unequal["designs"][0].shape[1] != unequal["designs"][1].shape[1]
    reference = _z(NilearnModel(mask_img=unequal["mask"], minimize_memory=True).fit(
        unequal["runs"], design_matrices=unequal["designs"]))
    model = FirstLevelModel(mask_img=unequal["mask"]).fit(unequal["runs"],
                                                          design_matrices=unequal["designs"])
    store = unequal["root"] / "fit.zarr"
    model.to_zarr(store)  # not persisted: the model reads its fit back from the store
    np.testing.assert_allclose(_z(model), reference, atol=1e-8)
    reopened = open_model(store)
    assert [d.shape for d in reopened.design_matrices_] == [d.shape for d in unequal["designs"]]
    np.testing.assert_allclose(_z(reopened), reference, atol=1e-8)
    # resume: both runs reused, same maps
    summary = FirstLevelModel(mask_img=unequal["mask"]).fit(
        unequal["runs"], design_matrices=unequal["designs"]).to_zarr(store, resume=True)
    assert summary.reused == [0, 1] and summary.written == []
    np.testing.assert_allclose(_z(open_model(store)), reference, atol=1e-8)


def test_unequal_runs_persisted_model_to_store(unequal, tmp_path):
    model = FirstLevelModel(mask_img=unequal["mask"], noise_model="ols").fit(
        unequal["runs"], design_matrices=unequal["designs"]).persist()
    model.to_zarr(tmp_path / "fit.zarr")
    np.testing.assert_allclose(_z(open_model(tmp_path / "fit.zarr")), _z(model), atol=1e-10)
