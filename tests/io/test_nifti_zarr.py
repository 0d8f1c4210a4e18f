"""NIfTI-Zarr runs: read what niizarr writes, write what niizarr reads, fit bit for bit as the .nii.gz."""

from __future__ import annotations

import hashlib
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskglm import FirstLevelModel, open_run
from daskglm.errors import NiftiInputError
from daskglm.io.nifti import FileRunSource
from daskglm.io.nifti_zarr import NiftiZarrRunSource
from daskglm.io.nifti_zarr_write import convert_runs, default_time_chunk, to_nifti_zarr, zarr_run_name
from daskglm.io.runs import as_run_source

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _run(path, shape=(7, 8, 6), n=23, dtype=np.float32, slope=None, seed=0, t_r=2.5):
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((*shape, n)) * 50 + 800).astype(dtype)
    affine = np.diag([3.0, 2.5, 3.5, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = t_r
    if slope is not None:
        img.header.set_slope_inter(*slope)
    img.to_filename(path)
    return path


def _header_on_disk(path) -> bytes:
    """The 348 header bytes of a .nii.gz as written, without vox_offset (bytes 108-111: no meaning in Zarr)."""
    import gzip

    with gzip.open(path, "rb") as fh:
        head = fh.read(348)
    return head[:108] + head[112:]


def _header(header) -> bytes:
    return header.binaryblock[:108] + header.binaryblock[112:]


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("nzarr")
    return {"float": _run(root / "run.nii.gz"),
            "scaled": _run(root / "scaled.nii.gz", dtype=np.int16, slope=(0.5, 10.0), seed=1),
            "root": root}


def test_our_store_reads_back_as_the_run(runs, tmp_path):
    src = FileRunSource(runs["float"])
    store = to_nifti_zarr(runs["float"], tmp_path / "run.nii.zarr", time_chunk=5)
    zr = NiftiZarrRunSource(store)
    assert zr.shape == src.shape and zr.time_chunk == 5 and zr.dtype == src.dtype
    np.testing.assert_array_equal(zr.affine, src.affine)
    np.testing.assert_array_equal(zr.read(0, src.n_scans), src.read(0, src.n_scans))
    np.testing.assert_array_equal(zr.read(3, 17), src.read(3, 17))  # across stored chunks
    assert _header(zr.header) == _header_on_disk(runs["float"])


@pytest.mark.parametrize("t0, t1, step", [(0, 23, 2), (4, 21, 7), (5, 10, 1), (0, 23, 30), (22, 23, 2)])
@pytest.mark.parametrize("reuse", [False, True])
def test_pieces_of_a_range_are_the_scans(runs, tmp_path, t0, t1, step, reuse):
    zr = NiftiZarrRunSource(to_nifti_zarr(runs["float"], tmp_path / "r.nii.zarr", time_chunk=4))
    assert zr._direct_chunk_files()  # our layout: chunk files decoded directly (reuse: into one buffer)
    pieces = [(t, v.copy()) for t, v in zr.iter_range(t0, t1, step, reuse_buffer=reuse)]
    assert [t for t, _ in pieces] == list(range(t0, t1, step))
    assert all(len(v) == min(step, t1 - t) for t, v in pieces)
    np.testing.assert_array_equal(np.concatenate([v for _, v in pieces]), FileRunSource(runs["float"]).read(t0, t1))


def test_scaled_integers_keep_their_raw_values_and_scaling(runs, tmp_path):
    src = FileRunSource(runs["scaled"])
    zr = NiftiZarrRunSource(to_nifti_zarr(runs["scaled"], tmp_path / "s.nii.zarr"))
    assert zr.raw_dtype == np.int16 and zr.dtype == src.dtype == np.float64
    np.testing.assert_array_equal(zr.read(0, 11), src.read(0, 11))
    raw = np.asarray(nib.load(runs["scaled"]).dataobj.get_unscaled()).transpose(3, 2, 1, 0)
    np.testing.assert_array_equal(zr.read_raw(0, zr.n_scans), raw)


def test_niizarr_reads_our_stores(runs, tmp_path):
    niizarr = pytest.importorskip("niizarr")
    for key in ("float", "scaled"):
        original = nib.load(runs[key])
        back = niizarr.zarr2nii(str(to_nifti_zarr(runs[key], tmp_path / f"{key}.nii.zarr")))
        assert back.shape == original.shape
        np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(original.dataobj.get_unscaled()))
        np.testing.assert_array_equal(back.header.get_best_affine(), original.affine)
        # nibabel resets scl_slope/inter of an image made from an array: as for nii2zarr's own store
        niizarr.nii2zarr(str(runs[key]), str(tmp_path / f"{key}.ref.nii.zarr"), nb_levels=1)
        reference = niizarr.zarr2nii(str(tmp_path / f"{key}.ref.nii.zarr"))
        assert _header(back.header) == _header(reference.header)
        no_scaling = slice(108, 116)  # scl_slope, scl_inter (in the stripped header)
        assert (_header(back.header)[: no_scaling.start] + _header(back.header)[no_scaling.stop:]
                == _header_on_disk(runs[key])[: no_scaling.start] + _header_on_disk(runs[key])[no_scaling.stop:])


def test_we_read_what_nii2zarr_writes_with_its_defaults(runs, tmp_path):
    niizarr = pytest.importorskip("niizarr")
    for key in ("float", "scaled"):
        niizarr.nii2zarr(str(runs[key]), str(tmp_path / f"{key}.nii.zarr"))  # zstd blosc, 64^3 x 1 scan, pyramid
        zr = as_run_source(str(tmp_path / f"{key}.nii.zarr"))
        src = FileRunSource(runs[key])
        assert isinstance(zr, NiftiZarrRunSource) and zr.time_chunk == 1
        np.testing.assert_array_equal(zr.affine, src.affine)
        np.testing.assert_array_equal(zr.read(0, src.n_scans), src.read(0, src.n_scans))
    da = open_run(str(tmp_path / "float.nii.zarr"))
    assert da.attrs["t_r"] == 2.5
    np.testing.assert_array_equal(da.values, nib.load(runs["float"]).get_fdata(dtype=np.float32))


def test_open_run_is_lazy_and_chunked_like_the_store(runs, tmp_path):
    store = to_nifti_zarr(runs["float"], tmp_path / "run.nii.zarr", time_chunk=4)
    da = open_run(store)
    assert da.dims[-1] == "time" and da.attrs["t_r"] == 2.5 and da.attrs["filename"] == str(store)
    assert all(c % 4 == 0 for c in da.chunks[-1][:-1])
    np.testing.assert_array_equal(da.isel(time=slice(5, 9)).values, nib.load(runs["float"]).dataobj[..., 5:9])
    np.testing.assert_allclose(da.attrs["zooms"], [3.0, 2.5, 3.5])


def test_a_plain_ome_zarr_gets_its_affine_from_the_ome_scales(tmp_path):
    import zarr

    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(5, 4, 3, 2)  # (t, z, y, x)
    root = zarr.open_group(tmp_path / "plain.ome.zarr", mode="w", zarr_format=3)
    root.create_array("0", data=data, chunks=(2, 4, 3, 2))
    axes = [{"name": "t", "type": "time", "unit": "millisecond"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [{"path": "0",
        "coordinateTransformations": [{"type": "scale", "scale": [2000.0, 3000.0, 2000.0, 1000.0]},
                                      {"type": "translation", "translation": [0, 30.0, 20.0, 10.0]}]}]}]}
    zr = as_run_source(str(tmp_path / "plain.ome.zarr"))
    np.testing.assert_allclose(zr.affine, [[1, 0, 0, 0.01], [0, 2, 0, 0.02], [0, 0, 3, 0.03], [0, 0, 0, 1]])
    np.testing.assert_array_equal(zr.read(1, 4), data[1:4])
    assert open_run(str(tmp_path / "plain.ome.zarr")).attrs["t_r"] == pytest.approx(2.0)


def test_bad_stores_raise_clear_errors(tmp_path):
    import zarr

    with pytest.raises(FileNotFoundError, match="does not exist"):
        as_run_source(str(tmp_path / "missing.nii.zarr"))
    root = zarr.open_group(tmp_path / "chan.zarr", mode="w", zarr_format=3)
    root.create_array("0", shape=(4, 2, 3, 3, 3), dtype="f4", dimension_names=list("tczyx"))
    with pytest.raises(NiftiInputError, match="non-singleton"):
        as_run_source(str(tmp_path / "chan.zarr"))
    root = zarr.open_group(tmp_path / "vol.zarr", mode="w", zarr_format=3)
    root.create_array("0", shape=(3, 3, 3), dtype="f4")
    with pytest.raises(NiftiInputError, match="4D"):
        as_run_source(str(tmp_path / "vol.zarr"))
    zr = NiftiZarrRunSource(to_nifti_zarr(_run(tmp_path / "r.nii.gz", n=6), tmp_path / "r.nii.zarr"))
    with pytest.raises(ValueError, match="outside"):
        zr.read(4, 9)


def test_conversion_is_atomic_and_never_touches_the_input(runs, tmp_path, monkeypatch):
    import daskglm.io.nifti_zarr_write as writer

    before = _digest(runs["float"])
    target = tmp_path / "run.nii.zarr"
    with pytest.raises(FileExistsError):
        to_nifti_zarr(runs["float"], to_nifti_zarr(runs["float"], target))
    first = NiftiZarrRunSource(target).identity()

    def failing(chunks_of):
        def fail(*args, **kwargs):
            chunks, dtype, header = chunks_of(*args, **kwargs)

            def broken():
                yield next(chunks)
                raise OSError("disk full")

            return broken(), dtype, header
        return fail

    monkeypatch.setattr(writer, "_raw_chunks", failing(writer._raw_chunks))
    with pytest.raises(OSError, match="disk full"):
        to_nifti_zarr(runs["float"], target, overwrite=True, time_chunk=3)
    with pytest.raises(OSError, match="disk full"):
        to_nifti_zarr(runs["float"], tmp_path / "new.nii.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nii.zarr"]  # no partial store, old one intact
    assert NiftiZarrRunSource(target).identity() == first
    assert _digest(runs["float"]) == before


def test_convert_runs_names_and_parallel_runs(runs, tmp_path):
    stores = convert_runs([runs["float"], runs["scaled"]], tmp_path / "out", workers=2)
    assert [s.name for s in stores] == ["run.nii.zarr", "scaled.nii.zarr"]
    assert zarr_run_name("s3://b/sub-01_bold.nii.gz") == "sub-01_bold.nii.zarr"
    for run, store in zip((runs["float"], runs["scaled"]), stores):
        np.testing.assert_array_equal(NiftiZarrRunSource(store).read(0, 5), FileRunSource(run).read(0, 5))
    with pytest.raises(ValueError, match="same name"):
        convert_runs([runs["float"], runs["float"]], tmp_path / "dup")
    assert default_time_chunk((96, 114, 96), np.float32) == 2 and default_time_chunk((64, 76, 64), "f4") == 12 and default_time_chunk((4, 4, 4), "f4") == 32


def _fit_z(runs, designs, mask, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(mask_img=mask, smoothing_fwhm=5, minimize_memory=True, **kwargs)
        model.fit(runs, design_matrices=designs)
        return np.asarray(model.compute_contrast(np.eye(designs[0].shape[1])[0], output_type="z_score").dataobj)


def test_maps_from_zarr_runs_are_the_gzip_maps_bit_for_bit(fiac_small, tmp_path, monkeypatch):
    import daskglm.graph.stream as stream

    monkeypatch.setattr(stream, "worker_threads", lambda: 1)  # one streamed piece per run, as the .nii.gz
    gz = [fiac_small["func1"], fiac_small["func2"]]
    designs = [pd.DataFrame(np.load(fiac_small[f"design_matrix{i}"])["X"]) for i in (1, 2)]
    stores = [str(s) for s in convert_runs(gz, tmp_path, time_chunk=7)]
    for kwargs in ({}, {"noise_model": "ar2"}):
        np.testing.assert_array_equal(_fit_z(stores, designs, fiac_small["mask"], **kwargs),
                                      _fit_z(gz, designs, fiac_small["mask"], **kwargs))


def test_one_zarr_run_is_read_in_pieces_by_idle_threads(tmp_path, monkeypatch):
    """Pieces of one run on 2 threads: AR lags cross the cut; the statistics match the single stream."""
    import dask

    import daskglm.graph.fit as fit
    import daskglm.graph.stream as stream
    from daskglm.data.fiac import make_fiac_like

    data = make_fiac_like(tmp_path / "long", shape=(9, 10, 8), n_scans=120, seed=4)
    design = [pd.DataFrame(np.load(data["design_matrix1"])["X"])]
    store = str(to_nifti_zarr(data["func1"], tmp_path / "long.nii.zarr", time_chunk=5))
    monkeypatch.setattr(fit.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(stream, "worker_threads", lambda: 2)
    calls = []
    original = stream._stream_stats
    monkeypatch.setattr(stream, "_stream_stats", lambda *a, **k: calls.append(a[7:8]) or original(*a, **k))
    with dask.config.set(scheduler="threads", num_workers=2):
        split = _fit_z(store, design, data["mask"], noise_model="ar3")
    assert sorted(calls) == [((0, 60),), ((60, 120),)]
    monkeypatch.setattr(stream, "_stream_stats", original)
    monkeypatch.setattr(stream, "worker_threads", lambda: 1)
    whole = _fit_z(data["func1"], design, data["mask"], noise_model="ar3")
    np.testing.assert_allclose(split, whole, rtol=1e-9, atol=1e-9)


def test_zarr_runs_at_an_s3_url(s3, runs, tmp_path):
    s3fs = pytest.importorskip("s3fs")
    store = to_nifti_zarr(runs["float"], tmp_path / "run.nii.zarr", time_chunk=4)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3["endpoint_url"]}, key=s3["key"], secret=s3["secret"])
    fs.put(str(store), "fits/zarr/run.nii.zarr", recursive=True)
    options = {"client_kwargs": {"endpoint_url": s3["endpoint_url"]}, "key": s3["key"], "secret": s3["secret"]}
    remote = NiftiZarrRunSource("s3://fits/zarr/run.nii.zarr", options)
    np.testing.assert_array_equal(remote.read(2, 11), FileRunSource(runs["float"]).read(2, 11))
    assert "mtime_ns" not in remote.identity()
    da = open_run("s3://fits/zarr/run.nii.zarr", storage_options=options)
    np.testing.assert_array_equal(da.values, nib.load(runs["float"]).get_fdata(dtype=np.float32))


def test_a_source_travels_without_its_open_array(runs, tmp_path):
    import pickle

    zr = NiftiZarrRunSource(to_nifti_zarr(runs["float"], tmp_path / "run.nii.zarr"))
    zr.read(0, 1)
    clone = pickle.loads(pickle.dumps(zr))
    assert clone._array is None
    np.testing.assert_array_equal(clone.read(0, 4), zr.read(0, 4))


def _in_memory_run(units=("mm", "sec"), t_r=2.5):
    rng = np.random.default_rng(3)
    affine = np.array([[2.0, 0, 0, -20], [0, 2.0, 0, 10], [0, 0, 2.0, 4], [0, 0, 0, 1]])
    img = nib.Nifti1Image(rng.standard_normal((4, 5, 3, 6)).astype(np.float32), affine)
    img.header.set_zooms((2.0, 2.0, 2.0, t_r))
    img.header.set_xyzt_units(*units)
    img.header["descrip"] = b"in memory"
    return img


@pytest.mark.parametrize("units, t_r", [(("mm", "sec"), 2.5), (("mm", "msec"), 800.0)])
def test_an_in_memory_image_keeps_its_header(tmp_path, units, t_r):
    """TR, units, descrip and affine read back as nibabel's own save of the image (was: a fresh header, TR 1)."""
    img = _in_memory_run(units, t_r)
    img.to_filename(tmp_path / "ref.nii")
    reference = nib.load(tmp_path / "ref.nii").header
    zr = NiftiZarrRunSource(to_nifti_zarr(img, tmp_path / "mem.nii.zarr"))
    assert zr.header.get_zooms() == reference.get_zooms() == (2.0, 2.0, 2.0, t_r)
    assert zr.header.get_xyzt_units() == units and zr.header["descrip"] == b"in memory"
    np.testing.assert_array_equal(zr.affine, img.affine)
    assert _header(zr.header) == _header(reference)
    np.testing.assert_array_equal(zr.read(0, 6), np.asarray(img.dataobj).transpose(3, 2, 1, 0))
    assert open_run(str(tmp_path / "mem.nii.zarr")).attrs["t_r"] == pytest.approx(t_r * (1e-3 if units[1] == "msec" else 1))


def test_a_dataarray_stores_its_t_r_or_is_refused(tmp_path):
    img = _in_memory_run()
    img.to_filename(tmp_path / "run.nii")
    da = open_run(tmp_path / "run.nii")
    assert da.attrs["t_r"] == 2.5
    zr = NiftiZarrRunSource(to_nifti_zarr(da, tmp_path / "da.nii.zarr"))
    assert zr.header.get_zooms() == (2.0, 2.0, 2.0, 2.5) and zr.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(zr.affine, nib.load(tmp_path / "run.nii").affine)
    np.testing.assert_array_equal(zr.read(0, 6), FileRunSource(tmp_path / "run.nii").read(0, 6))
    del da.attrs["t_r"]
    with pytest.raises(ValueError, match="repetition time is unknown"):
        to_nifti_zarr(da, tmp_path / "no_tr.nii.zarr")
    assert not (tmp_path / "no_tr.nii.zarr").exists()


def test_commit_keeps_a_store_that_appeared_and_restores_the_old_one(runs, tmp_path, monkeypatch):
    """overwrite=False refuses a target that appeared during the write; a failed final rename puts the old store back."""
    import os

    import daskglm.io.nifti_zarr_write as writer

    target = tmp_path / "run.nii.zarr"
    write = writer._write_store

    def racing(partial, *args):  # another process creates the target while this one writes
        write(partial, *args)
        if not target.exists():
            write(target, *args)
            (target / "theirs").write_text("theirs")

    monkeypatch.setattr(writer, "_write_store", racing)
    with pytest.raises(FileExistsError, match="appeared while the store was written"):
        to_nifti_zarr(runs["float"], target)
    assert (target / "theirs").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nii.zarr"]
    monkeypatch.setattr(writer, "_write_store", write)

    rename = os.rename

    def failing_rename(src, dst):
        if ".partial-" in str(src):
            raise OSError("rename failed")
        rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        to_nifti_zarr(runs["float"], target, overwrite=True)
    assert (target / "theirs").read_text() == "theirs"  # the old store, back under its name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nii.zarr"]


def test_iter_range_checks_its_range_when_called(runs, tmp_path):
    """Scans past the run: a ValueError as read() gives (was: RuntimeError 'generator raised StopIteration')."""
    zr = NiftiZarrRunSource(to_nifti_zarr(runs["float"], tmp_path / "r.nii.zarr", time_chunk=4))
    for t0, t1 in ((0, zr.n_scans + 1), (5, 3), (-1, 4)):
        with pytest.raises(ValueError, match="outside run"):
            zr.iter_range(t0, t1, 2)
    with pytest.raises(ValueError, match="chunk must be a positive"):
        zr.iter_range(0, 4, 0)
    np.testing.assert_array_equal(np.concatenate([v for _, v in zr.iter_range(20, 23, 2)]), zr.read(20, 23))
