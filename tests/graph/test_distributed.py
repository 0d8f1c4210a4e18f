"""The same fit on a real dask.distributed LocalCluster (worker processes), and worker loss."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import dask
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from daskglm import FirstLevelModel, open_model
from daskglm.data.fiac import make_fiac_like
from tests.conftest import load_designs

distributed = pytest.importorskip("distributed")

CONTRASTS = {"t": [1, 0, 0, 0], "F": np.eye(9)[:4]}


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, restarted by their nannies if killed."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.CRITICAL,
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def _fit(data, **kwargs) -> FirstLevelModel:
    return FirstLevelModel(mask_img=data["mask"], **kwargs).fit(
        [data["func1"], data["func2"]], design_matrices=load_designs(data)
    )


def _maps(model) -> dict[str, np.ndarray]:
    out = {}
    for name, con in CONTRASTS.items():
        for kind, img in model.compute_contrast(con, output_type="all").items():
            out[f"{name}-{kind}"] = np.asarray(img.dataobj)
    return out


def _local_maps(data, **kwargs):
    # workers run single-threaded BLAS (threads_per_worker=1); so does the reference,
    # otherwise multi-threaded BLAS reductions may differ in the last bit
    with dask.config.set(scheduler="threads"), threadpool_limits(1):
        return _maps(_fit(data, **kwargs))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_cluster_maps_equal_local(fiac_small, client, tmp_path):
    local = _local_maps(fiac_small)
    with distributed.get_task_stream(client) as stream:
        model = _fit(fiac_small)
        on_cluster = _maps(model)
    # the fit really ran on the worker processes, not in this one
    names = {str(t["key"][0] if isinstance(t["key"], tuple) else t["key"]).lower() for t in stream.data}
    assert any("stats" in n for n in names), sorted(names)[:8]  # the streaming pass over the runs
    workers = {t["worker"] for t in stream.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])
    _assert_same(local, on_cluster)

    # the store is written by the workers, reopened and contrasted on the cluster
    store = tmp_path / "fit.zarr"
    summary = _fit(fiac_small).to_zarr(store)
    assert summary.written == [0, 1]
    _assert_same(local, _maps(open_model(store)))


def test_persist_keeps_the_fit_on_the_cluster(fiac_small, client):
    model = _fit(fiac_small, noise_model="ols").persist()
    futures = distributed.futures_of(model.results_["beta"].data)
    assert futures  # persisted on the cluster (asynchronously), not pulled into this process
    distributed.wait(futures)
    assert all(f.status == "finished" for f in futures)
    _assert_same(_local_maps(fiac_small, noise_model="ols"), _maps(model))


@pytest.fixture(scope="module")
def fiac_medium(tmp_path_factory):
    """Big enough that a 2-worker fit takes a few seconds."""
    out = tmp_path_factory.mktemp("fiac_medium")
    return make_fiac_like(out, shape=(40, 48, 40), n_scans=150, seed=3, compress=False)


def test_worker_sigkill_mid_fit_gives_identical_maps(fiac_medium, client):
    data = fiac_medium
    chunks = {"time": 10, "voxel": 4000}
    local = _local_maps(data, chunks=chunks)
    client.wait_for_workers(2)
    before = client.run(os.getpid)
    victim_addr, victim_pid = sorted(before.items())[0]
    killed = {}

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            processing = client.processing()
            if processing.get(victim_addr):
                time.sleep(0.3)  # let it get into the work
                os.kill(victim_pid, signal.SIGKILL)
                killed["at"] = time.monotonic()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    model = _fit(data, chunks=chunks)
    on_cluster = _maps(model)
    finished = time.monotonic()
    thread.join(5)
    assert "at" in killed, "the worker was never seen processing"
    assert killed["at"] < finished
    client.wait_for_workers(2, timeout=60)
    after = client.run(os.getpid)
    assert victim_pid not in after.values()  # the nanny started a new process
    _assert_same(local, on_cluster)
