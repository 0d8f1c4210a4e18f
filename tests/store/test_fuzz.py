"""Fuzzing the store reader over tampered attributes and array metadata.

Each example copies a good store, replaces one attribute (of the root, a run
group or the shared group), one field inside a JSON-text attribute, or one
field of an array's ``zarr.json`` with an arbitrary JSON value, then opens the
store and computes a contrast.  The only exception allowed is ``StoreError``
(``ContrastError`` too when the column names themselves were changed); the
process must not grow by hundreds of MB; and nothing outside the store may be
opened (an audit hook watches for a sibling "victim" store).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daskglm import FirstLevelModel, open_model
from daskglm.errors import ContrastError, StoreError

ARRAYS = ["beta", "dispersion", "ar_coef", "cov_index", "cov_table", "design", "n_scans", "n_regressors",
          "df_residuals"]
ARRAY_FIELDS = [("shape",), ("chunk_grid", "configuration", "chunk_shape"), ("data_type",), ("fill_value",),
                ("dimension_names",), ("codecs",), ("chunk_key_encoding",), ("node_type",), ("zarr_format",),
                ("chunk_grid",), ("storage_transformers",), ("codecs", 0), ("codecs", -1)]
ROOT_ATTRS = ["daskglm_runs", "daskglm_run_keys", "daskglm_shared", "model_params", "design_columns",
              "affine", "daskglm_format", "daskglm_format_version"]
JSON_TEXT = ["model_params", "design_columns", "affine"]
PARAMS = ["noise_model", "whitening", "signal_scaling", "smoothing_fwhm", "t_r", "hrf_model", "bogus"]

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**15), st.floats(allow_nan=True),
              st.sampled_from(["", "ar99", "ols", "ar3", "..", "../victim.zarr", "/", "/etc/passwd",
                               "run0", "c", "float64", "int8", "bool", "crc32c", "x" * 300, "exact"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["name", "configuration", "chunk_shape", "separator", "a"]), inner, max_size=3)),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(3)
    import nibabel as nib

    runs, designs = [], []
    for n, p in ((30, 4), (40, 5)):
        X = pd.DataFrame(np.c_[rng.normal(size=(n, p - 1)), np.ones(n)],
                         columns=["a", "b", *[f"c{i}" for i in range(p - 3)], "constant"])
        bold = 100 + X.to_numpy() @ rng.normal(size=(p, 24)) + rng.normal(size=(n, 24))
        runs.append(nib.Nifti1Image(bold.T.reshape(4, 3, 2, n), np.eye(4)))
        designs.append(X)
    good = root / "good.zarr"
    FirstLevelModel(mask_img=False).fit(runs, design_matrices=designs).to_zarr(good)
    shutil.copytree(good, root / "victim.zarr")
    return {"root": root, "good": good, "victim": root / "victim.zarr"}


class _OpenWatch:
    """An audit hook recording files opened under a watched folder (installed once)."""

    watched: Path | None = None
    seen: list[str] = []

    @classmethod
    def hook(cls, event, args):
        if event == "open" and cls.watched is not None and args and isinstance(args[0], (str, Path)):
            if str(args[0]).startswith(str(cls.watched)):
                cls.seen.append(str(args[0]))


sys.addaudithook(_OpenWatch.hook)


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _tamper(store: Path, target, value) -> str:
    kind, *where = target
    if kind == "raw":  # a metadata document replaced by other bytes
        docs = sorted(store.rglob("zarr.json"))
        docs[where[0] % len(docs)].write_bytes(where[1])
        return "raw"
    root_meta = json.loads((store / "zarr.json").read_text())
    attrs = root_meta["attributes"]
    if kind == "root":
        (name,) = where
        attrs[name] = value
        (store / "zarr.json").write_text(json.dumps(root_meta))
        return name
    if kind == "json":
        name, key = where
        inner = json.loads(attrs[name])
        if isinstance(inner, dict):
            inner[key] = value
        else:
            inner[hash(key) % len(inner)] = value
        attrs[name] = json.dumps(inner)
        (store / "zarr.json").write_text(json.dumps(root_meta))
        return name
    group = attrs["daskglm_shared"] if kind == "shared" else attrs["daskglm_runs"][int(where[0]) % 2]
    if kind in ("run", "shared") and where[-1] == "attrs":
        meta_path = store / group / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta["attributes"][where[1]] = value
        meta_path.write_text(json.dumps(meta))
        return "group"
    array = "mask" if kind == "shared" else where[1]
    meta_path = store / group / array / "zarr.json"
    meta = json.loads(meta_path.read_text())
    try:
        _set(meta, where[-1], value)
    except (KeyError, IndexError, TypeError):
        meta[where[-1][0]] = value
    meta_path.write_text(json.dumps(meta))
    return "array"


targets = st.one_of(
    st.tuples(st.just("root"), st.sampled_from(ROOT_ATTRS)),
    st.tuples(st.just("json"), st.sampled_from(JSON_TEXT), st.sampled_from(PARAMS)),
    st.tuples(st.just("run"), st.integers(0, 1), st.sampled_from(["daskglm_run_complete", "daskglm_run_key"]),
              st.just("attrs")),
    st.tuples(st.just("run"), st.integers(0, 1), st.sampled_from(ARRAYS), st.sampled_from(ARRAY_FIELDS)),
    st.tuples(st.just("shared"), st.just(0), st.just("mask"), st.sampled_from(ARRAY_FIELDS)),
    st.tuples(st.just("raw"), st.integers(0, 40), st.one_of(st.binary(max_size=64), st.sampled_from(
        [b"[]", b"{}", b"null", b'{"node_type": "array"}', b'{"zarr_format": 3, "node_type": "group"}']))),
)


#: More examples locally: DASKGLM_FUZZ_EXAMPLES=1000 pytest tests/store/test_fuzz.py
EXAMPLES = int(os.environ.get("DASKGLM_FUZZ_EXAMPLES", "60"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=targets, value=values)
def test_tampered_store_raises_only_store_error(stores, target, value):
    copy = stores["root"] / f"case-{uuid.uuid4().hex[:8]}.zarr"
    shutil.copytree(stores["good"], copy)
    try:
        what = _tamper(copy, target, value)
        allowed = (StoreError, ContrastError) if what == "design_columns" else (StoreError,)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _OpenWatch.watched, _OpenWatch.seen = stores["victim"], []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                z = open_model(copy).compute_contrast("a - b").get_fdata()
            assert z.shape == (4, 3, 2)
        except allowed as err:
            assert str(copy) in str(err) or isinstance(err, ContrastError), err
        finally:
            _OpenWatch.watched = None
        assert not _OpenWatch.seen, f"read outside the store: {_OpenWatch.seen[:3]}"
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 300, f"peak RSS grew by {grown_mb:.0f} MB"
    finally:
        shutil.rmtree(copy, ignore_errors=True)
