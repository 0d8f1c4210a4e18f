"""Chunk integrity: missing, corrupt or tampered chunks and array metadata are store errors.

A good two-run store (``store``, ``tests/conftest.py``) with a chunk deleted
(before or after the store is opened), bytes flipped, an integer rewritten out
of range under a valid checksum, a declared shape of 10^18 elements, or its
checksum codec removed: each is a :class:`~daskglm.errors.StoreError` naming
the array (and the chunk), within seconds.  Tampered attributes are in
test_validate, fuzzed attributes and metadata in test_fuzz.
"""

from __future__ import annotations

import json
import time

import pytest

from daskglm import FirstLevelModel, open_model
from daskglm.errors import StoreError
from tests._unequal import _chunks, _root, _run_group, _z


@pytest.mark.parametrize("array", ["beta", "dispersion", "cov_index", "design"])
def test_deleted_chunk_is_an_error(store, array):
    chunk = _chunks(_run_group(store) / array)[0]
    chunk.unlink()
    with pytest.raises(StoreError, match=f"{array}.*missing") as info:
        _z(open_model(store))
    assert str(store) in str(info.value)


def test_deleted_mask_chunk_is_an_error(store):
    shared = store / _root(store)["attributes"]["daskglm_shared"]
    _chunks(shared / "mask")[0].unlink()
    with pytest.raises(StoreError, match="mask"):
        open_model(store)


@pytest.mark.parametrize("array", ["beta", "dispersion", "cov_index", "cov_table"])
def test_flipped_bytes_are_an_error_naming_array_and_chunk(store, array):
    chunk = _chunks(_run_group(store) / array)[0]
    data = bytearray(chunk.read_bytes())
    for i in range(min(8, len(data))):
        data[len(data) // 2 - 4 + i] ^= 0x5A
    chunk.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        _z(open_model(store))
    message = str(info.value)
    assert array in message and "chunk c/" in message and "corrupt" in message


def test_out_of_range_cov_index_with_valid_checksum(unequal, tmp_path):
    """A cov_index rewritten with a valid checksum but an impossible row is still an error."""
    import zarr

    path = tmp_path / "fit.zarr"
    FirstLevelModel(mask_img=unequal["mask"]).fit(unequal["runs"], design_matrices=unequal["designs"]) \
        .to_zarr(path)
    array = zarr.open_array(str(_run_group(path) / "cov_index"), mode="r+", zarr_format=3)
    array[0] = 30000  # int16; the table has 199 rows
    with pytest.raises(StoreError, match=r"cov_index.*outside"):
        _z(open_model(path))


def test_chunk_deleted_after_open_is_an_error(store):
    model = open_model(store)
    _chunks(_run_group(store, 1) / "beta")[0].unlink()
    with pytest.raises(StoreError, match="beta.*missing"):
        _z(model)


def test_huge_declared_shape_is_refused_fast(store):
    meta_path = _run_group(store) / "beta" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [10**9, 10**9]
    meta_path.write_text(json.dumps(meta))
    start = time.perf_counter()
    with pytest.raises(StoreError, match="beta"):
        _z(open_model(store))
    assert time.perf_counter() - start < 5


def test_removed_checksum_codec_is_refused(store):
    meta_path = _run_group(store) / "dispersion" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = meta["codecs"][:-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="crc32c"):
        open_model(store)

