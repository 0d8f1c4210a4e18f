"""The shape of the dask graphs.

Design-sized inputs enter once, repeated tasks stay small, and task names say what the
tasks do (what the dashboard shows).
"""

from __future__ import annotations

import collections
import warnings

import cloudpickle
import dask
import numpy as np
from dask.utils import key_split

from daskglm import FirstLevelModel
from daskglm.io.dataarray import open_run
from tests.conftest import load_designs, load_named_designs


def test_design_enters_graph_once(fiac_small):
    """The design is one key, not pickled into every task."""
    import cloudpickle

    designs = load_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"], chunks={"time": 5, "voxel": 50})
    model.fit(fiac_small["func1"], design_matrices=designs[0])
    graph = dict(model.results_["beta"].data.__dask_graph__())
    design_bytes = designs[0].to_numpy().nbytes
    sizes = sorted(len(cloudpickle.dumps(task)) for task in graph.values())
    assert len(graph) > 40
    # only the design-holding keys may be as large as the design itself
    assert sum(s >= design_bytes for s in sizes) <= 4, sizes[-6:]


def _fit(data, **kwargs) -> FirstLevelModel:
    return FirstLevelModel(mask_img=data["mask"], **kwargs).fit(
        [data["func1"], data["func2"]], design_matrices=load_designs(data)
    )


def _graph(model) -> dict:
    ds = model.results_
    arrays = [ds[v].data for v in ("beta", "dispersion", "ar_coef", "cov_index")]
    return dict(dask.base.collections_to_expr(arrays).__dask_graph__())


def _prefix(key) -> str:
    name = key[0] if isinstance(key, tuple) else key
    return str(name).rsplit("-", 1)[0]


def test_graph_does_not_repeat_the_design(fiac_small):
    """Design-sized inputs enter the graph once per run, never once per voxel block."""
    few = _fit(fiac_small, chunks={"voxel": 500})
    many = _fit(fiac_small, chunks={"voxel": 20})
    n_few = len(few.results_["beta"].data.chunks[-1])
    n_many = len(many.results_["beta"].data.chunks[-1])
    assert n_many >= 10 * n_few
    X = few.design_matrices_[0].to_numpy(dtype=np.float64)
    layouts = (X.tobytes(order="C"), X.tobytes(order="F"))  # however the graph holds it
    counts = []
    for model in (few, many):
        blob = cloudpickle.dumps(_graph(model))
        counts.append(sum(blob.count(b) for b in layouts))
    assert 1 <= counts[0] <= 3 and counts[1] == counts[0], counts
    # every task that is repeated per voxel block pickles small (no captured arrays)
    graph = _graph(many)
    per_prefix: dict[str, list[int]] = {}
    for key, task in graph.items():
        per_prefix.setdefault(_prefix(key), []).append(len(cloudpickle.dumps(task)))
    repeated = {p: max(v) for p, v in per_prefix.items() if len(v) >= n_many}
    assert repeated, sorted(per_prefix)
    assert max(repeated.values()) < 4_000, repeated
    total = sum(sum(v) for v in per_prefix.values())
    # dask's own per-block bookkeeping (rechunk pieces, blockwise tasks) is a few kB;
    # a captured design or stats array would add far more per block
    assert total < 2 * n_many * 20_000 + 200_000, (total, n_many)


#: dask task names that say nothing on the dashboard
OPAQUE_TASKS = {"getattr", "from-value", "call_on_stats", "call-on-stats"}


def _task_names(collection) -> collections.Counter:
    return collections.Counter(key_split(k) for k in dict(collection.__dask_graph__()))


def test_dashboard_task_names_are_meaningful(fiac_small):
    designs = load_named_designs(fiac_small)
    model = FirstLevelModel(mask_img=fiac_small["mask"]).fit(
        [fiac_small["func1"], fiac_small["func2"]], design_matrices=designs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        z = model.contrast_maps([1, -1, 0, 0], volume=True)["z_score"]
    for names in (_task_names(model.results_.beta.data), _task_names(z.data),
                  _task_names(open_run(fiac_small["func1"]).data)):
        assert not OPAQUE_TASKS & set(names), names
