"""Chunk integrity: checksummed writes, checked array metadata, verified reads.

- Every array is written with Zarr v3's ``crc32c`` codec after ``zstd``
  (:func:`checksummed_encoding`) and with ``write_empty_chunks=True``, so
  every chunk of a fitted array exists on disk.
- On open, each array's ``zarr.json`` is checked (:func:`check_array_meta`:
  shape, data type, regular chunks of bounded size, default chunk keys, the
  ``crc32c`` codec, dimension names) and its chunk files are listed and
  counted against the chunk grid (:func:`check_chunks_present`), before any
  chunk is read.
- Chunks are read through :class:`VerifiedArray`: the codec verifies each
  chunk's CRC-32C; any decoding failure, a chunk that disappeared, or an
  integer out of its declared range becomes a :class:`StoreError` naming the
  array and the chunk.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

from daskglm.errors import StoreError
from daskglm.store.location import Location

__all__ = ["MAX_CHUNK_BYTES", "checksummed_encoding", "check_array_meta", "check_chunks_present",
           "VerifiedArray", "ArraySpec"]

#: Largest chunk accepted on read (a tampered chunk shape must not allocate gigabytes).
MAX_CHUNK_BYTES = 256 * 2**20
_DTYPES = {"bool": "b", "int8": "i", "int16": "i", "int32": "i", "int64": "i", "uint8": "u",
           "uint16": "u", "uint32": "u", "uint64": "u", "float32": "f", "float64": "f"}


def checksummed_encoding(ds) -> dict:
    """xarray ``encoding`` giving every variable of ``ds`` zstd + crc32c codecs."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {name: {"compressors": [ZstdCodec(level=1), Crc32cCodec()]} for name in ds.variables}


class ArraySpec:
    """What the checked ``zarr.json`` of one array declares."""

    def __init__(self, path: str, shape: tuple, chunks: tuple, dtype: str, dims: tuple):
        self.path, self.shape, self.chunks, self.dims = path, shape, chunks, dims
        self.dtype, self.kind = np.dtype(dtype), _DTYPES[dtype]

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks along each axis."""
        return tuple(math.ceil(s / c) if s else 0 for s, c in zip(self.shape, self.chunks))

    def chunk_keys(self, index) -> list[str]:
        """Chunk keys (``c/i/j``) touched by a tuple of slices."""
        ranges = []
        for sl, size, c in zip(index, self.shape, self.chunks):
            start, stop, _ = sl.indices(size) if isinstance(sl, slice) else (int(sl), int(sl) + 1, 1)
            ranges.append(range(start // c, max(start, stop - 1) // c + 1))
        return ["/".join(["c", *map(str, ix)]) for ix in itertools.product(*ranges)]


def _fail(store: str, path: str, what: str) -> StoreError:
    return StoreError(f"{store!r}: array {path!r}: {what}")


def _int_list(value, store, path, field, minimum) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > 8:
        raise _fail(store, path, f"{field} must be a list of at most 8 integers, got {value!r:.80}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and minimum <= v < 2**40 for v in value):
        raise _fail(store, path, f"{field} must hold integers >= {minimum}, got {value!r:.80}")
    return tuple(value)


def check_array_meta(store: str, path: str, meta, checksums: bool) -> ArraySpec:
    """Check one array's Zarr v3 metadata document; return what it declares.

    Raises
    ------
    StoreError
        Naming the store, the array and the field.
    """
    if not isinstance(meta, dict) or meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        raise _fail(store, path, "is missing or is not a Zarr v3 array")
    shape = _int_list(meta.get("shape"), store, path, "shape", 0)
    grid = meta.get("chunk_grid")
    if not isinstance(grid, dict) or grid.get("name") != "regular" \
            or not isinstance(grid.get("configuration"), dict):
        raise _fail(store, path, "chunk_grid must be a regular grid")
    chunks = _int_list(grid["configuration"].get("chunk_shape"), store, path, "chunk_shape", 1)
    if len(chunks) != len(shape):
        raise _fail(store, path, f"chunk_shape {chunks} does not match shape {shape}")
    dtype = meta.get("data_type")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise _fail(store, path, f"unsupported data_type {dtype!r:.40}")
    if math.prod(chunks) * np.dtype(dtype).itemsize > MAX_CHUNK_BYTES:
        raise _fail(store, path, f"chunk_shape {chunks} exceeds {MAX_CHUNK_BYTES // 2**20} MiB per chunk")
    if meta.get("chunk_key_encoding") != {"name": "default", "configuration": {"separator": "/"}}:
        raise _fail(store, path, "chunk_key_encoding must be the default ('/' separator)")
    if meta.get("storage_transformers", []) != []:
        raise _fail(store, path, "storage_transformers are not supported")
    codecs = meta.get("codecs")
    if not isinstance(codecs, list) or not all(isinstance(c, dict) for c in codecs):
        raise _fail(store, path, "codecs must be a list of codec objects")
    names = [c.get("name") for c in codecs]
    if checksums and (not names or names[-1] != "crc32c"):
        raise _fail(store, path, "has no crc32c checksum codec (chunks cannot be verified)")
    dims = meta.get("dimension_names", [] if not shape else None)
    if not isinstance(dims, list) or len(dims) != len(shape) or not all(isinstance(d, str) for d in dims):
        raise _fail(store, path, f"dimension_names {dims!r:.80} do not match shape {shape}")
    return ArraySpec(path, shape, chunks, dtype, tuple(dims))


def _listed_chunks(loc: Location, path: str) -> set[str]:
    """Chunk keys present under array ``path`` (relative keys such as ``c/0/1``)."""
    if loc.local:
        root = os.path.join(loc.url, path)
        found = set()
        base = os.path.join(root, "c")
        if os.path.isfile(base):
            return {"c"}
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            found.update(f"{rel}/{f}" for f in files)
        return found
    fs, root = loc.fs_path(path)
    fs.invalidate_cache(root)
    try:
        return {p[len(root) + 1:] for p in fs.find(f"{root}/c", withdirs=False)} | (
            {"c"} if fs.isfile(f"{root}/c") else set())
    except FileNotFoundError:
        return set()


def check_chunks_present(loc: Location, spec: ArraySpec) -> None:
    """Every chunk of the grid is on disk (fitted arrays are written with all chunks)."""
    expected = math.prod(spec.grid)
    found = _listed_chunks(loc, spec.path)
    if len(found) < expected:
        raise _fail(loc.url, spec.path, f"{expected - len(found)} of {expected} chunks are missing "
                    "(deleted or never written); the store is damaged: re-fit it")
    if len(found) > expected:
        raise _fail(loc.url, spec.path, f"holds {len(found)} chunk files for a grid of {expected} "
                    "chunks: its shape or chunk_shape was altered")
    want = {"/".join(["c", *map(str, ix)]) for ix in itertools.product(*map(range, spec.grid))}
    missing = sorted(want - found)
    if missing:
        raise _fail(loc.url, spec.path, f"chunk {missing[0]} is missing; the store is damaged: re-fit it")


class VerifiedArray:
    """A Zarr array read chunk by chunk with errors that name the array and chunk.

    Picklable (the Zarr array is opened on first use in each process).  Give
    it to :func:`dask.array.from_array`.

    Parameters
    ----------
    loc : Location
    spec : ArraySpec
    valid_range : (int, int), optional
        Integer arrays: values must lie in ``[lo, hi)``.
    check_presence : bool
        Check (locally) that the chunks read still exist.
    """

    def __init__(self, loc: Location, spec: ArraySpec, valid_range=None, check_presence=True):
        self.loc, self.spec, self.valid_range = loc, spec, valid_range
        self.shape, self.dtype, self.ndim = spec.shape, spec.dtype, len(spec.shape)
        self.check_presence = check_presence
        self._array = None

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    def _open(self):
        if self._array is None:
            import zarr

            if self.loc.local:
                store = zarr.storage.LocalStore(self.loc.url, read_only=True)
            else:
                store = zarr.storage.FsspecStore.from_url(
                    self.loc.url, storage_options=self.loc.storage_options or None, read_only=True)
            self._array = zarr.open_array(store=store, path=self.spec.path, mode="r", zarr_format=3)
        return self._array

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        keys = self.spec.chunk_keys(index) if self.ndim else ["c"]
        where = f"chunk {keys[0]}" + (f" (of {len(keys)} chunks read)" if len(keys) > 1 else "")
        if self.check_presence and self.loc.local:
            for key in keys:
                if not os.path.exists(os.path.join(self.loc.url, self.spec.path, key)):
                    raise _fail(self.loc.url, self.spec.path, f"chunk {key} is missing; the store "
                                "is damaged: re-fit it")
        try:
            values = np.asarray(self._open()[index])
        except StoreError:
            raise
        except Exception as err:
            raise _fail(self.loc.url, self.spec.path,
                        f"{where} is corrupt ({type(err).__name__}: {err})") from err
        if values.dtype != self.dtype:
            raise _fail(self.loc.url, self.spec.path, f"{where} has dtype {values.dtype}, not {self.dtype}")
        if self.valid_range is not None and values.size:
            lo, hi = self.valid_range
            if values.min() < lo or values.max() >= hi:
                raise _fail(self.loc.url, self.spec.path,
                            f"{where} holds values outside [{lo}, {hi}): the store is damaged")
        return values
