"""Schema validation on open: tampered attributes of a store are store errors naming the field.

Model parameters of the wrong type or out of range, a ``design_columns`` list
shorter than the run's regressors, and run group names that leave the store
(absolute, ``..``, nested) are refused by ``open_model`` with a
:class:`~daskglm.errors.StoreError` naming the store and the field.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from daskglm import open_model
from daskglm.errors import StoreError
from tests._unequal import _root, _set_param, _set_root_attr


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("noise_model", 5, "noise_model"),
    ("noise_model", "ar99", "noise_model"),
    ("whitening", ["x"], "whitening"),
    ("signal_scaling", "yes", "signal_scaling"),
    ("smoothing_fwhm", -3, "smoothing_fwhm"),
])
def test_tampered_parameters(store, name, value, fragment):
    _set_param(store, name, value)
    start = time.perf_counter()
    with pytest.raises(StoreError, match=fragment) as info:
        open_model(store)
    assert str(store) in str(info.value) and time.perf_counter() - start < 5


def test_short_design_columns(store):
    cols = json.loads(_root(store)["attributes"]["design_columns"])
    cols[1] = cols[1][:-1]
    _set_root_attr(store, "design_columns", json.dumps(cols))
    with pytest.raises(StoreError, match="design_columns"):
        open_model(store)


@pytest.mark.parametrize("kind", ["absolute", "parent", "nested"])
def test_group_names_must_stay_inside_the_store(pristine, tmp_path, kind):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    shutil.copytree(pristine, a)
    shutil.copytree(pristine, b)
    for path in (b / n for n in _root(b)["attributes"]["daskglm_runs"]):  # b's groups: other names
        path.rename(path.with_name(path.name.replace("run", "run9", 1)))
    meta = _root(b)
    meta["attributes"]["daskglm_runs"] = [n.replace("run", "run9", 1) for n in meta["attributes"]["daskglm_runs"]]
    (b / "zarr.json").write_text(json.dumps(meta))
    open_model(b)  # b is a valid store
    other = _root(b)["attributes"]["daskglm_runs"]
    names = {"absolute": [str(b / n) for n in other], "parent": [f"../b.zarr/{n}" for n in other],
             "nested": [f"x/{n}" for n in other]}[kind]
    _set_root_attr(a, "daskglm_runs", names)
    with pytest.raises(StoreError, match="daskglm_runs"):
        open_model(a)

