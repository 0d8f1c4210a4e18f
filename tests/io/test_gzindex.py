"""Random access into .nii.gz runs through a cached seek index (optional rapidgzip).

The indexed path must give the same volumes as a front-to-back read and the
same sufficient statistics as the streamed path (which is what nilearn's
numbers are checked against elsewhere), and its index must be cached per file
version.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest

from daskglm.data.fiac import fiac_affine
from daskglm.data.volumes import write_nifti_stream
from daskglm.errors import NiftiInputError
from daskglm.graph import stream
from daskglm.graph.stream import masker_key, run_stats
from daskglm.io import gzindex
from daskglm.io.nifti import FileRunSource
from daskglm.kernels.sufficient_stats import stacked_design
from daskglm.space.volume import VolumeSpace

pytest.importorskip("rapidgzip")

SHAPE = (14, 12, 10)
N_SCANS = 157  # > 3 x 48 scans: three pieces


@pytest.fixture
def index_cache(tmp_path, monkeypatch):
    cache = tmp_path / "index-cache"
    monkeypatch.setenv("DASKGLM_GZIP_INDEX_DIR", str(cache))
    return cache


def _run(path, seed=0, n_scans=N_SCANS, shape=SHAPE):
    rng = np.random.default_rng(seed)
    vols = [(500 + 30 * rng.standard_normal(shape)).astype(np.float32) for _ in range(n_scans)]
    write_nifti_stream(path, (*shape, n_scans), fiac_affine(shape, 3.0), iter(vols), t_r=2.0)
    return np.stack(vols)  # (t, x, y, z)


def test_indexed_reads_equal_the_data(tmp_path, index_cache):
    data = _run(tmp_path / "run.nii.gz")
    source = FileRunSource(tmp_path / "run.nii.gz")
    assert source.sequential and source.indexable
    index = source.build_index()
    assert index.startswith(str(index_cache))
    for t0, t1 in [(0, 5), (41, 42), (60, N_SCANS)]:
        got = source.read_indexed(t0, t1, index)
        np.testing.assert_array_equal(got, data[t0:t1].transpose(0, 3, 2, 1))
    for t, chunk in source.iter_indexed(37, 50, 4, index):
        np.testing.assert_array_equal(chunk, data[t : min(t + 4, 50)].transpose(0, 3, 2, 1))
    with pytest.raises(NiftiInputError, match="truncated"):
        source.read_indexed(N_SCANS - 2, N_SCANS + 1, index)
    with pytest.raises(NiftiInputError, match="truncated"):
        list(source.iter_indexed(N_SCANS - 5, N_SCANS + 2, 4, index))


def test_partial_index_reads_past_its_end_and_full_index_wins(tmp_path, index_cache):
    data = _run(tmp_path / "run.nii.gz", n_scans=60)
    source = FileRunSource(tmp_path / "run.nii.gz")
    partial = source.build_index(upto_scan=10)
    assert ".upto" in partial
    np.testing.assert_array_equal(source.read_indexed(8, 60, partial), data[8:60].transpose(0, 3, 2, 1))
    full = source.build_index()
    assert ".upto" not in full
    assert source.build_index(upto_scan=10) == full  # a complete index serves every cut


def test_index_is_cached_per_file_version(tmp_path, index_cache):
    path = tmp_path / "run.nii.gz"
    _run(path, n_scans=20)
    first = FileRunSource(path).build_index()
    stamp = index_cache.joinpath(first.split("/")[-1]).stat().st_mtime_ns
    assert FileRunSource(path).build_index() == first  # found, not rebuilt
    assert index_cache.joinpath(first.split("/")[-1]).stat().st_mtime_ns == stamp
    data = _run(path, seed=3, n_scans=21)  # a new version of the file: a new index
    source = FileRunSource(path)
    second = source.build_index()
    assert second != first
    np.testing.assert_array_equal(source.read_indexed(19, 21, second), data[19:21].transpose(0, 3, 2, 1))


@pytest.mark.parametrize("fwhm, per_volume", [(None, False), (5.0, False), (5.0, True)])
def test_indexed_statistics_equal_the_streamed_ones(tmp_path, index_cache, fwhm, per_volume, monkeypatch):
    _run(tmp_path / "run.nii.gz", seed=1)
    source = FileRunSource(tmp_path / "run.nii.gz")
    mask = np.zeros(SHAPE, bool)
    mask[2:12, 1:10, 2:9] = True
    affine = source.affine
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.standard_normal((N_SCANS, 3)), np.ones(N_SCANS)])
    n_lags = 2
    masker = masker_key(VolumeSpace(mask, affine, fwhm), f"m{fwhm}")
    stack = stacked_design(X, n_lags)
    monkeypatch.setattr(stream, "worker_threads", lambda: 3)  # three pieces
    streamed = run_stats(source, masker, stack, n_lags, 16, per_volume, "s", background=False)
    indexed = run_stats(source, masker, stack, n_lags, 16, per_volume, "i", background=True)
    keys = dict(indexed.dask) if hasattr(indexed, "dask") else {}
    assert any(str(k).startswith("gzip-index-") for k in keys)  # really split at the index ...
    assert sum(str(k).startswith("_stream_stats") for k in keys) == 3  # ... into three pieces
    assert not any(str(k).startswith("gzip-index-") for k in dict(streamed.dask))
    a, b = dask.compute(streamed, indexed, scheduler="threads")
    # the first piece streamed from the start; the index stops at the last cut (scan 104 of 157: cuts at multiples of 4)
    assert [p.name.split(".")[-2] for p in index_cache.iterdir()] == [f"upto{352 + 104 * 4 * 14 * 12 * 10}"]
    other = b.arrays()
    assert set(other) == set(a.arrays())
    for name, value in a.arrays().items():
        # per-volume scaling happens in float32 (nilearn's dtype) before the float64 sums, whose
        # batching differs between the paths: agreement to float32 rounding of the scaled data
        atol = 1e-5 * np.abs(value).max() if per_volume else 0.0
        np.testing.assert_allclose(other[name], value, rtol=1e-9, atol=atol, err_msg=name)


def test_without_rapidgzip_the_run_is_streamed(tmp_path, index_cache, monkeypatch):
    _run(tmp_path / "run.nii.gz", n_scans=100)
    source = FileRunSource(tmp_path / "run.nii.gz")
    monkeypatch.setattr(gzindex, "available", lambda: False)
    assert not source.indexable
    X = np.ones((100, 1))
    monkeypatch.setattr(stream, "worker_threads", lambda: 4)
    stats = run_stats(source, masker_key(VolumeSpace(np.ones(SHAPE, bool), source.affine), "m"),
                      stacked_design(X, 1), 1, 8, True, "t", background=True)
    assert not any(str(k).startswith("gzip-index-") for k in dict(stats.dask))


def test_unwritable_cache_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DASKGLM_GZIP_INDEX_DIR", str(blocked / "cache"))
    monkeypatch.setattr(gzindex.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    data = _run(tmp_path / "run.nii.gz", n_scans=12)
    source = FileRunSource(tmp_path / "run.nii.gz")
    index = source.build_index()
    assert index.startswith(str(tmp_path / "tmp" / "daskglm-gzip-index"))
    np.testing.assert_array_equal(source.read_indexed(10, 12, index), data[10:12].transpose(0, 3, 2, 1))


def test_shared_or_foreign_cache_folders_are_not_trusted(tmp_path, monkeypatch):
    """Indexes are imported as trusted: a cache another user could write (or owns) is never used."""
    import os
    import stat

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(gzindex.tempfile, "gettempdir", lambda: str(tmp))
    data = _run(tmp_path / "run.nii.gz", n_scans=12)
    source = FileRunSource(tmp_path / "run.nii.gz")
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("DASKGLM_GZIP_INDEX_DIR", str(shared))
    index = source.build_index()
    private = tmp / f"daskglm-gzip-index-{os.getuid()}"
    assert index.startswith(str(private) + os.sep) and not any(shared.iterdir())
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    np.testing.assert_array_equal(source.read_indexed(10, 12, index), data[10:12].transpose(0, 3, 2, 1))
    # a squatted per-user fallback (world-writable, with a planted index) is ignored too
    for file in private.iterdir():
        file.unlink()
    private.chmod(0o777)
    planted = private / gzindex.index_path(tmp_path / "run.nii.gz").name
    planted.write_bytes(b"not an index")
    index = source.build_index()
    assert not index.startswith(str(private) + os.sep) and os.path.basename(os.path.dirname(index)).startswith(
        f"daskglm-gzip-index-{os.getuid()}-")
    np.testing.assert_array_equal(source.read_indexed(10, 12, index), data[10:12].transpose(0, 3, 2, 1))
    assert gzindex.private_dir(tmp_path / "mine") and not gzindex.private_dir(shared)
    if os.getuid() == 0:  # a folder of another user, even if root could write it
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 12345, 12345)
        assert not gzindex.private_dir(foreign)
