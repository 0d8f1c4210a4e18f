"""graph/resources: the BLAS limit held for whole local computations, and the worker-thread rule."""

from __future__ import annotations

import dask
import dask.array
import numpy as np
from threadpoolctl import threadpool_info

from daskglm.graph.resources import compute, in_dask_worker, persist


def _blas_threads(_=None) -> int:
    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def test_compute_holds_one_blas_thread_on_the_local_thread_pool_and_restores_it():
    before = _blas_threads()
    tasks = [dask.delayed(_blas_threads)(i) for i in range(4)]
    with dask.config.set(scheduler="threads", num_workers=2):
        assert set(compute(*tasks)) == {1}
    assert _blas_threads() == before
    with dask.config.set(scheduler="sync"):  # one task at a time: BLAS keeps its threads
        assert compute(*tasks) == (before,) * 4


def test_persist_runs_under_the_limit():
    arr = dask.array.from_delayed(dask.delayed(lambda: np.array([_blas_threads()]))(), (1,), int)
    with dask.config.set(scheduler="threads", num_workers=2):
        (done,) = persist(arr)
    assert int(done.compute(scheduler="sync")[0]) == 1


def test_in_dask_worker_only_inside_a_distributed_task():
    from distributed import Client, LocalCluster

    assert not in_dask_worker()
    assert dask.delayed(in_dask_worker)().compute(scheduler="threads") is False
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert client.submit(in_dask_worker).result() is True


def test_local_computes_of_daskglm_graphs_hold_one_blas_thread_for_plain_dask_compute():
    """After a daskglm graph is built, ``dask.compute`` / ``.values`` (not our ``compute``) get the limit too."""
    from daskglm.graph.resources import limit_blas_on_local_computes

    limit_blas_on_local_computes()
    before = _blas_threads()
    tasks = [dask.delayed(_blas_threads)(i) for i in range(4)]
    with dask.config.set(scheduler="threads", num_workers=2):
        assert set(dask.compute(*tasks)) == {1}
        values = dask.array.from_delayed(dask.delayed(lambda: np.array([_blas_threads()]))(), (1,), int)
        assert np.asarray(values)[0] == 1  # what xarray's .values does
    assert _blas_threads() == before
    with dask.config.set(scheduler="sync"):
        assert dask.compute(*tasks) == (before,) * 4


def test_fit_and_compute_contrast_run_their_own_algebra_with_one_blas_thread(vdata, monkeypatch):
    """Graph building and a contrast's small algebra run in the calling thread with one BLAS thread.

    A multi-threaded BLAS call there wakes OpenBLAS threads that spin ~0.1 CPU-s on cores a
    streaming task is using (seen with ``perf`` as ``blas_thread_server`` after each contrast).
    """
    import pytest

    import daskglm.first_level.model as model_module
    from daskglm import FirstLevelModel

    before = _blas_threads()
    if before == 1:
        pytest.skip("BLAS is single-threaded here already (OPENBLAS_NUM_THREADS=1 or one core)")
    seen = {}
    build_fit, contrast_maps = model_module.build_fit, FirstLevelModel.contrast_maps

    def recording_build_fit(*args, **kwargs):
        seen["fit"] = _blas_threads()
        return build_fit(*args, **kwargs)

    def recording_contrast_maps(self, *args, **kwargs):
        seen["contrast"] = _blas_threads()
        return contrast_maps(self, *args, **kwargs)

    monkeypatch.setattr(model_module, "build_fit", recording_build_fit)
    monkeypatch.setattr(FirstLevelModel, "contrast_maps", recording_contrast_maps)
    model = FirstLevelModel(mask_img=vdata["mask"], noise_model="ols").fit(
        vdata["func1"], design_matrices=vdata["design1"])
    z = model.compute_contrast(np.eye(vdata["design1"].shape[1])[0])
    assert np.isfinite(z.get_fdata()).all()
    assert seen == {"fit": 1, "contrast": 1}
    assert _blas_threads() == before  # the caller's BLAS threads are back
