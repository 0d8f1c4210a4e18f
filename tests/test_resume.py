"""Resuming fits: complete runs are kept, an interrupted fit finishes identical to a clean one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from daskglm import FirstLevelModel, open_model
from daskglm.datasets import make_fiac_like
from daskglm.store.zarr import RUN_MARKER, StoreError, complete_run_keys


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
    # before computing: only hidden temporaries, no complete run, no commit
    assert complete_run_keys(store) == {}
    assert all(n.startswith(".tmp-") for n in os.listdir(store))
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
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    try:
        line = proc.stdout.readline()  # blocks until the first run group is complete
        assert line.startswith("run complete"), line + proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
