"""Writing runs as NIfTI-Zarr: :func:`to_nifti_zarr` (one run) and :func:`convert_runs` (many, in parallel).

The store is what ``niizarr.zarr2nii`` reads back with the same data, affine
and header, laid out for streaming fits:

- Zarr format 3, OME-NGFF 0.5 ``multiscales`` with one level, ``"0"``, of axes
  ``(t, z, y, x)`` holding the raw (unscaled) values in the run's dtype;
- chunks of whole volumes x :func:`default_time_chunk` scans (about
  :data:`TARGET_CHUNK_BYTES`), so a time range is a few chunk reads;
- blosc-lz4 with byte shuffle (:data:`DEFAULT_CODEC`): the fastest read of the
  codecs ``benchmarks/bench_zarr_codecs.py`` compares (docs/nifti_zarr.md);
- the binary NIfTI header (348 or 540 bytes, extensions dropped) in the
  ``nifti`` array, shape set to ``(x, y, z, t)``.

Conversion is one pass over the input (a ``.nii.gz`` is decompressed once, front
to back, its raw bytes written chunk by chunk), never touches the input, and is
atomic: the store is written under a hidden temporary name next to the target
and renamed into place, so a failed conversion leaves nothing at the target.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from daskglm.io.atomic import replace_directory
from daskglm.io.base import RunSource, stream_volumes
from daskglm.io.nifti import FileRunSource, _open_gzip
from daskglm.io.nifti_zarr import OME_SPACE_UNITS, OME_TIME_UNITS, NiftiZarrRunSource
from daskglm.io.remote import RemoteRunSource, _gzip_reader, is_url, open_url
from daskglm.io.runs import as_run_source
from daskglm.io.views import base_source

__all__ = ["to_nifti_zarr", "convert_runs", "zarr_run_name", "default_time_chunk", "CODECS", "DEFAULT_CODEC",
           "TARGET_CHUNK_BYTES"]

#: Codecs by name (``benchmarks/bench_zarr_codecs.py`` times them)
CODECS = ("blosc-lz4", "blosc-zstd", "gzip")
DEFAULT_CODEC = "blosc-lz4"
#: Bytes of raw data per stored chunk (whole volumes x a few scans)
TARGET_CHUNK_BYTES = 16 << 20
#: Scans per stored chunk are a multiple of this (fits read 2 scans at a time: no read spans two chunks)
STREAM_READ_MULTIPLE = 2
_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".nii.zarr", ".zarr")


def zarr_run_name(run) -> str:
    """``<run name>.nii.zarr`` for a run path or URL (``sub-01_bold.nii.gz`` -> ``sub-01_bold.nii.zarr``)."""
    name = str(run).rstrip("/").rsplit("/", 1)[-1]
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"{name}.nii.zarr"


def default_time_chunk(spatial_shape, dtype) -> int:
    """Scans per stored chunk: whole volumes, about :data:`TARGET_CHUNK_BYTES` raw, 1 to 32 scans, even from 2."""
    per_volume = int(np.prod(spatial_shape)) * np.dtype(dtype).itemsize
    scans = int(max(1, min(32, TARGET_CHUNK_BYTES // max(per_volume, 1))))
    return scans if scans < STREAM_READ_MULTIPLE else scans // STREAM_READ_MULTIPLE * STREAM_READ_MULTIPLE


def make_codec(name: str, level: int | None = None):
    """A Zarr v3 compressor by name (:data:`CODECS`)."""
    from zarr.codecs import BloscCodec, GzipCodec

    if name == "blosc-lz4":
        return BloscCodec(cname="lz4", clevel=5 if level is None else level, shuffle="shuffle")
    if name == "blosc-zstd":
        return BloscCodec(cname="zstd", clevel=1 if level is None else level, shuffle="shuffle")
    if name == "gzip":
        return GzipCodec(level=1 if level is None else level)
    raise ValueError(f"Unknown codec {name!r}; choose one of {CODECS}.")


class _RawLayout:
    """What :func:`~daskglm.io.base.stream_volumes` needs to yield a NIfTI stream's unscaled volumes."""

    def __init__(self, source):
        self.offset, self.volume_bytes, self.n_scans = source.offset, source.volume_bytes, source.n_scans
        self.name, self.shape, self.raw_dtype = source.name, source.shape, source.raw_dtype

    def as_volumes(self, buf, k: int) -> np.ndarray:
        nx, ny, nz = self.shape[:3]
        return np.frombuffer(buf, dtype=self.raw_dtype, count=k * nx * ny * nz).reshape(k, nz, ny, nx)


def _raw_chunks(source: RunSource, chunk: int, threaded: bool,
                header=None) -> tuple[Iterator, np.dtype, object]:
    """``(chunks of unscaled volumes, their dtype, the header to store)`` of a run, read in one pass.

    ``header`` is the header of an in-memory run (:func:`_array_run_header`); files bring their own.
    """
    if isinstance(source, NiftiZarrRunSource):
        return source.iter_range(0, source.n_scans, chunk, raw=True), source.raw_dtype, source.header
    if isinstance(source, FileRunSource):
        layout = _RawLayout(source)

        def chunks():
            if source.compressed:
                with _open_gzip(source.path, threaded=threaded) as fh:
                    yield from stream_volumes(layout, fh, chunk, reuse_buffer=True)
            else:
                with open(source.path, "rb") as fh:
                    yield from stream_volumes(layout, fh, chunk, reuse_buffer=True)

        header = source.header.copy()
        # nibabel moved scl_slope/inter from the loaded header to the image's proxy: put them back
        header.set_slope_inter(float(np.asarray(source.slope)), float(np.asarray(source.inter)))
        return chunks(), source.raw_dtype, header
    if isinstance(source, RemoteRunSource):
        layout = _RawLayout(source)

        def chunks():
            with open_url(source.url, source.storage_options) as fh:
                if source.compressed:
                    with _gzip_reader(fh) as gz:
                        yield from stream_volumes(layout, gz, chunk, reuse_buffer=True)
                else:
                    yield from stream_volumes(layout, fh, chunk, reuse_buffer=True)

        return chunks(), source.raw_dtype, source.header
    if base_source(source) is not source or not hasattr(source, "read"):
        raise TypeError(f"Cannot convert {type(source).__name__} (a view of a run); convert the run itself.")
    if header is None:
        raise TypeError(f"Cannot convert {type(source).__name__} {source.name}: no NIfTI header to store "
                        "(pass the nibabel image or the DataArray itself).")
    return source.iter_chunks(chunk, background=False), np.dtype(source.dtype), header


def _is_file_run(source: RunSource) -> bool:
    """Whether ``source`` reads a stored run that brings its own header (file, URL, NIfTI-Zarr store)."""
    return isinstance(source, (NiftiZarrRunSource, FileRunSource, RemoteRunSource))


def _array_run_header(run, source: RunSource):
    """The header to store for an in-memory run: the image's own, or one built from a DataArray's attributes.

    Parameters
    ----------
    run : nibabel.Nifti1Image, nibabel.Nifti2Image or xarray.DataArray
        The run given to :func:`to_nifti_zarr`.
    source : RunSource
        ``run`` as a run source (its affine, dtype and shape).

    Returns
    -------
    nibabel.Nifti1Header or nibabel.Nifti2Header
        A copy of the image's header (TR, units, intent, descrip... kept) with the image's affine
        and no scaling (the stored values are the image's); for a DataArray, a header with its
        affine, ``attrs['t_r']`` as ``pixdim[4]`` and units mm / s.

    Raises
    ------
    ValueError
        A DataArray (or another in-memory run) without a known repetition time.
    """
    if isinstance(run, (nib.Nifti1Image, nib.Nifti2Image)):
        header = type(run)(run.dataobj, run.affine, run.header).header  # a copy, sform/qform from the affine
        header.set_slope_inter(None, None)
        return header
    t_r = getattr(run, "attrs", {}).get("t_r")
    if t_r is None or not float(t_r) > 0:
        raise ValueError(
            f"Cannot convert run {source.name}: its repetition time is unknown (no 't_r' attribute) and "
            "the store's header needs one; open it with daskglm.open_run(..., t_r=...) or set "
            "its attrs['t_r'] (seconds).")
    header = nib.Nifti1Header()
    header.set_data_dtype(source.dtype)
    header.set_data_shape(source.shape)
    header.set_qform(source.affine, 1)
    header.set_sform(source.affine, 1)
    header.set_zooms((*header.get_zooms()[:3], float(t_r)))
    header.set_xyzt_units("mm", "sec")
    return header


def _store_header(header, shape_xyzt, dtype) -> nib.Nifti1Header:
    """A copy of ``header`` describing the stored array: shape (x, y, z, t), no extensions."""
    header = header.copy()
    header.set_data_shape(shape_xyzt)
    if np.dtype(header.get_data_dtype()).newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        header.set_data_dtype(dtype)
    if hasattr(header, "extensions"):
        del header.extensions[:]
    return header


def _ome_metadata(header, shape_xyzt, name: str) -> dict:
    space, time = header.get_xyzt_units()
    space_unit = OME_SPACE_UNITS.get(space, OME_SPACE_UNITS["mm"])[0]
    time_unit = OME_TIME_UNITS.get(time, OME_TIME_UNITS["sec"])[0]
    zooms = [float(z) for z in header.get_zooms()]
    t_r = zooms[3] if len(zooms) > 3 and zooms[3] > 0 else 1.0
    axes = [{"name": "t", "type": "time", "unit": time_unit}] + [
        {"name": a, "type": "space", "unit": space_unit} for a in "zyx"
    ]
    return {"version": "0.5", "multiscales": [{
        "name": name,
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, zooms[2], zooms[1], zooms[0]]},
            {"type": "translation", "translation": [0.0, 0.0, 0.0, 0.0]},
        ]}],
        "coordinateTransformations": [{"type": "scale", "scale": [t_r, 1.0, 1.0, 1.0]}],
    }]}


def _write_store(target: Path, source: RunSource, time_chunk: int | None, codec: str, threaded: bool,
                 header=None) -> None:
    import zarr

    nx, ny, nz, nt = source.shape
    stored = np.dtype(getattr(source, "raw_dtype", source.dtype))
    tc = int(time_chunk or default_time_chunk((nx, ny, nz), stored))
    chunks, dtype, header = _raw_chunks(source, tc, threaded, header)
    dtype = np.dtype(dtype).newbyteorder("=")
    header = _store_header(header, (nx, ny, nz, nt), dtype)
    root = zarr.open_group(store=zarr.storage.LocalStore(target), mode="w", zarr_format=3)
    array = root.create_array(
        "0", shape=(nt, nz, ny, nx), chunks=(tc, nz, ny, nx), dtype=dtype, compressors=[make_codec(codec)],
        fill_value=0, dimension_names=["t", "z", "y", "x"],
    )
    for t0, volumes in chunks:
        array[t0 : t0 + len(volumes)] = volumes
    array.attrs["_ARRAY_DIMENSIONS"] = ["time", "z", "y", "x"]
    head = np.frombuffer(header.binaryblock, dtype=np.uint8)
    nifti = root.create_array("nifti", shape=head.shape, chunks=head.shape, dtype="u1", compressors=None)
    nifti[...] = head
    root.attrs["daskglm"] = {"converted_from": source.identity(), "codec": codec}
    root.attrs["ome"] = _ome_metadata(header, (nx, ny, nz, nt), zarr_run_name(source.name))


def to_nifti_zarr(run, path: str | os.PathLike, *, time_chunk: int | None = None, codec: str = DEFAULT_CODEC,
                  overwrite: bool = False, threaded: bool = True) -> Path:
    """Write a run as a NIfTI-Zarr store, in one pass over it, atomically.

    Parameters
    ----------
    run : str, path, nibabel.Nifti1Image, xarray.DataArray or RunSource
        A ``.nii`` / ``.nii.gz`` (local or fsspec URL), another NIfTI-Zarr store, an image or array.
        An in-memory image keeps its header (TR, units...); a DataArray needs ``attrs['t_r']``
        (as :func:`daskglm.open_run` sets it).
    path : str or path
        The store to write, conventionally ``<run name>.nii.zarr`` (local).
    time_chunk : int, optional
        Scans per stored chunk (default: :func:`default_time_chunk`).
    codec : {'blosc-lz4', 'blosc-zstd', 'gzip'}
        Chunk compression (default: blosc-lz4, the fastest to read; docs/nifti_zarr.md).
    overwrite : bool
        Replace an existing store at ``path`` (only once the new one is complete).
    threaded : bool
        Decompress a ``.nii.gz`` in a background thread.

    Returns
    -------
    pathlib.Path
        The store written.
    """
    if is_url(str(path)):
        raise ValueError(f"to_nifti_zarr writes local stores; got the URL {str(path)!r} "
                         "(convert locally, then copy the directory to object storage).")
    if codec not in CODECS:
        raise ValueError(f"Unknown codec {codec!r}; choose one of {CODECS}.")
    if time_chunk is not None and int(time_chunk) < 1:
        raise ValueError(f"time_chunk must be a positive integer, got {time_chunk!r}.")
    target = Path(path).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it.")
    source = as_run_source(run)
    if len(source.shape) != 4:
        raise TypeError(f"Run {source.name} is not a volume run (shape {source.shape}): only 4D NIfTI runs convert.")
    if isinstance(source, NiftiZarrRunSource) and Path(source.location) == target:
        raise ValueError(f"Cannot convert {str(target)!r} onto itself.")
    header = None if _is_file_run(source) or base_source(source) is not source else _array_run_header(run, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        _write_store(partial, source, time_chunk, codec, threaded, header)
        replace_directory(partial, target, overwrite)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return target


def convert_runs(runs, out_dir: str | os.PathLike, *, workers: int | None = None, overwrite: bool = False,
                 **options) -> list[Path]:
    """Convert runs to ``out_dir/<run name>.nii.zarr``, several at once (one thread per run, up to ``workers``).

    ``options`` go to :func:`to_nifti_zarr`.  Returns the stores in the order of ``runs``.
    A run whose store fails is reported after the others finish (the first error is raised).
    """
    runs = list(runs)
    out_dir = Path(out_dir)
    targets = [out_dir / zarr_run_name(getattr(r, "name", r) if isinstance(r, RunSource) else r) for r in runs]
    if len(set(targets)) != len(targets):
        raise ValueError("Two runs have the same name; their stores would collide in "
                         f"{str(out_dir)!r}: {[t.name for t in targets]}.")
    workers = max(1, min(len(runs), workers or os.cpu_count() or 1))
    threaded = workers >= len(runs) and len(runs) < (os.cpu_count() or 1)
    options.setdefault("threaded", threaded)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(to_nifti_zarr, r, t, overwrite=overwrite, **options) for r, t in zip(runs, targets)]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
    return targets
