"""NIfTI-Zarr runs (``*.nii.zarr``): OME-Zarr multiscales plus the NIfTI header in a ``nifti`` array.

The NIfTI-Zarr specification (reference implementation: the ``nifti-zarr``
package, ``niizarr.nii2zarr`` / ``zarr2nii``) stores a run as an OME-Zarr
multiscale image whose finest level (``datasets[0]``, usually ``"0"``) has axes
``(t, z, y, x)`` (or ``(t, c, z, y, x)``), holding the raw, unscaled values, and
the binary NIfTI-1/2 header in a one-chunk ``uint8`` array named ``nifti``.
The header wins over the OME metadata: affine, units, ``pixdim[4]`` (t_r) and
``scl_slope``/``scl_inter`` come from it, exactly as from a ``.nii`` file.
A Zarr store without a ``nifti`` array (plain OME-Zarr, or a bare 4D array)
gets a header built from the OME metadata like ``zarr2nii``'s (the affine of the
level-0 scales and translations converted to mm; units mm and s), with two
differences: ``pixdim[4]`` (t_r) is the time axis' scale, times the
multiscale's own time scale, in seconds (``zarr2nii`` leaves 1.0), and a
translation is taken as given whatever its place in the list (``zarr2nii``
multiplies one listed before the scale by it).  A bare array's axes come
from its dimension names (else ``(t, z, y, x)``; ``zarr2nii`` ignores the
names), and the header is always NIfTI-1.

:class:`NiftiZarrRunSource` reads any time range independently (Zarr chunks are
compressed one by one), so a run is not a stream: several workers read
different time chunks of one run at once (:mod:`daskglm.graph.stream`).
Reads go through ``zarr`` (v3 API; Zarr format 2 or 3 stores), locally or at an
fsspec URL; nothing is read when a source is created but the metadata.
The writer is :mod:`daskglm.io.nifti_zarr_write`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.volumeutils import apply_read_scaling

from daskglm.errors import NiftiInputError
from daskglm.io.base import RunSource, check_4d
from daskglm.io.remote import _options, _parse_header, is_url

__all__ = ["NiftiZarrRunSource", "is_zarr_run", "open_zarr_node", "OME_SPACE_UNITS", "OME_TIME_UNITS"]

#: NIfTI space units <-> OME-NGFF unit names (and their size in mm)
OME_SPACE_UNITS = {"mm": ("millimeter", 1.0), "micron": ("micrometer", 1e-3), "meter": ("meter", 1e3)}
#: NIfTI time units <-> OME-NGFF unit names (and their size in s)
OME_TIME_UNITS = {"sec": ("second", 1.0), "msec": ("millisecond", 1e-3), "usec": ("microsecond", 1e-6)}
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def is_zarr_run(obj) -> bool:
    """Whether ``obj`` names a Zarr store: a path or URL ending in ``.zarr``, or a local Zarr directory."""
    if not isinstance(obj, (str, os.PathLike)):
        return False
    text = str(obj).rstrip("/")
    if text.startswith("file://"):
        text = text[7:]
    if text.endswith(".zarr"):
        return True
    if is_url(text):
        return False
    path = Path(text)
    return path.is_dir() and any((path / marker).exists() for marker in _ZARR_MARKERS)


def open_zarr_node(location: str, storage_options: dict | None = None):
    """The Zarr group or array at a local path or fsspec URL, read-only."""
    import zarr

    try:
        if is_url(location):
            store = zarr.storage.FsspecStore.from_url(
                location, read_only=True, storage_options=_options(location, storage_options) or None
            )
        else:
            if not Path(location).exists():
                raise FileNotFoundError(f"The Zarr store {location!r} does not exist.")
            store = zarr.storage.LocalStore(location, read_only=True)
        return zarr.open(store=store, mode="r")
    except FileNotFoundError:
        raise
    except Exception as err:  # zarr raises its own errors for non-Zarr paths
        raise NiftiInputError(f"Could not open {location!r} as a Zarr store: {err}") from err


def _multiscales(group) -> list | None:
    attrs = dict(group.attrs)
    return attrs.get("ome", attrs).get("multiscales")


def _axis_names(array, multiscales) -> list[str]:
    if multiscales:
        return [str(axis["name"] if isinstance(axis, dict) else axis) for axis in multiscales[0]["axes"]]
    names = getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS")
    if names and all(names):
        return [{"time": "t", "channel": "c"}.get(str(n), str(n)) for n in names]
    return list("tczyx"[5 - array.ndim:]) if array.ndim == 5 else list("tzyx"[4 - array.ndim:])


def _transform(transforms: list, kind: str) -> list | None:
    for item in transforms or []:
        if item.get("type") == kind:
            return list(item.get(kind) or [])
    return None


def _default_header(shape_xyzt, dtype, multiscales, names) -> nib.Nifti1Header:
    """The header ``zarr2nii`` builds for an OME-Zarr without one: OME scales and translations, mm and s."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape_xyzt)
    header.set_data_dtype(dtype)
    affine, t_r = np.eye(4), 1.0
    if multiscales:
        units = {str(a["name"]): a.get("unit") for a in multiscales[0]["axes"] if isinstance(a, dict)}
        level = multiscales[0]["datasets"][0].get("coordinateTransformations", [])
        scale = _transform(level, "scale") or [1.0] * len(names)
        offset = _transform(level, "translation") or [0.0] * len(names)
        time_scale = _transform(multiscales[0].get("coordinateTransformations", []), "scale")
        factors = {n: 1.0 for n in names}
        for n in names:
            unit = units.get(n)
            by_name = {v[0]: v[1] for v in (*OME_SPACE_UNITS.values(), *OME_TIME_UNITS.values())}
            factors[n] = by_name.get(unit, 1.0)
        for row, axis in enumerate("xyz"):
            if axis in names:
                i = names.index(axis)
                affine[row, row] = float(scale[i]) * factors[axis]
                affine[row, 3] = float(offset[i]) * factors[axis]
        if "t" in names:
            i = names.index("t")
            t_r = float(scale[i]) * float((time_scale or [1.0] * len(names))[i]) * factors["t"]
    header.set_qform(affine, 1)
    header.set_sform(affine, 1)
    header.set_xyzt_units("mm", "sec")
    zooms = list(header.get_zooms())
    if len(zooms) > 3:
        zooms[3] = t_r
        header.set_zooms(zooms)
    return header


class NiftiZarrRunSource(RunSource):
    """A run stored as NIfTI-Zarr (or any 4D OME-Zarr / Zarr array), locally or at an fsspec URL.

    Parameters
    ----------
    location : str or path
        The store: ``sub-01_bold.nii.zarr``, ``s3://bucket/sub-01_bold.nii.zarr``, ...
    storage_options : dict, optional
        fsspec options for a URL (``{"anon": True}``, ...).

    Attributes
    ----------
    header : nibabel.Nifti1Header or Nifti2Header
        From the ``nifti`` array (or built from the OME metadata without one).
    time_chunk : int
        Scans per stored chunk: a read decodes whole chunks.
    """

    def __init__(self, location: str | os.PathLike, storage_options: dict | None = None):
        text = str(location)
        self.remote = is_url(text)
        if text.startswith("file://"):
            text = text[7:]
        self.location = text if self.remote else os.path.abspath(text)
        self.url = self.location if self.remote else None
        self.name = self.location
        self.storage_options = _options(self.location, storage_options) if self.remote else {}
        node = open_zarr_node(self.location, self.storage_options)
        self._parse(node)

    def _parse(self, node) -> None:
        import zarr

        if isinstance(node, zarr.Group):
            multiscales = _multiscales(node)
            path = str(multiscales[0]["datasets"][0]["path"]) if multiscales else "0"
            if path not in node:
                raise NiftiInputError(f"Run {self.name} is a Zarr group without an image array {path!r}.")
            array = node[path]
            head = np.asarray(node["nifti"][...]).tobytes() if "nifti" in node else None
        else:
            multiscales, path, array, head = None, None, node, None
        self.array_path = path
        names = _axis_names(array, multiscales)
        if sorted(set(names)) != sorted(names) or not {"x", "y", "z"} <= set(names) or len(names) != array.ndim:
            raise NiftiInputError(f"Run {self.name}: unsupported Zarr axes {names} for array shape {array.shape}.")
        extra = [n for n in names if n not in "txyz"]
        if any(array.shape[names.index(n)] != 1 for n in extra):
            raise NiftiInputError(f"Run {self.name} has a non-singleton {extra} axis: shape {array.shape}; "
                                  "a run is one (t, z, y, x) series.")
        self._axes = names
        size = {n: int(array.shape[i]) for i, n in enumerate(names)}
        shape = (size["x"], size["y"], size["z"], size.get("t", 1)) if "t" in names else (
            size["x"], size["y"], size["z"])
        self.raw_dtype = np.dtype(array.dtype)
        if head is not None:
            self.header = _parse_header(head, self.name)
        else:
            self.header = _default_header(shape, self.raw_dtype, multiscales, names)
        self.header_bytes = head
        header_shape = check_4d(self.header.get_data_shape(), self.name)
        self.shape = check_4d(shape, self.name)
        if header_shape != self.shape:
            raise NiftiInputError(f"Run {self.name}: the NIfTI header announces shape {header_shape}, "
                                  f"the Zarr array holds {self.shape}.")
        self.affine = np.asarray(self.header.get_best_affine(), dtype=np.float64)
        slope, inter = self.header.get_slope_inter()
        self.slope = 1.0 if slope is None else slope
        self.inter = 0.0 if inter is None else inter
        self.dtype = apply_read_scaling(np.zeros(1, self.raw_dtype), self.slope, self.inter).dtype
        self.time_chunk = int(array.chunks[names.index("t")]) if "t" in names else 1
        self.chunks = tuple(int(c) for c in array.chunks)
        digest = hashlib.sha256((head or b"") + repr((array.shape, array.chunks, str(array.dtype))).encode())
        self._digest = digest.hexdigest()[:16]
        self._array = array

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # reopened by the reading process
        return state

    def __repr__(self) -> str:
        return f"NiftiZarrRunSource({self.location!r})"

    def __str__(self) -> str:
        return self.location

    @property
    def streamed(self) -> bool:
        """Fits stream a Zarr run in pieces of scans, one per idle worker thread (:mod:`daskglm.graph.stream`)."""
        return True

    def array(self):
        """The image's finest-level Zarr array (opened once per process)."""
        if self._array is None:
            node = open_zarr_node(self.location, self.storage_options)
            self._array = node if self.array_path is None else node[self.array_path]
        return self._array

    def identity(self) -> dict:
        ident = {"path": self.location, "shape": list(self.shape), "zarr": self._digest}
        if not self.remote:
            meta = [Path(self.location, *([self.array_path] if self.array_path else []), m) for m in _ZARR_MARKERS]
            ident["mtime_ns"] = max((p.stat().st_mtime_ns for p in meta if p.exists()), default=0)
        return ident

    def read_raw(self, t0: int, t1: int) -> np.ndarray:
        """Stored (unscaled) volumes ``t0..t1-1`` as a ``(k, nz, ny, nx)`` array."""
        if not 0 <= t0 <= t1 <= self.n_scans:
            raise ValueError(f"Scans {t0}..{t1} are outside run {self.name} of {self.n_scans} scans.")
        names = self._axes
        index = tuple(slice(t0, t1) if n == "t" else slice(None) if n in "xyz" else 0 for n in names)
        try:
            block = np.asarray(self.array()[index])
        except Exception as err:  # a missing or corrupt chunk, a vanished store
            raise NiftiInputError(f"Run {self.name}: could not read scans {t0}..{t1}: {err}") from err
        kept = [n for n in names if n in "txyz"]
        if "t" not in kept:
            block, kept = block[None], ["t", *kept]
        order = [kept.index(n) for n in "tzyx"]
        return block if order == [0, 1, 2, 3] else block.transpose(order)

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        return apply_read_scaling(raw, self.slope, self.inter)

    def read(self, t0: int, t1: int) -> np.ndarray:
        return self._scale(self.read_raw(t0, t1))

    def _direct_chunk_files(self) -> bool:
        """Whether stored chunks can be decoded straight from their files (the layout this package writes).

        Local Zarr v3 array, axes ``(t, z, y, x)``, whole-volume chunks, ``bytes`` (native order) + ``blosc``
        codecs, ``/``-separated chunk keys: one blosc frame per file, decoded into a reused buffer with
        no allocation per chunk (zarr's generic path allocates and copies each chunk several times: the
        page faults showed as system time at 96x114x96).
        """
        if self.remote or self.array_path is None or self._axes != ["t", "z", "y", "x"]:
            return False
        try:
            from numcodecs import blosc  # noqa: F401
            from zarr.codecs import BloscCodec, BytesCodec

            meta = self.array().metadata
            codecs = list(meta.codecs)
            endian = getattr(codecs[0], "endian", None)
            native = endian is None or endian.value == ("little" if np.little_endian else "big")
            key = meta.chunk_key_encoding
            return (meta.zarr_format == 3 and len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and native
                    and isinstance(codecs[1], BloscCodec) and getattr(key, "name", "") == "default"
                    and getattr(key, "separator", "") == "/" and self.raw_dtype.isnative
                    and self.chunks[1:] == tuple(self.shape[2::-1]))
        except Exception:  # another zarr version or layout: the generic path
            return False

    def _stored_chunks(self, c0: int, c1: int, reuse: bool) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first scan, raw volumes)`` of stored time chunks ``c0..c1-1`` (``reuse``: one buffer)."""
        tc, n = self.time_chunk, self.n_scans
        if not self._direct_chunk_files():
            for c in range(c0, c1):
                yield c * tc, self.read_raw(c * tc, min((c + 1) * tc, n))
            return
        from numcodecs import blosc

        nx, ny, nz = self.shape[:3]
        shared = np.empty((tc, nz, ny, nx), dtype=self.raw_dtype) if reuse else None
        packed = bytearray()
        fill = self.array().metadata.fill_value
        for c in range(c0, c1):
            k = min(tc, n - c * tc)
            out = shared if shared is not None else np.empty((tc, nz, ny, nx), dtype=self.raw_dtype)
            path = os.path.join(self.location, self.array_path, "c", str(c), "0", "0", "0")
            try:
                with open(path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if len(packed) < size:
                        packed = bytearray(size)
                    view = memoryview(packed)[:size]
                    fh.readinto(view)
                blosc.decompress(view, out)
            except FileNotFoundError:  # an unwritten chunk holds the fill value
                out.fill(fill)
            except Exception as err:
                raise NiftiInputError(f"Run {self.name}: could not read stored chunk {c}: {err}") from err
            yield c * tc, out[:k]  # an edge chunk is stored whole (padded)

    def iter_range(self, t0: int, t1: int, chunk: int, raw: bool = False,
                   reuse_buffer: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(t, volumes)`` for consecutive ``chunk``-scan pieces of scans ``t0..t1``.

        Each stored chunk is decoded once, whatever ``chunk`` is; ``raw``: unscaled values;
        ``reuse_buffer``: decode into one buffer (each piece valid until the next is requested).

        Raises
        ------
        ValueError
            Scans outside the run, or ``chunk`` below 1 (when called, before any read).
        """
        if not 0 <= t0 <= t1 <= self.n_scans:
            raise ValueError(f"Scans {t0}..{t1} are outside run {self.name} of {self.n_scans} scans.")
        if int(chunk) < 1:
            raise ValueError(f"chunk must be a positive number of scans, got {chunk!r}.")
        return self._iter_range(t0, t1, int(chunk), raw, reuse_buffer)

    def _iter_range(self, t0: int, t1: int, chunk: int, raw: bool,
                    reuse_buffer: bool) -> Iterator[tuple[int, np.ndarray]]:
        tc = self.time_chunk
        stored = self._stored_chunks(t0 // tc, -(-t1 // tc), reuse_buffer)
        held, held_t0 = None, t0
        try:
            for t in range(t0, t1, chunk):
                stop = min(t + chunk, t1)
                while held is None or held_t0 + len(held) < stop:
                    # a piece across stored chunks: keep its head before the buffer is reused
                    head = None if held is None or held_t0 + len(held) <= t else held[t - held_t0:].copy()
                    start, block = next(stored)
                    held, held_t0 = (block, start) if head is None else (np.concatenate([head, block]), t)
                piece = held[t - held_t0 : stop - held_t0]
                yield t, piece if raw else self._scale(piece)
        finally:
            stored.close()

    def iter_chunks(
        self, chunk: int, background: bool = True, reuse_buffer: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        yield from self.iter_range(0, self.n_scans, chunk, reuse_buffer=reuse_buffer)
